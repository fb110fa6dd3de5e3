"""Model2Vec modality: static token embeddings averaged per text (``minishlab/potion-*``).

A Model2Vec model is a token-embedding table and a tokenizer: a text's vector is the mean of its
tokens' rows. The steps follow ``model2vec.StaticModel.encode`` exactly (the text is first cut to
``max_length`` times the median token length in characters, tokenized without special tokens,
truncated to ``max_length`` tokens, unknown tokens dropped, per-token weights and vocabulary
mapping applied), with the table lookup and mean run on the encoder's device; the vectors equal
``StaticModel.encode`` for the same folder. A text with no known token is the zero vector, as there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.models import ResolvedModel, loading
from multiembed.pooling import mean_pool
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader

if TYPE_CHECKING:
    import torch
    from model2vec import StaticModel
else:
    from multiembed.lazy import torch

MODEL2VEC_MODELS = (
    ModelInfo(
        alias="potion-base-8M",
        hub_id="minishlab/potion-base-8M",
        dim=256,
        description="small, fast static English model (pymilvus.model's default)",
    ),
    ModelInfo(
        alias="potion-base-32M",
        hub_id="minishlab/potion-base-32M",
        dim=512,
        description="larger static English model",
    ),
    ModelInfo(
        alias="potion-retrieval-32M",
        hub_id="minishlab/potion-retrieval-32M",
        dim=512,
        description="static English model tuned for retrieval",
    ),
    ModelInfo(
        alias="potion-multilingual-128M",
        hub_id="minishlab/potion-multilingual-128M",
        dim=256,
        description="static multilingual model",
    ),
)

LOCAL_FOLDER = (
    "a Model2Vec folder, made with StaticModel.from_pretrained(hub_id).save_pretrained(path) "
    "(config.json, model.safetensors, tokenizer.json)"
)


def _whole_number(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _rounded(vectors: torch.Tensor, dtype: np.dtype[Any]) -> torch.Tensor:
    """Round to the precision model2vec returns (the table's float type), then back to float32."""
    if dtype == np.float16:
        return vectors.half().float()
    return vectors


class Model2VecEncoder(Encoder):
    """Dense text vectors from a Model2Vec static model: the mean of the text's token rows."""

    modality = "model2vec"
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self,
        model: StaticModel,
        *,
        model_id: str,
        policy: DevicePolicy,
        dimensionality: int | None = None,
        batch_size: int = 256,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        table = np.asarray(model.embedding)
        if dimensionality is not None:
            width = table.shape[1]
            if _whole_number("dimensionality", dimensionality) > width:
                raise ConfigError(f"dimensionality {dimensionality} is more than the model's {width}")
            table = table[:, :dimensionality]
        super().__init__(
            model_id=model_id,
            dim=int(table.shape[1]),
            policy=policy,
            normalize=bool(model.normalize),
            batch_size=batch_size,
            workers=workers,
        )
        self.model = model
        self.dimensionality = dimensionality
        #: model2vec averages in the table's float type (int8 tables give float32)
        self._out_dtype = np.dtype(np.float32) if table.dtype == np.int8 else table.dtype
        self._loader = TextLoader(max_bytes)
        device = policy.device
        self._table = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32)).to(device)
        mapping, weights = model.token_mapping, model.weights
        self._mapping = None if mapping is None else torch.as_tensor(mapping).to(device)
        self._weights = None if weights is None else torch.as_tensor(weights).float().to(device)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        normalize: bool | None = None,
        max_length: int | None = None,
        dimensionality: int | None = None,
        batch_size: int = 256,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> Model2VecEncoder:
        """Load a Model2Vec folder; ``normalize``/``max_length`` default to the model's config."""
        from model2vec import StaticModel

        if normalize is not None and not isinstance(normalize, bool):
            raise ConfigError(f"normalize must be True, False or None, got {normalize!r}")
        if max_length is not None:
            _whole_number("max_length", max_length)
        with loading(model.model_id, "a Model2Vec static model", model.path):
            static = StaticModel.from_pretrained(model.path, normalize=normalize, force_download=False)
            if max_length is not None:
                static.max_length = max_length
        if not isinstance(static.embedding, np.ndarray) or static.embedding.ndim != 2:
            raise ModelNotFoundError(f"{model.model_id}: the embedding table is not a matrix")
        return cls(
            static,
            model_id=model.model_id,
            policy=policy,
            dimensionality=dimensionality,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )

    def identity_options(self) -> dict[str, Any]:
        return {
            "normalize": self.normalize_embeddings,
            "max_length": self.model.max_length,
            "dimensionality": self.dimensionality,
        }

    def details(self) -> dict[str, Any]:
        return {
            "pooling": "mean",
            "embedding_dtype": str(self.model.embedding.dtype),
            "token_weights": self._weights is not None,
            "vocabulary_mapping": self._mapping is not None,
        }

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def preprocess(self, raws: list[str], role: Role) -> dict[str, torch.Tensor]:
        max_length = self.model.max_length
        if max_length is not None:  # model2vec's own cut, before the tokenizer truncates
            characters = max_length * self.model.median_token_length
            raws = [text[:characters] for text in raws]
        ids = self.model.tokenize(raws)
        width = max((len(row) for row in ids), default=0) or 1
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward(self, batch: dict[str, torch.Tensor], role: Role) -> ModelOutput:
        ids = batch["input_ids"]
        rows = ids if self._mapping is None else self._mapping[ids]
        hidden = self._table[rows]
        if self._weights is not None:
            hidden = hidden * self._weights[ids].unsqueeze(-1)
        return ModelOutput(hidden=hidden, mask=batch["attention_mask"])

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        return _rounded(mean_pool(output.hidden, output.mask), self._out_dtype)

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        if not self.normalize_embeddings:
            return vectors
        norms = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True) + 1e-32
        return _rounded(vectors / norms, self._out_dtype)


SPEC = register(
    ModalitySpec(
        name="model2vec",
        description="sentences and passages with Model2Vec static embeddings (fast, CPU-friendly)",
        default_model="potion-base-8M",
        models=MODEL2VEC_MODELS,
        extensions=frozenset({".txt", ".md"}),
        encoder_class=Model2VecEncoder,
        file_items="lines",
        local_folder=LOCAL_FOLDER,
    )
)
