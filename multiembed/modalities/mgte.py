"""mGTE modality: dense and sparse vectors from one forward of Alibaba's gte-multilingual-base.

Computed as the model's ``gte_embedding.py`` (and pymilvus.model's ``MGTEEmbeddingFunction``)
does: a token-classification model with one label gives each token a weight, ``relu(logit)``,
kept per vocabulary id as its maximum without the cls, eos, pad and unk tokens (sparse); the
first ``dimension`` values of the CLS state, L2-normalised, are the dense vector (the model was
trained so that shorter prefixes still work: Matryoshka).

The published model's class ("NewForTokenClassification") is code shipped with the weights: it
runs only when the user passes ``trust_remote_code=True``. The loader goes through
``AutoModelForTokenClassification``, so a one-label token classifier of any transformers
architecture loads the same way; its last hidden state is read from the output
(``last_hidden_state``, as mGTE's class gives it, else the last of ``hidden_states``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multiembed.device import DevicePolicy
from multiembed.encoder import ModelOutput, Role
from multiembed.errors import BackendError, ConfigError, ModelNotFoundError
from multiembed.lexical import TokenizedTextEncoder, check_flags
from multiembed.models import ResolvedModel, loading
from multiembed.outputs import OutputSpec
from multiembed.pooling import cls_pool
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES

#: ``gte_embedding.py``'s ``encode`` default (gte-multilingual-base reads up to 8192 tokens)
DEFAULT_MAX_LENGTH = 8192

LOCAL_FOLDER = (
    "an mGTE folder: a token-classification model with one label (config.json, model.safetensors, "
    "and the modeling code its auto_map names), with its tokenizer files, as in a snapshot of "
    "Alibaba-NLP/gte-multilingual-base; its code runs only with trust_remote_code=True"
)


def _needs_remote_code(folder: Path) -> bool:
    """Whether the folder's model type is unknown to transformers and only its own code defines it."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # loading reports the damaged file
    return (
        isinstance(config, dict) and "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING
    )


def _checked_dimension(dimension: int | None, hidden: int, model_id: str) -> int:
    if dimension is None:
        return hidden
    if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= hidden:
        raise ConfigError(
            f"{model_id}: dimension must be a whole number from 1 to {hidden}, got {dimension!r}"
        )
    return dimension


class MGTEEncoder(TokenizedTextEncoder):
    """mGTE's two outputs: ``dense`` (CLS, first ``dimension`` values) and ``sparse`` (token weights)."""

    modality = "mgte"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        policy: DevicePolicy,
        dimension: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        return_dense: bool = True,
        return_sparse: bool = True,
        normalize: bool = True,
        batch_size: int = 16,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        hidden = int(model.config.hidden_size)
        dense_dim = _checked_dimension(dimension, hidden, model_id)
        super().__init__(
            tokenizer,
            model_id=model_id,
            dim=dense_dim,
            policy=policy,
            max_length=max_length,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )
        self.model = policy.place(model)
        self.dimension = dense_dim
        self.returns = {"dense": return_dense, "sparse": return_sparse}
        #: transformers' own classes give the last state only among all of them (mGTE's gives it directly)
        self._asks_hidden_states = type(model).__module__.startswith("transformers.")

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        dimension: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        return_dense: bool = True,
        return_sparse: bool = True,
        normalize: bool = True,
        batch_size: int = 16,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> MGTEEncoder:
        """Load the token classifier and tokenizer from a local folder (resolved by models.py)."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        check_flags(model.model_id, return_dense=return_dense, return_sparse=return_sparse)
        folder = Path(model.path)
        if not (folder / "config.json").is_file():
            what = "is a single file" if folder.is_file() else "has no config.json"
            raise ModelNotFoundError(f"{model.model_id}: {what}; the mgte modality needs {LOCAL_FOLDER}")
        if not trust_remote_code and _needs_remote_code(folder):
            raise ModelNotFoundError(
                f"{model.model_id}: its model class is code shipped with the weights, which runs only "
                "when you allow it: pass trust_remote_code=True (--trust-remote-code)"
            )
        with loading(model.model_id, "an mGTE model", model.path):
            tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            classifier = AutoModelForTokenClassification.from_pretrained(
                model.path, trust_remote_code=trust_remote_code
            )
        labels = int(getattr(classifier.config, "num_labels", 0))
        if labels != 1:
            raise ModelNotFoundError(
                f"{model.model_id}: its token classifier has {labels} labels; mGTE's has one (the token "
                f"weight). The mgte modality needs {LOCAL_FOLDER}"
            )
        return cls(
            classifier,
            tokenizer,
            model_id=model.model_id,
            policy=policy,
            dimension=dimension,
            max_length=max_length,
            return_dense=return_dense,
            return_sparse=return_sparse,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        specs = (
            OutputSpec("dense", "dense", self.dimension, "IP"),
            OutputSpec("sparse", "sparse", self.vocab_size, "IP"),
        )
        return tuple(spec for spec in specs if self.returns[spec.name])

    def identity_options(self) -> dict[str, Any]:
        return {
            **super().identity_options(),
            "dimension": self.dimension,
            "max_length": self.max_length,
            "return_dense": self.returns["dense"],
            "return_sparse": self.returns["sparse"],
        }

    # ---- stages -----------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        extra = {"output_hidden_states": True} if self._asks_hidden_states else {}
        output = self.model(**batch, return_dict=True, **extra)
        states = getattr(output, "last_hidden_state", None)
        if states is None and getattr(output, "hidden_states", None):
            states = output.hidden_states[-1]
        if states is None:
            raise BackendError(
                f"{self.model_id}: the model's output has no last_hidden_state (mGTE's class gives one)"
            )
        return ModelOutput(hidden=states, mask=batch["attention_mask"], extras={"logits": output.logits})

    def pool(self, output: ModelOutput, batch: dict[str, Any], role: Role) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.returns["dense"]:  # normalised by the base class after the cut, as mGTE does
            values["dense"] = cls_pool(output.hidden, output.mask)[:, : self.dimension]
        if self.returns["sparse"]:
            weights = output.extras["logits"].relu().squeeze(-1)
            values["sparse"] = self.sparse_rows(weights, batch)
        return values


SPEC = register(
    ModalitySpec(
        name="mgte",
        description="mGTE text vectors: dense (Matryoshka dimension) and sparse token weights, one forward",
        default_model="gte-multilingual-base",
        models=(
            ModelInfo(
                alias="gte-multilingual-base",
                hub_id="Alibaba-NLP/gte-multilingual-base",
                dim=768,
                description="multilingual (70+ languages), 8192 tokens; dense 768, sparse; needs "
                "--trust-remote-code",
            ),
        ),
        extensions=frozenset({".txt", ".md"}),
        encoder_class=MGTEEncoder,
        file_items="lines",
        local_folder=LOCAL_FOLDER,
    )
)
