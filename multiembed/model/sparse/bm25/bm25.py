"""BM25 sparse vectors, as pymilvus.model's ``BM25EmbeddingFunction`` makes them, offline.

Same constructor, methods, return types and arithmetic (the weights are equal to the last bit for
the same analyzer and corpus), and the same JSON parameter file: one saved by pymilvus.model loads
here, and one saved here loads there. What differs:

- Fitting streams: ``fit`` takes any iterable of texts and holds only the vocabulary statistics,
  never the corpus or its tokens.
- ``fit(more, extend=True)`` adds documents to a fitted model without reading the old ones again;
  the result equals fitting on the old and new documents together (same term indices, same
  weights). It needs the document frequencies, which ``save`` writes alongside pymilvus.model's
  keys (``doc_freq``, ``total_words``; pymilvus.model ignores them). A file saved by
  pymilvus.model lacks them: it encodes, but cannot be extended.
- Nothing is downloaded: the default analyzer's data ships with the packages, and ``load()``
  without a path reads ``./bm25_msmarco_v1.json`` when it is there instead of fetching it.
- Errors are multiembed's (``ConfigError``, which is also a ``ValueError``; ``InputError``;
  ``ModelNotFoundError`` for an unreadable parameter file).

Document vectors hold the term-frequency part of BM25 (``k1``, ``b``, ``avgdl``), query vectors
the IDF of each query term; their inner product is the BM25 score.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from multiembed.errors import ConfigError, InputError, ModelNotFoundError
from multiembed.model.rows import SparseRows, sparse_rows
from multiembed.model.sparse.bm25.tokenizers import build_default_analyzer

#: what pymilvus.model's ``load()`` uses when given no path (it downloads it; we only read it)
DEFAULT_PARAMS_FILE = "bm25_msmarco_v1.json"
DEFAULT_PARAMS_URL = (
    "https://github.com/milvus-io/pymilvus-assets/releases/download/v0.1-bm25v1/bm25_msmarco_v1.json"
)
FORMAT_VERSION = "v1"
_POOL_CHUNK = 64


def _checked(texts: Iterable[Any]) -> Iterator[str]:
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"expected text (str), got {type(text).__name__}", f"#{position}")
        yield text


class BM25EmbeddingFunction:
    """BM25 sparse embeddings; see the module docstring for what differs from pymilvus.model."""

    def __init__(
        self,
        analyzer: Callable[[str], list[str]] | None = None,
        corpus: Iterable[str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        num_workers: int = 1,
    ) -> None:
        if not isinstance(num_workers, int) or num_workers < 1:
            raise ConfigError(f"num_workers must be an integer >= 1, got {num_workers!r}")
        self.analyzer: Callable[[str], list[str]] = (
            analyzer if analyzer is not None else build_default_analyzer(language="en")
        )
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.num_workers = num_workers
        self.corpus_size = 0
        self.avgdl: float = 0
        self.average_idf: float = 0.0
        #: term -> [idf, column index], as pymilvus.model keeps it
        self.idf: dict[str, list[Any]] = {}
        #: term -> number of documents holding it (None for parameters loaded without them)
        self.doc_freq: dict[str, int] | None = {}
        self.total_words = 0
        if corpus is not None:
            self.fit(corpus)

    # ---- fitting -------------------------------------------------------------------------------
    def _tokenized(self, corpus: Iterable[Any]) -> Iterator[list[str]]:
        texts = _checked(corpus)
        if self.num_workers == 1:
            yield from map(self.analyzer, texts)
            return
        with multiprocessing.Pool(self.num_workers) as pool:
            yield from pool.imap(self.analyzer, texts, chunksize=_POOL_CHUNK)

    def fit(self, corpus: Iterable[str], *, extend: bool = False) -> None:
        """Compute the BM25 statistics of ``corpus`` (any iterable of texts, read once).

        ``extend=True`` adds ``corpus`` to the documents already fitted instead of starting over;
        the model then equals one fitted on all of them in order. The model is unchanged if this
        raises (a bad item, an empty corpus).
        """
        if extend and self.doc_freq is None:
            raise ConfigError(
                "these BM25 parameters have no document frequencies (saved by pymilvus.model?), "
                "so they cannot be extended; fit the whole corpus again"
            )
        doc_freq: dict[str, int] = dict(self.doc_freq or {}) if extend else {}
        corpus_size = self.corpus_size if extend else 0
        total_words = self.total_words if extend else 0
        for tokens in self._tokenized(corpus):
            total_words += len(tokens)
            for word in dict.fromkeys(tokens):
                doc_freq[word] = doc_freq.get(word, 0) + 1
            corpus_size += 1
        if corpus_size == 0:
            raise ConfigError("BM25 needs at least one document to fit")
        self.doc_freq, self.corpus_size, self.total_words = doc_freq, corpus_size, total_words
        self.avgdl = total_words / corpus_size
        self._calc_idf(doc_freq)

    def _calc_idf(self, doc_freq: dict[str, int]) -> None:
        """pymilvus.model's IDF (rank_bm25's Okapi variant), term by term in the same order."""
        idf: dict[str, list[Any]] = {}
        idf_sum = 0.0
        negative: list[str] = []
        for index, (word, freq) in enumerate(doc_freq.items()):
            value = math.log(self.corpus_size - freq + 0.5) - math.log(freq + 0.5)
            idf[word] = [value, index]
            idf_sum += value
            if value < 0:
                negative.append(word)
        self.average_idf = idf_sum / len(idf) if idf else 0.0
        eps = self.epsilon * self.average_idf
        for word in negative:
            idf[word][0] = eps
        self.idf = idf

    @property
    def dim(self) -> int:
        """The vocabulary size: the number of columns of every vector."""
        return len(self.idf)

    # ---- encoding ------------------------------------------------------------------------------
    def _matrix(self, values: list[float], rows: list[int], columns: list[int], count: int) -> SparseRows:
        matrix = sp.csr_array(
            (np.asarray(values, np.float64), (np.asarray(rows, np.int64), np.asarray(columns, np.int64))),
            shape=(count, len(self.idf)),
        )
        return sparse_rows(matrix.astype(np.float32))

    def _fitted(self) -> None:
        if not self.idf:
            raise ConfigError("BM25 is not fitted: call fit(corpus) or load(path) first")

    def encode_queries(self, queries: Iterable[str]) -> SparseRows:
        """One row per query: the IDF of each known term (counted once per occurrence)."""
        self._fitted()
        values: list[float] = []
        rows: list[int] = []
        columns: list[int] = []
        count = 0
        for row, query in enumerate(_checked(queries)):
            count = row + 1
            for term in self.analyzer(query):
                entry = self.idf.get(term)
                if entry is not None:
                    values.append(entry[0])
                    rows.append(row)
                    columns.append(entry[1])
        return self._matrix(values, rows, columns, count)

    def encode_documents(self, documents: Iterable[str]) -> SparseRows:
        """One row per document: BM25's saturated, length-normalised term frequency of known terms."""
        self._fitted()
        values: list[float] = []
        rows: list[int] = []
        columns: list[int] = []
        count = 0
        for row, document in enumerate(_checked(documents)):
            count = row + 1
            terms = self.analyzer(document)
            doc_len = len(terms)
            frequencies: dict[str, int] = {}
            for term in terms:
                frequencies[term] = frequencies.get(term, 0) + 1
            for term, term_freq in frequencies.items():
                entry = self.idf.get(term)
                if entry is not None:
                    value = (
                        term_freq
                        * (self.k1 + 1)
                        / (term_freq + self.k1 * (1 - self.b + self.b * doc_len / self.avgdl))
                    )
                    values.append(value)
                    rows.append(row)
                    columns.append(entry[1])
        return self._matrix(values, rows, columns, count)

    def __call__(self, texts: Iterable[str]) -> SparseRows:
        raise ConfigError(
            "Unsupported function called, please check the documentation of 'BM25EmbeddingFunction'."
        )

    # ---- parameters file -------------------------------------------------------------------------
    def to_params(self) -> dict[str, Any]:
        """The JSON parameter record: pymilvus.model's keys, then ours (which it ignores)."""
        words: list[str] = [""] * len(self.idf)
        values: list[float] = [0.0] * len(self.idf)
        for word, (value, index) in self.idf.items():
            words[index] = word
            values[index] = value
        params: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "corpus_size": self.corpus_size,
            "avgdl": self.avgdl,
            "idf_word": words,
            "idf_value": values,
            "k1": self.k1,
            "b": self.b,
            "epsilon": self.epsilon,
        }
        if self.doc_freq is not None:
            params["doc_freq"] = [self.doc_freq[word] for word in words]
            params["total_words"] = self.total_words
        name = getattr(self.analyzer, "name", None)
        if isinstance(name, str):
            params["analyzer"] = name
        return params

    def save(self, path: str | Path) -> None:
        """Write the parameters as JSON (atomically: a crash never leaves half a file)."""
        from multiembed.output import atomic_path

        with atomic_path(Path(path)) as temporary, temporary.open("w", encoding="utf-8") as file:
            json.dump(self.to_params(), file)

    def load(self, path: str | Path | None = None) -> None:
        """Read parameters saved by :meth:`save` or by pymilvus.model.

        Without a path, ``./bm25_msmarco_v1.json`` (pymilvus.model's default) is read if present;
        it is never downloaded.
        """
        if path is None:
            if not Path(DEFAULT_PARAMS_FILE).is_file():
                raise ModelNotFoundError(
                    f"no BM25 parameters given and ./{DEFAULT_PARAMS_FILE} is not here; multiembed "
                    f"downloads nothing: fit and save your own, or fetch {DEFAULT_PARAMS_URL} yourself"
                )
            path = DEFAULT_PARAMS_FILE
        self.set_params(read_params(path), str(path))

    def set_params(self, params: dict[str, Any], where: str = "parameters") -> None:
        """Adopt a parameter record (the JSON of :meth:`save`)."""
        try:
            words = [str(word) for word in params["idf_word"]]
            values = [float(value) for value in params["idf_value"]]
            corpus_size, avgdl = int(params["corpus_size"]), float(params["avgdl"])
            k1, b, epsilon = float(params["k1"]), float(params["b"]), float(params["epsilon"])
            frequencies = params.get("doc_freq")
            doc_freq = None if frequencies is None else [int(freq) for freq in frequencies]
        except (KeyError, TypeError, ValueError) as error:
            why = f"{type(error).__name__}: {error}"
            raise ModelNotFoundError(f"{where}: not BM25 parameters ({why})") from None
        if len(values) != len(words) or (doc_freq is not None and len(doc_freq) != len(words)):
            raise ModelNotFoundError(f"{where}: not BM25 parameters (lists of different lengths)")
        self.corpus_size, self.avgdl = corpus_size, avgdl
        pairs = enumerate(zip(words, values, strict=True))
        self.idf = {word: [value, index] for index, (word, value) in pairs}
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.doc_freq = None if doc_freq is None else dict(zip(words, doc_freq, strict=True))
        self.total_words = int(params.get("total_words", round(self.avgdl * corpus_size)))

    @classmethod
    def from_file(
        cls, path: str | Path, analyzer: Callable[[str], list[str]] | None = None, num_workers: int = 1
    ) -> BM25EmbeddingFunction:
        """A function with the parameters at ``path`` (``BM25EmbeddingFunction(); load(path)``)."""
        function = cls(analyzer, num_workers=num_workers)
        function.load(path)
        return function


def read_params(path: str | Path) -> dict[str, Any]:
    """The JSON record at ``path``, or a ModelNotFoundError saying why it cannot be read."""
    try:
        with Path(path).open(encoding="utf-8") as file:
            params = json.load(file)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"cannot read BM25 parameters {path}: {error}") from None
    if not isinstance(params, dict):
        raise ModelNotFoundError(f"{path}: not BM25 parameters (not a JSON object)")
    return params
