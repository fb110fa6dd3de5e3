"""BGE-M3 modality: dense, sparse (lexical weights) and ColBERT vectors from one XLM-RoBERTa forward.

Computed as FlagEmbedding's ``BGEM3FlagModel`` does, with transformers alone: the dense vector is
the CLS state; each token's lexical weight is ``relu(sparse_linear(state))`` (a ``Linear(hidden, 1)``
saved as ``sparse_linear.pt``), kept per vocabulary id as its maximum, without the cls, eos, pad
and unk tokens; the ColBERT vectors are ``colbert_linear(states[1:])`` of the real tokens
(``colbert_linear.pt``). Dense and ColBERT vectors are L2-normalised (``normalize=True``). The two
heads are read with ``torch.load(weights_only=True)`` (no pickled code runs) and are part of the
weights fingerprint. Dense and sparse vectors go to Milvus; ColBERT matrices to files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.device import DevicePolicy
from multiembed.encoder import ModelOutput, Role
from multiembed.errors import BackendError, ModelNotFoundError
from multiembed.lexical import TokenizedTextEncoder, check_flags
from multiembed.models import ResolvedModel, loading
from multiembed.outputs import OutputSpec
from multiembed.pooling import cls_pool, l2_normalize
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: the heads BGE-M3 keeps next to its encoder: output name -> file
HEAD_FILES = {"sparse": "sparse_linear.pt", "colbert": "colbert_linear.pt"}
#: FlagEmbedding's ``BGEM3FlagModel.encode`` default (BGE-M3 reads up to 8192 tokens)
DEFAULT_MAX_LENGTH = 8192

LOCAL_FOLDER = (
    "a BGE-M3 folder: the XLM-RoBERTa encoder (config.json, model.safetensors), its tokenizer files, "
    "and sparse_linear.pt / colbert_linear.pt next to them, as in a snapshot of BAAI/bge-m3"
)


def load_head(folder: Path, file_name: str, hidden: int) -> torch.nn.Linear | None:
    """A ``torch.nn.Linear`` over ``hidden``-wide states from its saved state dict; None if absent."""
    path = folder / file_name
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    weight = state.get("weight") if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[1] != hidden:
        raise ModelNotFoundError(
            f"{path}: not the state dict of a torch.nn.Linear over {hidden}-wide states (as BGE-M3 saves it)"
        )
    head = torch.nn.Linear(hidden, int(weight.shape[0]), bias="bias" in state)
    head.load_state_dict(state)
    return head


class BGEM3Encoder(TokenizedTextEncoder):
    """BGE-M3's three outputs: ``dense`` (CLS), ``sparse`` (lexical weights), ``colbert`` (multi)."""

    modality = "bge-m3"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        heads: dict[str, torch.nn.Linear | None],
        *,
        model_id: str,
        policy: DevicePolicy,
        max_length: int = DEFAULT_MAX_LENGTH,
        return_dense: bool = True,
        return_sparse: bool = True,
        return_colbert_vecs: bool = True,
        normalize: bool = True,
        batch_size: int = 16,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        hidden = int(model.config.hidden_size)
        super().__init__(
            tokenizer,
            model_id=model_id,
            dim=hidden,
            policy=policy,
            max_length=max_length,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )
        self.model = policy.place(model)
        self.heads: dict[str, torch.nn.Module | None] = {
            name: None if head is None else policy.place(head) for name, head in heads.items()
        }
        self.returns = {"dense": return_dense, "sparse": return_sparse, "colbert": return_colbert_vecs}
        colbert = heads.get("colbert")
        #: every output's size, returned or not (pymilvus.model's ``dim`` names all three)
        self.sizes = {
            "dense": hidden,
            "sparse": self.vocab_size,
            "colbert": hidden if colbert is None else int(colbert.out_features),
        }

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        max_length: int = DEFAULT_MAX_LENGTH,
        return_dense: bool = True,
        return_sparse: bool = True,
        return_colbert_vecs: bool = True,
        normalize: bool = True,
        batch_size: int = 16,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> BGEM3Encoder:
        """Load the encoder, tokenizer and heads from a local folder (resolved by models.py)."""
        from transformers import AutoModel, AutoTokenizer

        returns = {"dense": return_dense, "sparse": return_sparse, "colbert": return_colbert_vecs}
        check_flags(
            model.model_id,
            return_dense=return_dense,
            return_sparse=return_sparse,
            return_colbert_vecs=return_colbert_vecs,
        )
        folder = Path(model.path)
        if not (folder / "config.json").is_file():
            what = "is a single file" if folder.is_file() else "has no config.json"
            raise ModelNotFoundError(f"{model.model_id}: {what}; the bge-m3 modality needs {LOCAL_FOLDER}")
        with loading(model.model_id, "a BGE-M3 model", model.path):
            tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            encoder = AutoModel.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            hidden = int(encoder.config.hidden_size)
            heads = {name: load_head(folder, file, hidden) for name, file in HEAD_FILES.items()}
        for name, file in HEAD_FILES.items():
            if returns[name] and heads[name] is None:
                flag = "return_sparse" if name == "sparse" else "return_colbert_vecs"
                raise ModelNotFoundError(
                    f"{model.model_id}: {file} is missing, so there are no {name} vectors; "
                    f"the bge-m3 modality needs {LOCAL_FOLDER} (or pass {flag}=False)"
                )
        return cls(
            encoder,
            tokenizer,
            heads,
            model_id=model.model_id,
            policy=policy,
            max_length=max_length,
            return_dense=return_dense,
            return_sparse=return_sparse,
            return_colbert_vecs=return_colbert_vecs,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        kinds = {"dense": "dense", "sparse": "sparse", "colbert": "multi"}
        return tuple(
            OutputSpec(name, kinds[name], self.sizes[name], "IP")  # type: ignore[arg-type]
            for name, wanted in self.returns.items()
            if wanted
        )

    def identity_options(self) -> dict[str, Any]:
        return {
            **super().identity_options(),
            "max_length": self.max_length,
            "return_dense": self.returns["dense"],
            "return_sparse": self.returns["sparse"],
            "return_colbert_vecs": self.returns["colbert"],
        }

    # ---- stages -----------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        states = self.model(**batch, return_dict=True).last_hidden_state
        return ModelOutput(hidden=states, mask=batch["attention_mask"])

    def _head(self, name: str) -> torch.nn.Module:
        head = self.heads[name]
        if head is None:  # from_pretrained refuses a requested output without its head
            raise BackendError(f"{self.model_id}: {HEAD_FILES[name]} was not loaded")
        return head

    def pool(self, output: ModelOutput, batch: dict[str, Any], role: Role) -> dict[str, Any]:
        states, mask = output.hidden, batch["attention_mask"]
        values: dict[str, Any] = {}
        if self.returns["dense"]:
            values["dense"] = cls_pool(states, mask)  # normalised by the base class
        if self.returns["sparse"]:
            weights = torch.relu(self._head("sparse")(states)).squeeze(-1)
            values["sparse"] = self.sparse_rows(weights, batch)
        if self.returns["colbert"]:
            real = mask[:, 1:].bool()  # every token but the CLS, padding excluded
            vectors = self._head("colbert")(states[:, 1:]).float() * real.unsqueeze(-1)
            if self.normalize_embeddings:
                vectors = l2_normalize(vectors)
            values["colbert"] = [item[keep] for item, keep in zip(vectors, real, strict=True)]
        return values


SPEC = register(
    ModalitySpec(
        name="bge-m3",
        description="BGE-M3 text vectors: dense, sparse lexical weights and ColBERT, from one forward",
        default_model="bge-m3",
        models=(
            ModelInfo(
                alias="bge-m3",
                hub_id="BAAI/bge-m3",
                dim=1024,
                description="multilingual (100+ languages), 8192 tokens; dense 1024, sparse, ColBERT 1024",
            ),
        ),
        extensions=frozenset({".txt", ".md"}),
        encoder_class=BGEM3Encoder,
        file_items="lines",
        local_folder=LOCAL_FOLDER,
    )
)
