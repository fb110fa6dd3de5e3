"""pymilvus.model's ``BGERerankFunction`` (``BAAI/bge-reranker-*``), run with transformers, no FlagEmbedding.

A BGE reranker is a sequence classifier with one logit per (query, passage) pair. The pairs are
built as FlagEmbedding builds them: the query is cut to ``query_max_length`` tokens, the passage to
what is left of ``max_length`` once the query and the special tokens are in, and the two are joined
by the tokenizer's own pair template; ``normalize`` maps the logit through a sigmoid. Batches are
sorted by length (less padding) and the scores put back in input order. ``use_fp16`` halves the
weights on CUDA only, through multiembed's device policy; elsewhere the model runs in float32.
Encoder-only rerankers (bge-reranker-base/-large/-v2-m3) are served; the LLM-based ones
(bge-reranker-v2-gemma, -minicpm-layerwise) are refused with a ``ModelNotFoundError``.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from multiembed.errors import ConfigError, InputError, ModelNotFoundError
from multiembed.model.reranker.result import RerankResult

if TYPE_CHECKING:
    import torch

    from multiembed.device import DevicePolicy

__all__ = ["BGERerankFunction"]

LOCAL_FOLDER = "a reranker folder saved with AutoModelForSequenceClassification and its tokenizer"


def _local_model(name: str) -> str:
    """A local folder as is; a hub id from the Hugging Face cache (never downloaded when offline)."""
    from multiembed.models import local_or_hub

    return local_or_hub(name, LOCAL_FOLDER)


def _sigmoid(score: float) -> float:
    """FlagEmbedding's ``1 / (1 + exp(-x))``, without overflow for very negative logits."""
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    positive = math.exp(score)
    return positive / (1.0 + positive)


def _whole_number(name: str, value: Any, smallest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ConfigError(f"{name} must be a whole number >= {smallest}, got {value!r}")
    return value


def _policy(device: str | int | list[Any] | None, use_fp16: bool) -> DevicePolicy:
    """pymilvus' ``device`` (None, a name, a CUDA index or a list: the first is used) as a policy."""
    from multiembed.device import DevicePolicy, resolve_device

    if isinstance(device, list):
        device = device[0] if device else None
    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}"
    if device is not None and not isinstance(device, str):
        raise ConfigError(f"device must be a name such as 'cpu' or 'cuda:0', got {device!r}")
    resolved = resolve_device(device or "auto")
    return DevicePolicy.resolve(resolved, "float16" if use_fp16 and resolved.type == "cuda" else None)


class BGERerankFunction:
    """pymilvus.model's ``BGERerankFunction``: same arguments; results best first, ``top_k`` of them."""

    def __init__(
        self,
        model_name: str = "BAAI/bge-reranker-v2-m3",
        use_fp16: bool = True,
        batch_size: int = 32,
        normalize: bool = True,
        device: str | list[Any] | None = None,
        query_max_length: int = 256,
        max_length: int = 512,
        **kwargs: Any,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from multiembed.models import loading

        device = kwargs.pop("devices", device)
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        if kwargs:
            raise ConfigError(f"BGERerankFunction does not take {', '.join(sorted(kwargs))}")
        self.model_name = model_name
        self.batch_size = _whole_number("batch_size", batch_size)
        self.normalize = normalize
        self.query_max_length = _whole_number("query_max_length", query_max_length)
        self.max_length = _whole_number("max_length", max_length, smallest=4)
        self.policy = _policy(device, use_fp16)
        self.device = str(self.policy.device)
        path = _local_model(model_name)
        with loading(model_name, "a BGE reranker (a sequence classifier)", path):
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, trust_remote_code=trust_remote_code
            )
        labels = model.config.num_labels
        if labels != 1:
            raise ModelNotFoundError(f"{model_name}: a reranker scores with one label, not {labels}")
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelNotFoundError(f"{model_name}: the reranker needs a fast (tokenizers) tokenizer")
        self._backend = copy.deepcopy(backend)
        self._backend.no_truncation()
        self._backend.no_padding()
        self._specials = int(self.tokenizer.num_special_tokens_to_add(pair=True))
        self._type_ids = "token_type_ids" in self.tokenizer.model_input_names
        self.model = self.policy.place(model)

    def _pairs(self, query: str, documents: list[str]) -> list[dict[str, list[int]]]:
        """Token ids of each (query, document) pair, truncated as FlagEmbedding truncates them."""
        room = self.max_length - self._specials
        question = self._backend.encode(query, add_special_tokens=False)
        question.truncate(max(min(self.query_max_length, room - 1), 0))  # leave the passage a token
        budget = max(room - len(question.ids), 0)
        pairs: list[dict[str, list[int]]] = []
        for passage in self._backend.encode_batch(documents, add_special_tokens=False):
            passage.truncate(budget)
            joined = self._backend.post_process(question, passage, add_special_tokens=True)
            item = {"input_ids": joined.ids, "attention_mask": joined.attention_mask}
            if self._type_ids:
                item["token_type_ids"] = joined.type_ids
            pairs.append(item)
        return pairs

    def _logits(self, pairs: list[dict[str, list[int]]]) -> list[float]:
        order = sorted(range(len(pairs)), key=lambda index: -len(pairs[index]["input_ids"]))
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer.pad([pairs[index] for index in chunk], padding=True, return_tensors="pt")
            with self.policy.inference():
                logits: torch.Tensor = self.model(**self.policy.move(dict(batch)), return_dict=True).logits
            for index, value in zip(chunk, logits.view(-1).float().cpu().tolist(), strict=True):
                scores[index] = float(value)
        return scores

    def compute_scores(self, query: str, documents: list[str]) -> list[float]:
        """One score per document, in input order (sigmoid probabilities when ``normalize``)."""
        if not isinstance(query, str):
            raise InputError(f"the query must be text, not {type(query).__name__}", "query")
        for index, document in enumerate(documents):
            if not isinstance(document, str):
                raise InputError(f"not text but {type(document).__name__}", f"document {index}")
        if not documents:
            return []
        scores = self._logits(self._pairs(query, list(documents)))
        return [_sigmoid(score) for score in scores] if self.normalize else scores

    def __call__(self, query: str, documents: list[str], top_k: int = 5) -> list[RerankResult]:
        """The ``top_k`` best documents for ``query`` (all of them when ``top_k`` is 0), best first."""
        documents = list(documents)
        scores = self.compute_scores(query, documents)
        order = sorted(range(len(documents)), key=lambda index: scores[index], reverse=True)
        if top_k:
            order = order[:top_k]
        return [RerankResult(documents[index], scores[index], index) for index in order]
