"""pymilvus.model's ``NomicEmbeddingFunction``: Nomic's hosted API, or a local nomic-embed-text export.

With a model name (``nomic-embed-text-v1.5``) it calls Nomic Atlas's text embedding API through the
``hosted`` modality (``task_type`` search_query/search_document, ``dimensionality``; key from
``NOMIC_API_KEY``). With a local folder (a sentence-transformers export of nomic-embed-text) it runs
the model here through the ``text`` modality, adding the task prefixes nomic-embed-text was trained
with (``search_query: ``, ``search_document: ``...), as its model card requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.errors import ConfigError
from multiembed.model.dense.hosted import HostedEmbeddingFunction, _client_options

if TYPE_CHECKING:
    import numpy as np

    from multiembed.encoder import Encoder

__all__ = ["NomicEmbeddingFunction"]

#: the tasks nomic-embed-text knows; each is also its text prefix ("search_query: ...")
TASK_TYPES = ("search_query", "search_document", "classification", "clustering")
#: pymilvus.model's default ``dimensions``
DEFAULT_DIMENSIONS = 768
#: options of the local path (the text modality's); the rest are hosted request fields
_LOCAL_OPTIONS = ("trust_remote_code", "device", "batch_size", "max_seq_length", "normalize")


def _is_local(model_name: str) -> bool:
    return Path(model_name).expanduser().is_dir()


class NomicEmbeddingFunction:
    """``encode_queries``/``encode_documents`` use search_query/search_document; ``__call__`` uses
    ``task_type``. ``dimensions`` (or ``dimensionality``) is the Matryoshka size the API returns;
    a local model gives its full vectors (``trust_remote_code=True`` runs nomic's own model code).
    """

    def __init__(
        self,
        model_name: str = "nomic-embed-text-v1.5",
        task_type: str = "search_document",
        dimensions: int | None = DEFAULT_DIMENSIONS,
        **kwargs: Any,
    ) -> None:
        if task_type not in TASK_TYPES:
            raise ConfigError(f"task_type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
        if "dimensionality" in kwargs:
            dimensions = kwargs.pop("dimensionality")
        self.model_name, self.task_type, self.dimensionality = model_name, task_type, dimensions
        self.local = _is_local(model_name)
        self._encoders: dict[str, Encoder] = {}
        if self.local:
            self._local_options = {key: kwargs.pop(key) for key in _LOCAL_OPTIONS if key in kwargs}
            if kwargs:
                raise ConfigError(f"a local Nomic model does not take {', '.join(sorted(kwargs))}")
            self.encoder = self._local_encoder("search_document")
            if dimensions not in (None, DEFAULT_DIMENSIONS, self.encoder.dim):
                raise ConfigError(
                    f"dimensions={dimensions}: a local Nomic model gives its full {self.encoder.dim}-d "
                    "vectors; Matryoshka sizes come from the hosted API"
                )
        else:
            client = _client_options(kwargs, "NomicEmbeddingFunction", strict=False)
            api_key = kwargs.pop("api_key", None)
            self._hosted = HostedEmbeddingFunction(
                f"nomic:{model_name}",
                call_request=None if task_type == "search_document" else {"task_type": task_type},
                api_key=api_key,
                dimensions=dimensions,
                request_options=kwargs or None,
                **client,
            )
            self.encoder = self._hosted.encoder

    def _local_encoder(self, document_task: str) -> Encoder:
        """The local model with ``document_task`` as its document prefix (loaded once per task)."""
        if document_task not in self._encoders:
            import multiembed

            options = dict(self._local_options)
            self._encoders[document_task] = multiembed.load(
                "text",
                self.model_name,
                device=options.pop("device", "cpu"),
                query_instruction="search_query: ",
                document_instruction=f"{document_task}: ",
                **options,
            )
        return self._encoders[document_task]

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        if not self.local:
            return self._hosted.encode_queries(queries)
        vectors: list[np.ndarray] = self.encoder.encode_queries(list(queries))
        return vectors

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        if not self.local:
            return self._hosted.encode_documents(documents)
        vectors: list[np.ndarray] = self.encoder.encode_documents(list(documents))
        return vectors

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        if not self.local:
            return self._hosted(texts)
        if self.task_type == "search_query":
            return self.encode_queries(texts)
        vectors: list[np.ndarray] = self._local_encoder(self.task_type).encode_documents(list(texts))
        return vectors
