"""BM25 modality: sparse lexical vectors from a fitted BM25 parameters file, for the CLI and MilvusStore.

The "model" is the JSON parameters file written by ``multiembed.model.sparse.BM25EmbeddingFunction
.save`` (or pymilvus.model's): ``multiembed.load("bm25", "params.json")``,
``MilvusStore(uri, name, modality="bm25", model="params.json")``, ``multiembed index --modality bm25
--model params.json``. Its fingerprint is the identity's ``weights``, so a collection refuses
vectors made with other statistics. Documents get BM25's term-frequency weights, queries the IDF of
their terms (the role decides), and their inner product is the BM25 score (metric IP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ModelNotFoundError
from multiembed.model.rows import sparse_rows
from multiembed.model.sparse.bm25.bm25 import DEFAULT_PARAMS_FILE, DEFAULT_PARAMS_URL, read_params
from multiembed.model.sparse.bm25.tokenizers import DEFAULT_CONFIGS, build_default_analyzer
from multiembed.models import ResolvedModel
from multiembed.outputs import OutputSpec
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import DEFAULT_TEXT_MAX_BYTES, TextLoader

if TYPE_CHECKING:
    import torch

    from multiembed.model.sparse.bm25.bm25 import BM25EmbeddingFunction
else:
    from multiembed.lazy import torch

LOCAL_FOLDER = (
    "a BM25 parameters file (not a folder), made with BM25EmbeddingFunction().fit(texts) and "
    '.save("params.json") from multiembed.model.sparse (or pymilvus.model.sparse)'
)


class BM25Encoder(Encoder):
    """BM25 sparse rows (vocabulary-size, IP) from a fitted :class:`BM25EmbeddingFunction`."""

    modality = "bm25"
    metric = "IP"
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self,
        function: BM25EmbeddingFunction,
        *,
        model_id: str,
        policy: DevicePolicy,
        language: str,
        batch_size: int = 256,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> None:
        if function.dim < 1:
            raise ModelNotFoundError(f"{model_id}: the BM25 parameters hold no vocabulary")
        super().__init__(
            model_id=model_id, dim=function.dim, policy=policy, normalize=False, batch_size=batch_size
        )
        self.function = function
        self.language = language
        self._loader = TextLoader(max_bytes)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return (OutputSpec("sparse", "sparse", self.function.dim, "IP"),)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        language: str | None = None,
        batch_size: int = 256,
        max_bytes: int | None = DEFAULT_TEXT_MAX_BYTES,
    ) -> BM25Encoder:
        """Read the parameters file; ``language`` picks the analyzer (default: the file's, else en)."""
        from multiembed.model.sparse.bm25.bm25 import BM25EmbeddingFunction

        path = Path(model.path) if model.path else None
        if path is None and Path(DEFAULT_PARAMS_FILE).is_file():  # as pymilvus.model's load() does
            path = Path(DEFAULT_PARAMS_FILE).resolve()
        if path is None or not path.is_file():
            where = "is a folder" if path is not None else "is not a file here"
            raise ModelNotFoundError(
                f"{model.model_id}: {where}; the bm25 modality needs {LOCAL_FOLDER}. multiembed downloads "
                f"nothing: pymilvus.model's MS MARCO parameters are at {DEFAULT_PARAMS_URL}"
            )
        params = read_params(path)
        if language is None:
            saved = params.get("analyzer")
            language = saved if isinstance(saved, str) and saved in DEFAULT_CONFIGS else "en"
        function = BM25EmbeddingFunction(build_default_analyzer(language))
        function.set_params(params, str(path))
        return cls(
            function,
            model_id=model.model_id,
            policy=policy,
            language=language,
            batch_size=batch_size,
            max_bytes=max_bytes,
        )

    def identity_options(self) -> dict[str, Any]:
        return {"language": self.language}

    def details(self) -> dict[str, Any]:
        function = self.function
        return {"k1": function.k1, "b": function.b, "epsilon": function.epsilon, "analyzer": self.language}

    # ---- stages -----------------------------------------------------------------------------
    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return self._loader

    def size_of(self, raw: str) -> int:
        return len(raw)

    def preprocess(self, raws: list[str], role: Role) -> Any:
        if role == "query":
            return self.function.encode_queries(raws)
        return self.function.encode_documents(raws)

    def forward(self, batch: Any, role: Role) -> ModelOutput:
        return ModelOutput(hidden=torch.empty(0), extras={"sparse": batch})

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> dict[str, Any]:
        return {"sparse": output.extras["sparse"]}

    # ---- the pymilvus.model surface: rows iterate as (1, dim), as its documentation shows -----------
    def encode_documents(self, documents: Iterable[Any]) -> Any:
        return sparse_rows(super().encode_documents(documents))

    def encode_queries(self, queries: Iterable[Any]) -> Any:
        return sparse_rows(super().encode_queries(queries))

    def __call__(self, inputs: Iterable[Any]) -> Any:
        return self.encode_documents(inputs)


SPEC = register(
    ModalitySpec(
        name="bm25",
        description="BM25 sparse lexical vectors from a fitted parameters file (--model params.json)",
        default_model="msmarco",
        models=(
            ModelInfo(
                alias="msmarco",
                hub_id=DEFAULT_PARAMS_FILE,
                dim=0,
                description="pymilvus.model's MS MARCO parameters: not shipped, pass the file itself",
                source="file",
            ),
        ),
        extensions=frozenset({".txt", ".md"}),
        encoder_class=BM25Encoder,
        file_items="lines",
        local_folder=LOCAL_FOLDER,
    )
)
