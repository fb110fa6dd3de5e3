"""INSTRUCTOR modality: ``hkunlp/instructor-*`` text vectors, each text read with its task instruction.

INSTRUCTOR (Su et al., 2023) embeds the pair (instruction, text): the two are joined (stripped, no
separator) and run through the T5 encoder together, but the mean pooling counts only the text's
tokens: the first ``len(instruction tokens) - 1`` positions (the instruction without its ``</s>``)
are left out of the mean. The sentence-transformers modules after Pooling (a Dense projection,
Normalize) then run as saved. That is the computation of INSTRUCTOR's own package and of
pymilvus.model's vendored copy; the sentence-transformers modules load the folder (hkunlp's
layout), this file tokenizes the pairs and builds the mask. Queries take ``query_instruction``,
documents ``document_instruction`` (pymilvus.model's defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.models import ResolvedModel, loading
from multiembed.pooling import mean_pool
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader, cut_for_tokenizer

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

QUERY_INSTRUCTION = "Represent the question for retrieval:"
DOCUMENT_INSTRUCTION = "Represent the document for retrieval:"
#: the length INSTRUCTOR was trained with, used when a folder's tokenizer sets no usable limit
DEFAULT_MAX_SEQ_LENGTH = 512

INSTRUCTOR_MODELS = (
    ModelInfo(alias="instructor-base", hub_id="hkunlp/instructor-base", dim=768,
              description="INSTRUCTOR on T5-base: task instructions steer the vectors"),
    ModelInfo(alias="instructor-large", hub_id="hkunlp/instructor-large", dim=768,
              description="INSTRUCTOR on T5-large"),
    ModelInfo(alias="instructor-xl", hub_id="hkunlp/instructor-xl", dim=768,
              description="INSTRUCTOR on T5-XL (pymilvus.model's default)"),
)  # fmt: skip


def _kind(module: torch.nn.Module) -> str:
    return type(module).__name__


class InstructorEncoder(Encoder):
    """Dense text vectors from an INSTRUCTOR folder; the role picks the instruction."""

    modality = "instructor"
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self,
        model: Any,
        *,
        model_id: str,
        policy: DevicePolicy,
        query_instruction: str = QUERY_INSTRUCTION,
        document_instruction: str = DOCUMENT_INSTRUCTION,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        modules = list(model)
        kinds = [_kind(module) for module in modules]
        tokenizer = getattr(modules[0], "tokenizer", None) if modules else None
        if "Pooling" not in kinds or tokenizer is None or kinds.index("Pooling") != 1:
            raise ModelNotFoundError(
                f"{model_id}: not an INSTRUCTOR folder (expected a Transformer, then Pooling: {kinds})"
            )
        pooling = modules[1]
        if pooling.pooling_mode != "mean":
            raise ModelNotFoundError(f"{model_id}: INSTRUCTOR pools by mean, not {pooling.pooling_mode!r}")
        super().__init__(
            model_id=model_id,
            dim=int(model.get_embedding_dimension()),
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
        )
        self.model = model
        self.tokenizer = tokenizer
        self._transformer = modules[0]
        # Our own normaliser replaces a trailing Normalize module when normalising is on.
        self._post_modules = [m for m in modules[2:] if not (normalize and _kind(m) == "Normalize")]
        self._lower = bool(getattr(modules[0], "do_lower_case", False))
        limit = model.max_seq_length
        usable = isinstance(limit, int) and 0 < limit < 1_000_000  # tokenizers without one say 1e30
        self.max_seq_length = int(limit) if usable else DEFAULT_MAX_SEQ_LENGTH
        self.instructions: dict[Role, str] = {"query": query_instruction, "document": document_instruction}
        self._loader = TextLoader(max_bytes)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        query_instruction: str = QUERY_INSTRUCTION,
        document_instruction: str = DOCUMENT_INSTRUCTION,
        max_seq_length: int | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> InstructorEncoder:
        """Load an INSTRUCTOR folder (hkunlp's sentence-transformers layout) from a local directory."""
        from sentence_transformers import SentenceTransformer

        instructions = {"query_instruction": query_instruction, "document_instruction": document_instruction}
        for name, value in instructions.items():
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {value!r}")
        if Path(model.path).is_file():
            raise ModelNotFoundError(f"{model.model_id}: the instructor modality needs a folder, not a file")
        with loading(model.model_id, "an INSTRUCTOR model", model.path):
            st_model = SentenceTransformer(model.path, device=str(policy.device), local_files_only=True)
        if max_seq_length is not None:
            if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 2:
                raise ConfigError(f"max_seq_length must be a whole number >= 2, got {max_seq_length!r}")
            st_model.max_seq_length = max_seq_length
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

    def identity_options(self) -> dict[str, Any]:
        return {
            **super().identity_options(),
            "max_seq_length": self.max_seq_length,
            "query_instruction": self.instructions["query"],
            "document_instruction": self.instructions["document"],
        }

    def details(self) -> dict[str, Any]:
        return {
            "pooling": "mean",
            "excludes_instruction": True,
            "do_lower_case": self._lower,
            "post_modules": [_kind(module) for module in self._post_modules],
        }

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def _instruction_length(self, instruction: str) -> int:
        """Positions the instruction takes at the start of the joined text: its tokens but ``</s>``."""
        ids = self.tokenizer(instruction, truncation=True, max_length=self.max_seq_length)["input_ids"]
        return max(len(ids) - 1, 0)

    def preprocess(self, raws: list[str], role: Role) -> dict[str, torch.Tensor]:
        instruction = self.instructions[role].strip()
        texts = [cut_for_tokenizer(text, self.tokenizer, self.max_seq_length).strip() for text in raws]
        if self._lower:
            instruction, texts = instruction.lower(), [text.lower() for text in texts]
        batch = self.tokenizer(
            [instruction + text for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        context = mask.clone()
        context[:, : self._instruction_length(instruction)] = 0
        return {"input_ids": ids, "attention_mask": mask, "context_mask": context}

    def forward(self, batch: dict[str, torch.Tensor], role: Role) -> ModelOutput:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        features = self._transformer(inputs)
        return ModelOutput(hidden=features["token_embeddings"], mask=batch["context_mask"])

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        features: dict[str, Any] = {"sentence_embedding": mean_pool(output.hidden, output.mask)}
        for module in self._post_modules:
            features = module(features)
        embeddings: torch.Tensor = features["sentence_embedding"]
        return embeddings


SPEC = register(
    ModalitySpec(
        name="instructor",
        description="sentences and passages read with a task instruction (INSTRUCTOR)",
        default_model="instructor-large",
        models=INSTRUCTOR_MODELS,
        extensions=frozenset({".txt", ".md"}),
        encoder_class=InstructorEncoder,
        file_items="lines",
        local_folder=(
            "an INSTRUCTOR folder in hkunlp's sentence-transformers layout (modules.json, config.json, "
            "model weights, tokenizer files, 1_Pooling/, 2_Dense/)"
        ),
    )
)
