"""SPLADE modality: learned sparse text vectors from a masked language model, for the CLI and MilvusStore.

A SPLADE vector has one weight per vocabulary token: the masked-LM logits of every real token
(padding excluded by the attention mask) go through ``log(1 + relu(x))`` and are max-pooled over
the text, then optionally pruned to the ``k`` largest weights. Queries and documents may use
separate models (naver's efficient-SPLADE pairs) and their own ``k``; the role picks both. Inner
product (metric IP) of a query row and a document row is the relevance score.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.model.rows import sparse_rows
from multiembed.models import ResolvedModel, loading, resolve_model, weights_fingerprint
from multiembed.outputs import OutputSpec
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader, cut_for_tokenizer

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

POOLING = "splade max log1p relu"
#: tokenizers that record no length report this huge sentinel (transformers' VERY_LARGE_INTEGER)
_NO_LENGTH = 1_000_000
_EFFICIENT_QUERY = "naver/efficient-splade-VI-BT-large-query"


def _naver(alias: str, name: str, description: str, **options: str) -> ModelInfo:
    """A naver SPLADE checkpoint on the hub: BERT's 30,522-token vocabulary."""
    return ModelInfo(alias, f"naver/{name}", 30522, description, options=MappingProxyType(options))


SPLADE_MODELS = (
    _naver(
        "cocondenser-ensembledistil",
        "splade-cocondenser-ensembledistil",
        "pymilvus.model's default; one model for queries and documents",
    ),
    _naver("cocondenser-selfdistil", "splade-cocondenser-selfdistil", "SPLADE++, self-distilled; one model"),
    _naver(
        "efficient-vi-bt-large",
        "efficient-splade-VI-BT-large-doc",
        "efficient SPLADE document encoder, paired with its query encoder",
        query_model=_EFFICIENT_QUERY,
    ),
    _naver(
        "efficient-vi-bt-large-query",
        "efficient-splade-VI-BT-large-query",
        "efficient SPLADE query encoder (pass it as query_model=)",
    ),
)

LOCAL_FOLDER = (
    "a masked language model folder (config.json, model.safetensors with the MLM head, tokenizer "
    "files), made with AutoModelForMaskedLM.from_pretrained(hub_id).save_pretrained(path) and the "
    "tokenizer's save_pretrained(path)"
)


@dataclass(frozen=True)
class MaskedLM:
    """One SPLADE tower: the masked-LM, its tokenizer, how many tokens it reads and where it came from."""

    model: Any
    tokenizer: Any
    max_length: int
    model_id: str
    weights: str | None


def _whole_number(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
    return value


def _logits_size(tower: MaskedLM) -> int:
    """The vector's dimension: how many logits the MLM head gives (the vocabulary it scores)."""
    head = tower.model.get_output_embeddings()
    return int(head.out_features if head is not None else tower.model.config.vocab_size)


def load_masked_lm(
    resolved: ResolvedModel, policy: DevicePolicy, trust_remote_code: bool, max_length: int | None
) -> MaskedLM:
    """Read a masked-LM and its tokenizer from a local folder; a model without its MLM head is refused.

    transformers would fill a missing head with random weights and only log it; SPLADE vectors from
    such a model are noise, so the missing weights are an error here.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if not resolved.path or Path(resolved.path).is_file():
        raise ModelNotFoundError(f"{resolved.model_id}: the splade modality needs {LOCAL_FOLDER}")
    with loading(resolved.model_id, "a masked language model (SPLADE)", resolved.path):
        model, info = AutoModelForMaskedLM.from_pretrained(
            resolved.path, trust_remote_code=trust_remote_code, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ModelNotFoundError(
            f"{resolved.model_id}: not a masked language model, its masked-LM head weights are "
            f"missing ({shown}); the splade modality needs {LOCAL_FOLDER}"
        )
    limit = int(tokenizer.model_max_length)
    if limit >= _NO_LENGTH:
        limit = int(getattr(model.config, "max_position_embeddings", 512))
    return MaskedLM(
        policy.place(model),
        tokenizer,
        min(limit, max_length) if max_length else limit,
        resolved.model_id,
        weights_fingerprint(resolved.path),
    )


class SpladeEncoder(Encoder):
    """SPLADE sparse rows (vocabulary-size, IP) from a masked-LM, with an optional separate query model."""

    modality = "splade"
    metric = "IP"
    pooling = POOLING
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self,
        document: MaskedLM,
        query: MaskedLM | None = None,
        *,
        policy: DevicePolicy,
        k_tokens_query: int | None = None,
        k_tokens_document: int | None = None,
        query_instruction: str | None = "",
        document_instruction: str | None = "",
        max_length: int | None = None,
        batch_size: int = 32,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        dim = _logits_size(document)
        super().__init__(
            model_id=document.model_id, dim=dim, policy=policy, normalize=False, batch_size=batch_size
        )
        if query is not None and (
            _logits_size(query) != dim or query.tokenizer.get_vocab() != document.tokenizer.get_vocab()
        ):
            raise ModelNotFoundError(
                f"{query.model_id}: its vocabulary differs from {document.model_id}'s; a query model "
                "must share the document model's tokens, or the sparse dimensions mean different words"
            )
        self.towers: dict[Role, MaskedLM] = {"document": document, "query": query or document}
        self.separate_query = query is not None
        self.k_tokens: dict[Role, int | None] = {
            "query": _whole_number("k_tokens_query", k_tokens_query),
            "document": _whole_number("k_tokens_document", k_tokens_document),
        }
        self.instructions: dict[Role, str] = {
            "query": query_instruction or "",
            "document": document_instruction or "",
        }
        self.max_length = _whole_number("max_length", max_length)
        self._loader = TextLoader(max_bytes)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return (OutputSpec("sparse", "sparse", self._dim, "IP"),)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        query_model: str | None = None,
        k_tokens_query: int | None = None,
        k_tokens_document: int | None = None,
        query_instruction: str | None = "",
        document_instruction: str | None = "",
        max_length: int | None = None,
        trust_remote_code: bool = False,
        batch_size: int = 32,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> SpladeEncoder:
        """Load the document model (and ``query_model``: alias, hub id or folder) from local files."""
        numbers = {"k_tokens_query": k_tokens_query, "k_tokens_document": k_tokens_document}
        for name, value in {**numbers, "max_length": max_length}.items():
            _whole_number(name, value)  # checked before any weights are read
        if query_model is None and model.info is not None:
            query_model = model.info.options.get("query_model")
        document = load_masked_lm(model, policy, trust_remote_code, max_length)
        query = None
        if query_model is not None:
            resolved = resolve_model(SPEC, str(query_model))
            if resolved.path != model.path:
                query = load_masked_lm(resolved, policy, trust_remote_code, max_length)
        return cls(
            document,
            query,
            policy=policy,
            k_tokens_query=k_tokens_query,
            k_tokens_document=k_tokens_document,
            query_instruction=query_instruction,
            document_instruction=document_instruction,
            max_length=max_length,
            batch_size=batch_size,
            max_bytes=max_bytes,
        )

    def variant(
        self,
        *,
        k_tokens_document: int | None = None,
        document_instruction: str = "",
    ) -> SpladeEncoder:
        """The same models with other document settings, without loading the weights twice.

        pymilvus.model's ``__call__`` embeds documents unpruned and without their instruction while
        ``encode_documents`` applies both; its drop-in keeps one such variant beside the encoder.
        """
        other = copy.copy(self)
        other.k_tokens = {**self.k_tokens, "document": _whole_number("k_tokens_document", k_tokens_document)}
        other.instructions = {**self.instructions, "document": document_instruction}
        return other

    def identity_options(self) -> dict[str, Any]:
        query = self.towers["query"]
        return {
            "query_model": query.model_id if self.separate_query else None,
            "k_tokens_query": self.k_tokens["query"],
            "k_tokens_document": self.k_tokens["document"],
            "query_instruction": self.instructions["query"],
            "document_instruction": self.instructions["document"],
            "max_length": self.max_length,
        }

    def details(self) -> dict[str, Any]:
        return {
            "pooling": POOLING,
            "query_weights": self.towers["query"].weights if self.separate_query else None,
            "max_tokens": {role: tower.max_length for role, tower in self.towers.items()},
        }

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def preprocess(self, raws: list[str], role: Role) -> dict[str, Any]:
        tower = self.towers[role]
        texts = [
            cut_for_tokenizer(self.instructions[role] + text, tower.tokenizer, tower.max_length)
            for text in raws
        ]
        tokens = tower.tokenizer(
            texts, padding=True, truncation=True, max_length=tower.max_length, return_tensors="pt"
        )
        return dict(tokens)

    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        logits = self.towers[role].model(**batch).logits
        return ModelOutput(hidden=logits, mask=batch.get("attention_mask"))

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> dict[str, Any]:
        """log1p(relu(logits)), max over the real tokens, top-k pruned, as a CSR matrix on the CPU."""
        # (batch, tokens, vocabulary) is the largest tensor of the run: worked on in place, not copied
        weights = torch.relu_(output.hidden.float()).log1p_()
        if output.mask is not None:  # weights are >= 0, so zeroing padding removes it from the max
            weights.mul_(output.mask.unsqueeze(-1).to(weights.dtype))
        pooled = weights.amax(dim=1)
        k = self.k_tokens[role]
        if k is not None and k < pooled.shape[1]:
            top = torch.topk(pooled, k, dim=1)
            pooled = torch.zeros_like(pooled).scatter_(1, top.indices, top.values)
        rows, columns = torch.nonzero(pooled, as_tuple=True)
        values = pooled[rows, columns].cpu().numpy().astype(np.float32)
        shape = (int(pooled.shape[0]), int(pooled.shape[1]))
        matrix = sp.csr_matrix((values, (rows.cpu().numpy(), columns.cpu().numpy())), shape=shape)
        return {"sparse": matrix}

    # ---- the pymilvus.model surface: rows iterate as (1, dim), as its documentation shows -----------
    def encode_documents(self, documents: Iterable[Any]) -> Any:
        return sparse_rows(super().encode_documents(documents))

    def encode_queries(self, queries: Iterable[Any]) -> Any:
        return sparse_rows(super().encode_queries(queries))

    def __call__(self, inputs: Iterable[Any]) -> Any:
        return self.encode_documents(inputs)


SPEC = register(
    ModalitySpec(
        name="splade",
        description="SPLADE learned sparse text vectors (masked-LM; separate query model optional)",
        default_model="naver/splade-cocondenser-ensembledistil",
        models=SPLADE_MODELS,
        extensions=frozenset({".txt", ".md"}),
        encoder_class=SpladeEncoder,
        file_items="lines",
        local_folder=LOCAL_FOLDER,
    )
)
