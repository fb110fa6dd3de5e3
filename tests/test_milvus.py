"""MilvusStore and the schema helpers, against real Milvus Lite (a local file per test)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import multiembed
from multiembed import BackendError, SchemaMismatchError
from multiembed.milvus import MilvusStore, check_backend, index_params_for, list_collections, schema_for
from tests.image_files import good_images

DOCS = [
    "artificial intelligence was founded as an academic discipline in 1956",
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database for similarity search",
    "sentence embedding model",
    "a dog",
]


@pytest.fixture(scope="module")
def text_encoder(tiny_models):
    return multiembed.load("text", str(tiny_models["mean"]), device="cpu")


@pytest.fixture
def uri(tmp_path) -> str:
    return str(tmp_path / "test.db")


def test_schema_helpers_work_with_milvus_client_directly(text_encoder, uri):
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    client.create_collection(
        "raw", schema=schema_for(text_encoder), index_params=index_params_for(text_encoder, "HNSW")
    )
    fields = {f["name"]: f for f in client.describe_collection("raw")["fields"]}
    assert fields["id"]["is_primary"] and fields["id"]["params"]["max_length"] == 64
    assert fields["vector"]["params"]["dim"] == text_encoder.dim
    assert {"source", "modality", "model"} <= set(fields)
    result = text_encoder.encode(DOCS[:2])
    client.insert("raw", result.to_milvus_rows())
    rows = client.query("raw", ids=result.ids, output_fields=["source", "model"])
    assert {row["id"] for row in rows} == set(result.ids)
    assert {row["model"] for row in rows} == {text_encoder.model_id}
    client.close()


def test_every_item_is_its_own_top_hit(text_encoder, uri):
    with MilvusStore(uri, "docs", text_encoder) as store:
        report = store.add(DOCS)
        assert (report.added, report.skipped, report.failed) == (len(DOCS), 0, 0)
        assert store.count() == len(DOCS)
        for position, text in enumerate(DOCS):
            hits = store.search(text, limit=3)
            assert hits[0].source == f"#{position}" and hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].fields["modality"] == "text" and len(hits) == 3


def test_adding_again_adds_nothing_and_new_items_only_once(text_encoder, uri):
    with MilvusStore(uri, "docs", text_encoder) as store:
        store.add(DOCS[:4])
        report = store.add([*DOCS, DOCS[5], "", 3])  # two new, one repeated in the batch, two bad
        assert (report.added, report.skipped) == (2, 5)
        assert [e.reason for e in report.errors] == ["empty text", "expected text (str), got int"]
        assert store.count() == len(DOCS)


def test_reopening_rebuilds_the_recorded_encoder(text_encoder, uri, tiny_models):
    MilvusStore(uri, "docs", text_encoder).close()
    with MilvusStore(uri, "docs") as store:
        assert store.encoder.model_id == text_encoder.model_id == str(tiny_models["mean"])
        assert store.info.dim == text_encoder.dim
    names = {summary.name: summary for summary in list_collections(uri)}
    assert names["docs"].info.model == text_encoder.model_id and names["docs"].rows == 0


def test_mismatched_encoder_or_modality_is_refused(text_encoder, uri, tiny_models):
    MilvusStore(uri, "docs", text_encoder).close()
    other = multiembed.load("text", str(tiny_models["max-dense"]), device="cpu")
    with pytest.raises(
        SchemaMismatchError,
        match=r"model: collection has .*mean.*dim: collection has 32, encoder has 16; "
        r".*pooling: collection has 'mean', encoder has 'max'",
    ):
        MilvusStore(uri, "docs", other)
    with pytest.raises(SchemaMismatchError, match="holds 'text' vectors, not 'image'"):
        MilvusStore(uri, "docs", modality="image")
    wrong_dim = "query vector has 16 dims, the 'dense' output has 32"
    with MilvusStore(uri, "docs") as store, pytest.raises(SchemaMismatchError, match=wrong_dim):
        store.search(np.zeros(16, dtype=np.float32))


def test_collections_not_made_by_multiembed_are_refused(text_encoder, uri):
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    client.create_collection("foreign", dimension=4)
    client.close()
    with pytest.raises(SchemaMismatchError, match="not created by multiembed"):
        MilvusStore(uri, "foreign", text_encoder)


def test_search_with_a_vector(text_encoder, uri):
    with MilvusStore(uri, "docs", text_encoder) as store:
        store.add(DOCS)
        vector = text_encoder.encode_documents([DOCS[2]])[0]
        assert store.search(vector, limit=1)[0].source == "#2"
        assert store.search(vector, limit=5, filter='source in ["#0", "#1"]')[0].source in {"#0", "#1"}


def test_hybrid_search_fuses_dense_and_bm25(text_encoder, uri):
    with MilvusStore(uri, "hybrid", text_encoder, hybrid=True) as store:
        store.add(DOCS)
        bm25_only = store.search("bicycle", limit=2, hybrid=True, weights=(0.0, 1.0))
        assert bm25_only[0].source == "#1"  # the only document containing the word
        fused = store.search("bicycle", limit=3, hybrid=True)
        assert len(fused) == 3 and fused[0].score > fused[-1].score
    with (
        MilvusStore(uri, "plain", text_encoder) as plain,
        pytest.raises(BackendError, match="one vector field for this query, nothing to fuse"),
    ):
        plain.search("bicycle", hybrid=True)


def test_cross_modal_search_in_a_clip_collection(image_models, uri, tmp_path):
    photos = good_images(tmp_path / "photos")[:6]
    clip = multiembed.load("image-text", str(image_models["clip"]), device="cpu", workers=0)
    cosines = np.stack(clip.encode_documents(photos)) @ clip.encode_queries(["a red bicycle"])[0]
    best = np.argsort(-cosines)[:3]
    with MilvusStore(uri, "photos", modality="image-text", model=str(image_models["clip"]),
                     device="cpu", workers=0) as store:  # fmt: skip
        assert store.add(photos).added == len(photos)
        hits = store.search("a red bicycle", limit=3)  # a text query against images
        assert [hit.source for hit in hits] == [str(photos[i]) for i in best]
        np.testing.assert_allclose([hit.score for hit in hits], cosines[best], atol=1e-4)  # float32 in Milvus
        for photo in photos:  # query by example: each image finds itself
            assert store.search(str(photo), limit=1)[0].source == str(photo)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vector_type": "FLOAT16_VECTOR"}, "stores only FLOAT_VECTOR"),
        ({"vector_type": "BINARY_VECTOR"}, "stores only FLOAT_VECTOR"),
        ({"index_type": "DISKANN"}, "accepts DISKANN but never builds it"),
        ({"index_type": "IVF_PQ"}, "accepts IVF_PQ but never builds it"),
        ({"index_type": "SCANN"}, "accepts SCANN but never builds it"),
    ],
)
def test_lite_refuses_what_it_cannot_do(kwargs, message):
    with pytest.raises(BackendError, match=message):
        check_backend("./local.db", **kwargs)
    check_backend("http://milvus:19530", **kwargs)  # a server can


def test_store_refuses_unbuilt_index_on_lite(text_encoder, uri):
    with pytest.raises(BackendError, match="accepts DISKANN but never builds it"):
        MilvusStore(uri, "docs", text_encoder, index_type="DISKANN")


def test_a_second_process_gets_a_clear_error(text_encoder, uri):
    with MilvusStore(uri, "docs", text_encoder):
        code = (
            "import multiembed.milvus as m\n"
            f"try:\n    m.MilvusStore({uri!r}, 'docs')\n"
            "except m.BackendError as e:\n    print('REFUSED', e)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED" in done.stdout and "another process is using it" in done.stdout


def test_closing_a_store_frees_the_file_for_other_processes(text_encoder, uri):
    MilvusStore(uri, "docs", text_encoder).close()
    code = f"import multiembed.milvus as m\nprint('OPENED', m.list_collections({uri!r})[0].name)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "OPENED docs" in done.stdout, done.stderr[-1000:]
