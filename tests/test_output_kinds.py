"""A modality defined entirely in this file (no package file touched) with sparse, dense and
multi-vector outputs: encoded, written to parquet, indexed and searched in real Milvus Lite.

This is the path README's "Adding a modality" describes.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

import multiembed
from multiembed import BackendError, ConfigError, SchemaMismatchError
from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.milvus import MilvusStore
from multiembed.models import ResolvedModel
from multiembed.output import write_embeddings
from multiembed.outputs import OutputSpec
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.texts import load_text

DOCS = [
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database",
    "a dog and a fox",
]


def bucket(word: str, buckets: int) -> int:
    return zlib.crc32(word.encode()) % buckets


class HashedWords(Encoder):
    """Counts of hashed words: a sparse vector per text, compared by inner product (like BM25 rows)."""

    modality = "toy-words"
    accepts_text_queries = True
    documents_are_text = True

    def __init__(
        self, *, model_id: str, policy: DevicePolicy, buckets: int = 4096, batch_size: int = 3
    ) -> None:
        super().__init__(
            model_id=model_id, dim=buckets, policy=policy, normalize=False, batch_size=batch_size
        )
        self.buckets = buckets

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return (OutputSpec("sparse", "sparse", self.buckets, "IP"),)

    @classmethod
    def from_pretrained(
        cls, model: ResolvedModel, policy: DevicePolicy, *, buckets: int = 4096, batch_size: int = 3
    ) -> HashedWords:
        return cls(model_id=model.model_id, policy=policy, buckets=buckets, batch_size=batch_size)

    def identity_options(self) -> dict[str, Any]:
        return {"buckets": self.buckets}  # what load() must be given to make the same vectors again

    def loader(self, role: Role):
        return load_text

    def preprocess(self, raws: list[str], role: Role) -> torch.Tensor:
        counts = torch.zeros(len(raws), self.buckets)
        for row, text in enumerate(raws):
            for word in text.lower().split():
                counts[row, bucket(word, self.buckets)] += 1.0
        return counts

    def forward(self, batch: torch.Tensor, role: Role) -> ModelOutput:
        return ModelOutput(hidden=batch)

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        return output.hidden


class HashedWordsWithDense(HashedWords):
    """Three outputs from one forward, as BGE-M3 has: a dense projection, the sparse counts, and
    one vector per word (multi-vector)."""

    modality = "toy-words-multi"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        generator = torch.Generator().manual_seed(0)
        self.projection = torch.randn(self.buckets, 8, generator=generator)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return (
            OutputSpec("dense", "dense", 8, "COSINE"),
            OutputSpec("sparse", "sparse", self.buckets, "IP"),
            OutputSpec("words", "multi", 8, "COSINE"),
        )

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> dict[str, Any]:
        counts = output.hidden
        words = [self.projection[row.nonzero().flatten()] for row in counts]
        return {"dense": counts @ self.projection, "sparse": counts, "words": words}


def _spec(name: str, encoder_class: type[Encoder]) -> ModalitySpec:
    return ModalitySpec(
        name=name,
        description="hashed word counts (a test modality)",
        default_model="hashed",
        models=(ModelInfo("hashed", "toy/hashed-words", 4096, source="builtin"),),
        extensions=frozenset({".txt"}),
        encoder_class=encoder_class,
        file_items="lines",
    )


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    register(_spec("toy-words", HashedWords))
    register(_spec("toy-words-multi", HashedWordsWithDense))


def expected_counts(texts: list[str], buckets: int = 4096) -> np.ndarray:
    matrix = np.zeros((len(texts), buckets), np.float32)
    for row, text in enumerate(texts):
        for column, count in Counter(bucket(word, buckets) for word in text.lower().split()).items():
            matrix[row, column] = count
    return matrix


def test_sparse_output_is_a_csr_matrix_equal_to_the_counts():
    encoder = multiembed.load("toy-words", device="cpu")
    result = encoder.encode([*DOCS, ""])
    assert sp.issparse(result.vectors) and result.vectors.shape == (4, 4096)
    np.testing.assert_array_equal(result.vectors.toarray(), expected_counts(DOCS))
    assert [error.reason for error in result.errors] == ["empty text"]
    documents = encoder.encode_documents(DOCS[:2])  # pymilvus.model returns a csr_array
    assert isinstance(documents, sp.csr_array)
    np.testing.assert_array_equal(documents.toarray(), expected_counts(DOCS[:2]))


def test_parquet_holds_sparse_rows_as_bulk_writer_json_and_the_identity(tmp_path):
    encoder = multiembed.load("toy-words", device="cpu", buckets=512)
    result = encoder.encode(DOCS)
    table = pq.read_table(write_embeddings(result, tmp_path / "words.parquet"))
    assert str(table.schema.field("vector").type) == "string"
    first = {int(k): v for k, v in json.loads(table.column("vector")[0].as_py()).items()}
    assert first == {int(c): float(v) for c, v in enumerate(expected_counts(DOCS[:1], 512)[0]) if v}
    config = json.loads(table.schema.metadata[b"multiembed.config"])
    assert config == encoder.config()
    assert config["options"] == {"buckets": 512}
    assert config["outputs"] == [{"name": "sparse", "kind": "sparse", "dim": 512, "metric": "IP"}]
    with pytest.raises(ConfigError, match=r"\.npy holds one dense matrix, and this encoder emits sparse"):
        write_embeddings(result, tmp_path / "words.npy")
    assert not (tmp_path / "words.npy").exists()


def test_jsonl_and_parquet_hold_every_output_of_a_multi_output_encoder(tmp_path):
    encoder = multiembed.load("toy-words-multi", device="cpu")
    result = encoder.encode(DOCS)
    table = pq.read_table(write_embeddings(result, tmp_path / "all.parquet"))
    assert table.column_names == [
        "id",
        "source",
        "modality",
        "model",
        "vector",
        "sparse_vector",
        "words_vector",
    ]
    words = table.column("words_vector")[2].as_py()  # "milvus is a vector database": 5 distinct words
    assert np.array(words).shape == (5, 8)
    rows = [
        json.loads(line) for line in write_embeddings(result, tmp_path / "all.jsonl").read_text().splitlines()
    ]
    dense = expected_counts(DOCS) @ encoder.projection.numpy()  # normalize=False: as projected
    np.testing.assert_allclose([row["vector"] for row in rows], dense, atol=1e-5)
    assert rows[0]["sparse_vector"] == {
        str(c): float(v) for c, v in enumerate(expected_counts(DOCS[:1])[0]) if v
    }


def test_a_sparse_collection_is_indexed_and_searched_in_milvus_lite(tmp_path):
    uri = str(tmp_path / "toy.db")
    with MilvusStore(uri, "words", modality="toy-words") as store:
        assert store.add(DOCS).added == len(DOCS)
        fields = {f["name"]: f for f in store.client.describe_collection("words")["fields"]}
        assert fields["vector"]["type"].name == "SPARSE_FLOAT_VECTOR"
        hits = store.search("bicycle wall", limit=2)
        assert hits[0].source == "#0" and hits[0].score == pytest.approx(2.0)
        assert store.search("fox", limit=4)[0].source in {"#1", "#3"}
        assert store.search("zebra", limit=3) == []  # no word of the query is known: no hit
        assert store.add(DOCS).added == 0  # idempotent
    with MilvusStore(uri, "words") as reopened:  # rebuilt from the recorded identity
        assert isinstance(reopened.encoder, HashedWords) and reopened.encoder.buckets == 4096
        assert reopened.search({bucket("milvus", 4096): 1.0}, limit=1)[0].source == "#2"
    with pytest.raises(SchemaMismatchError, match="dim: collection has 4096, encoder has 1024; buckets"):
        MilvusStore(uri, "words", buckets=1024)


def test_hybrid_search_fuses_the_outputs_of_one_encoder(tmp_path):
    uri = str(tmp_path / "multi.db")
    with MilvusStore(uri, "multi", modality="toy-words-multi") as store:
        store.add(DOCS)
        fields = {f["name"] for f in store.client.describe_collection("multi")["fields"]}
        assert {"vector", "sparse_vector"} <= fields and "words_vector" not in fields  # multi: files only
        sparse_only = store.search("red bicycle", limit=2, hybrid=True, weights=(0.0, 1.0))
        assert sparse_only[0].source == "#0" and sparse_only[0].score_kind == "weighted"
        fused = store.search("red bicycle", limit=3, hybrid=True)
        assert fused[0].source == "#0" and fused[0].score_kind == "rrf"
        sparse_hits = store.search("red bicycle", limit=1, output="sparse")
        assert sparse_hits[0].score == pytest.approx(2.0) and sparse_hits[0].score_kind == "ip"
        with pytest.raises(ConfigError, match="weights: give 2 numbers"):
            store.search("red bicycle", hybrid=True, weights=(1.0,))


def test_an_encoder_with_only_multi_vectors_cannot_make_a_collection(tmp_path):
    class OnlyWords(HashedWordsWithDense):
        @property
        def outputs(self) -> tuple[OutputSpec, ...]:
            return (OutputSpec("words", "multi", 8, "COSINE"),)

    encoder = OnlyWords(model_id="toy", policy=DevicePolicy.resolve("cpu"))
    with pytest.raises(BackendError, match=r"words \(multi\)\) can be stored in Milvus"):
        MilvusStore(str(tmp_path / "m.db"), "m", encoder)


class CountsOnlyRed(HashedWords):
    """Counts only the word "red": most texts get a sparse row without any nonzero weight."""

    def preprocess(self, raws: list[str], role: Role) -> torch.Tensor:
        counts = super().preprocess(raws, role)
        keep = torch.zeros_like(counts)
        column = bucket("red", self.buckets)
        keep[:, column] = counts[:, column]
        return keep


def test_an_empty_sparse_row_is_an_item_error_not_a_failed_run(tmp_path):
    encoder = CountsOnlyRed(model_id="toy", policy=DevicePolicy.resolve("cpu"))
    with MilvusStore(str(tmp_path / "e.db"), "words", encoder) as store:
        report = store.add(DOCS)
        assert report.added == 1 and store.count() == 1
        assert [(error.source, error.reason) for error in report.errors] == [
            (f"#{index}", "no nonzero weight in its sparse vector (nothing to store)") for index in (1, 2, 3)
        ]
        assert store.search("red", limit=3)[0].source == "#0"
