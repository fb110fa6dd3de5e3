"""What the hybrid text encoders (BGE-M3, mGTE) share: tokenizing, and lexical weights from token ids.

Both models run one transformer forward and read several outputs from it: the CLS state (dense)
and one weight per token (sparse). A token's weight goes to its vocabulary id; a text's sparse row
keeps, for every id it contains, the largest positive weight, and drops the ids of the cls, eos,
pad and unk tokens - as FlagEmbedding's ``_process_token_weights`` and mGTE's ``gte_embedding.py``
do. The row is built directly as CSR (no ``batch x vocabulary`` dense tensor: 250k ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import scipy.sparse as sp

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.model.rows import sparse_rows
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader, cut_for_tokenizer

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: the tokens whose weight never counts (FlagEmbedding's and mGTE's ``unused_tokens``)
DROPPED_TOKENS = ("cls", "eos", "pad", "unk")
#: tokenizers without a real limit report a huge ``model_max_length``; ignore anything above this
_NO_LIMIT = 1_000_000


def dropped_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of the tokenizer's cls, eos, pad and unk tokens (those it has), sorted."""
    ids = (getattr(tokenizer, f"{name}_token_id", None) for name in DROPPED_TOKENS)
    return tuple(sorted({int(token_id) for token_id in ids if token_id is not None}))


def lexical_weights(
    weights: torch.Tensor,
    input_ids: torch.Tensor,
    mask: torch.Tensor | None,
    dropped: Iterable[int],
    vocab_size: int,
) -> sp.csr_matrix:
    """``[batch, tokens]`` token weights -> ``(batch, vocab_size)`` CSR: the max positive weight per id."""
    weights = weights.float()
    keep = weights > 0
    if mask is not None:
        keep &= mask.bool()
    dropped_ids = torch.tensor(sorted(dropped), dtype=input_ids.dtype, device=input_ids.device)
    if dropped_ids.numel():
        keep &= ~torch.isin(input_ids, dropped_ids)
    rows, positions = keep.nonzero(as_tuple=True)
    keys = rows * vocab_size + input_ids[rows, positions]
    unique, inverse = torch.unique(keys, return_inverse=True)  # sorted: by row, then by id
    best = torch.zeros(unique.shape[0], dtype=weights.dtype, device=weights.device)
    best = best.scatter_reduce(0, inverse, weights[rows, positions], reduce="amax", include_self=False)
    unique = unique.cpu().numpy()
    return sp.csr_matrix(
        (best.cpu().numpy(), (unique // vocab_size, unique % vocab_size)),
        shape=(int(weights.shape[0]), vocab_size),
    )


def token_limit(tokenizer: Any, max_length: int) -> int:
    """Tokens read per text: ``max_length``, capped by the tokenizer's own limit when it has one."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ConfigError(f"max_length must be a whole number of tokens >= 2, got {max_length!r}")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 2 <= limit < _NO_LIMIT:
        return min(max_length, limit)
    return max_length


def check_flags(model_id: str, **flags: bool) -> None:
    """At least one ``return_*`` output must be asked for, and each flag must be a bool."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    if not any(flags.values()):
        raise ConfigError(f"{model_id}: nothing to return; set at least one of {', '.join(flags)} to True")


def vocabulary_size(tokenizer: Any, model_id: str) -> int:
    """The sparse dimension: the tokenizer's full vocabulary, as pymilvus.model's ``dim["sparse"]``."""
    size = len(tokenizer)
    if size < 1:
        raise ModelNotFoundError(f"{model_id}: the tokenizer has an empty vocabulary")
    return size


class TokenizedTextEncoder(Encoder):
    """Texts tokenized by a transformers tokenizer (truncated, padded on the right), several outputs."""

    accepts_text_queries: ClassVar[bool] = True
    documents_are_text: ClassVar[bool] = True
    pooling = "cls"
    metric = "IP"

    def __init__(
        self,
        tokenizer: Any,
        *,
        model_id: str,
        dim: int,
        policy: DevicePolicy,
        max_length: int,
        normalize: bool = True,
        batch_size: int = 16,
        workers: int = 0,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        super().__init__(
            model_id=model_id,
            dim=dim,
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
        )
        tokenizer.padding_side = "right"  # CLS first, real tokens next: FlagEmbedding and mGTE assume it
        self.tokenizer = tokenizer
        self.max_length = token_limit(tokenizer, max_length)
        self.dropped = dropped_token_ids(tokenizer)
        self.vocab_size = vocabulary_size(tokenizer, model_id)
        self._loader = TextLoader(max_bytes)

    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def preprocess(self, raws: list[str], role: Role) -> dict[str, Any]:
        texts = [cut_for_tokenizer(text, self.tokenizer, self.max_length) for text in raws]
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return dict(tokens)

    def sparse_rows(self, weights: torch.Tensor, batch: dict[str, Any]) -> sp.csr_matrix:
        """This batch's token weights as vocabulary-size rows (see :func:`lexical_weights`)."""
        return lexical_weights(
            weights, batch["input_ids"], batch.get("attention_mask"), self.dropped, self.vocab_size
        )

    def details(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "dropped_token_ids": list(self.dropped)}

    # ---- the pymilvus.model surface: sparse rows iterate as (1, dim) ---------------------------
    @staticmethod
    def _surface(values: Any) -> Any:
        if isinstance(values, dict):
            return {name: sparse_rows(v) if sp.issparse(v) else v for name, v in values.items()}
        return sparse_rows(values) if sp.issparse(values) else values

    def encode_outputs(self, texts: Iterable[Any], role: Role = "document") -> dict[str, Any]:
        """Every output in pymilvus.model's form, by name (a dict even when only one is returned).

        Raises InputError naming the first bad text.
        """
        values = self._surface(self._encode_strict(texts, role))
        return values if isinstance(values, dict) else {self.outputs[0].name: values}

    def encode_documents(self, documents: Iterable[Any]) -> Any:
        return self._surface(super().encode_documents(documents))

    def encode_queries(self, queries: Iterable[Any]) -> Any:
        return self._surface(super().encode_queries(queries))

    def __call__(self, inputs: Iterable[Any]) -> Any:
        return self.encode_documents(inputs)
