"""The saved encoder identity: what config() records, and collections that reopen with it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import multiembed
from multiembed import SchemaMismatchError
from multiembed.identity import mismatches
from multiembed.milvus import MilvusStore
from multiembed.output import write_embeddings
from tests.media_files import write_video

DOCS = ["a red bicycle leans against a brick wall", "the quick brown fox", "milvus vector database"]


def test_text_config_records_everything_that_changes_the_vectors(tiny_models):
    encoder = multiembed.load("text", str(tiny_models["cls-prompt"]), device="cpu", max_seq_length=16)
    config = encoder.config()
    assert json.loads(json.dumps(config)) == config  # JSON-able as is
    assert config["modality"] == "text" and config["model"] == str(tiny_models["cls-prompt"])
    assert config["outputs"] == [{"name": "dense", "kind": "dense", "dim": 32, "metric": "COSINE"}]
    assert config["options"] == {
        "normalize": True,
        "max_seq_length": 16,
        "query_instruction": "query: ",  # the model's own prompt, recorded explicitly
        "document_instruction": None,
    }
    assert config["details"]["pooling"] == "cls" and config["dtype"] == "float32"
    assert len(config["weights"]) == 32
    other = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    assert other.config()["weights"] != config["weights"]


def test_parquet_files_say_how_their_vectors_were_made(tiny_models, tmp_path):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu", query_instruction="q: ")
    path = write_embeddings(encoder.encode(DOCS), tmp_path / "docs.parquet")
    recorded = json.loads(pq.read_schema(path).metadata[b"multiembed.config"])
    assert recorded == encoder.config() and recorded["options"]["query_instruction"] == "q: "
    rebuilt = multiembed.load(recorded["modality"], recorded["model"], **recorded["options"])
    assert mismatches(recorded, rebuilt.config()) == []


def test_a_collection_reopens_with_its_non_default_options(tiny_models, tmp_path):
    uri = str(tmp_path / "docs.db")
    model = str(tiny_models["mean"])
    with MilvusStore(
        uri, "docs", modality="text", model=model, device="cpu", query_instruction="find: "
    ) as store:
        store.add(DOCS)
        expected = store.query_vector("bicycle")
    with MilvusStore(uri, "docs", device="cpu") as reopened:  # no options given: the recorded ones apply
        assert reopened.encoder.prompts["query"] == "find: "
        np.testing.assert_allclose(reopened.query_vector("bicycle"), expected, atol=1e-6)
        default = multiembed.load("text", model, device="cpu").encode_queries(["bicycle"])[0]
        assert np.abs(default - expected).max() > 1e-3  # the instruction really changes the query
    with pytest.raises(
        SchemaMismatchError, match="query_instruction: collection has 'find: ', encoder has 'other: '"
    ):
        MilvusStore(uri, "docs", device="cpu", query_instruction="other: ")
    with pytest.raises(SchemaMismatchError, match="max_seq_length: collection has 64, encoder has 8"):
        MilvusStore(uri, "docs", device="cpu", max_seq_length=8)


def test_a_video_collection_keeps_its_frame_count(image_models, tmp_path):
    videos = [
        write_video(tmp_path / f"{name}.mp4", count, pattern=True) for name, count in (("a", 12), ("b", 7))
    ]
    uri = str(tmp_path / "videos.db")
    clip = str(image_models["clip"])
    with MilvusStore(uri, "clips", modality="video", model=clip, device="cpu", frames=4, workers=0) as store:
        assert store.add(videos).added == 2
    with MilvusStore(uri, "clips", device="cpu", workers=0) as reopened:
        assert reopened.info.config["options"] == {"frames": 4}
        assert reopened.encoder.config()["options"] == {"frames": 4}
        assert reopened.search(videos[1], limit=1)[0].source == str(videos[1])
    with pytest.raises(SchemaMismatchError, match="frames: collection has 4, encoder has 8"):
        MilvusStore(uri, "clips", device="cpu", frames=8)


def test_moved_weights_are_the_same_model(tiny_models, tmp_path):
    """The model path is recorded, but the weights fingerprint identifies them after a move."""
    uri = str(tmp_path / "docs.db")
    with MilvusStore(uri, "docs", modality="text", model=str(tiny_models["mean"]), device="cpu") as store:
        store.add(DOCS)
    moved = shutil.copytree(tiny_models["mean"], tmp_path / "moved-model")
    with MilvusStore(uri, "docs", model=str(moved), device="cpu") as reopened:
        assert reopened.search(DOCS[2], limit=1)[0].source == "#2"
    with pytest.raises(SchemaMismatchError, match="weights: collection has"):
        MilvusStore(uri, "docs", model=str(tiny_models["max-dense"]), device="cpu")


def test_collections_recorded_before_identities_still_open(tiny_models, tmp_path):
    """Version 1 recorded modality, model, dim and metric only; those are still checked."""
    from pymilvus import MilvusClient

    from multiembed.milvus import index_params_for, schema_for

    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    uri = str(tmp_path / "old.db")
    client = MilvusClient(uri)
    legacy = {"modality": "text", "model": encoder.model_id, "dim": 32, "metric": "COSINE", "hybrid": False}
    client.create_collection(
        "old",
        schema=schema_for(encoder),
        index_params=index_params_for(encoder),
        properties={"multiembed": json.dumps(legacy)},
    )
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(tmp_path / "old.db"))
    with MilvusStore(uri, "old", device="cpu") as store:
        assert store.add(DOCS).added == 3 and store.info.dim == 32
    other = multiembed.load("text", str(tiny_models["max-dense"]), device="cpu")
    with pytest.raises(SchemaMismatchError, match="dim: collection has 32, encoder has 16"):
        MilvusStore(uri, "old", other)


def test_details_only_one_side_records_are_not_differences():
    """A library upgrade that records one more processor setting must not lock a collection."""
    recorded = {"model": "m", "options": {"frames": 4}, "details": {"pooling": "mean", "size": 224}}
    newer = {
        "model": "m",
        "options": {"frames": 4},
        "details": {"pooling": "mean", "size": 224, "crop_pct": 1},
    }
    assert mismatches(recorded, newer) == []
    changed = {"model": "m", "options": {"frames": 4}, "details": {"pooling": "mean", "size": 256}}
    assert mismatches(recorded, changed) == ["size: collection has 224, encoder has 256"]
    fewer_options = {"model": "m", "options": {}, "details": {"pooling": "mean"}}
    assert mismatches(recorded, fewer_options) == ["frames: collection has 4, encoder has None"]
