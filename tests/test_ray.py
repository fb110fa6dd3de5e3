"""The Ray engine on a real local Ray cluster: same vectors as in-process, bad items reported, the
Milvus sink (Milvus Lite, one writer; a Milvus server), and ``--engine ray`` on the command line.

One small cluster (2 CPUs) serves the whole module. Each Ray job starts actors that import the
model libraries (seconds), so each dataset is embedded once and reused by the tests that read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

import multiembed
from multiembed.cli import main
from multiembed.embeddings import Embeddings, ItemError
from multiembed.identity import mismatches
from multiembed.milvus import MilvusStore
from multiembed.outputs import OutputSpec
from tests import conftest
from tests.image_files import bad_images, good_images
from tests.test_text import TO_UTF8

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'multiembed[ray]'")

from multiembed.ray import MilvusSink, embed_dataset  # noqa: E402
from multiembed.ray.embed import FAILED_COLUMN, Layout, leave_out_stored, read_items  # noqa: E402
from multiembed.ray.keys import StoredKeys  # noqa: E402
from multiembed.ray.local import init_local  # noqa: E402
from multiembed.ray.tables import STORED_COLUMN, Stored, to_embeddings, to_table  # noqa: E402

BAD_TEXTS = ["", "   "]


#: ``ray.init`` options of the tests' local clusters: 2 CPUs, a small object store, no dashboard
LOCAL_CLUSTER = {
    "num_cpus": 2,
    "include_dashboard": False,
    "object_store_memory": 128 * 1024 * 1024,
    "log_to_driver": False,
    "configure_logging": False,
}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module."""
    init_local(**LOCAL_CLUSTER)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def minilm(minilm_dir) -> str:
    return str(minilm_dir)


@pytest.fixture(scope="module")
def text_items(texts) -> list[str]:
    """Texts, two that fail (empty, blank) and one repeated."""
    return [*texts[:4], *BAD_TEXTS, *texts[4:], texts[1]]


@pytest.fixture(scope="module")
def text_rows(cluster, minilm, text_items):
    """The texts embedded once by a Ray job (in-actor decoding), materialized for every test to read."""
    ds = ray.data.from_items([{"text": text, "source": f"#{n}"} for n, text in enumerate(text_items)])
    return embed_dataset(ds, "text", minilm, concurrency=1, batch_size=4, device="cpu").materialize()


def by_source(rows: list[dict]) -> dict[str, dict]:
    return {row["source"]: row for row in rows}


# ---- no cluster needed -----------------------------------------------------------------------------
def test_rows_keep_failures_in_input_order_and_read_back_as_embeddings():
    dense, sparse = OutputSpec("dense", "dense", 3), OutputSpec("lexical", "sparse", 10, "IP")
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    weights = sp.csr_matrix(np.array([[0, 1.5, 0, 0, 0, 0, 0, 0, 0, 2.0], [0.5] + [0] * 9], np.float32))
    part = Embeddings(
        {"dense": vectors, "lexical": weights},
        (dense, sparse),
        ids=["k0", "k2"],
        sources=["a", "c"],
        indices=[0, 2],
        errors=[ItemError(1, "b", "empty text")],
        modality="text",
        model="m",
    )
    table = to_table(part)
    assert table.column_names == ["id", "source", "modality", "model", "vector", "lexical_vector", "error"]
    assert table.column("source").to_pylist() == ["a", "b", "c"]
    assert table.column("error").to_pylist() == [None, "empty text", None]
    assert table.column("vector").to_pylist()[1] is None and table.column("id").to_pylist()[1] is None
    assert json.loads(table.column("lexical_vector").to_pylist()[0]) == {"1": 1.5, "9": 2.0}

    back = to_embeddings(table, part.specs, {"modality": "text", "model": "m"}, start=10)
    assert back.ids == ["k0", "k2"] and back.indices == [10, 12] and back.sources == ["a", "c"]
    assert back.errors == [ItemError(11, "b", "empty text")]
    np.testing.assert_array_equal(back.vectors, vectors)
    assert (back["lexical"] != weights).nnz == 0


def test_stored_keys_are_found_by_binary_search_and_their_items_become_skipped_rows():
    keys = StoredKeys(["b" * 64, "a" * 64, "b" * 64])
    assert len(keys) == 2 and not StoredKeys([]).known(["a" * 64])
    assert keys.known(["a" * 64, "c" * 64, "a" * 63, "a" * 65, "b" * 64]) == {"a" * 64, "b" * 64}

    from multiembed.sources import Item, Loaded

    window = [
        (0, Item("x", "one"), Loaded("one", "a" * 64)),
        (1, Item("y", "two"), "empty text"),
        (2, Item("z", "three"), Loaded("three", "c" * 64)),
    ]
    kept, left = leave_out_stored(window, keys)
    assert kept == window[1:] and left == [Stored(0, "x", "a" * 64)]

    spec = OutputSpec("dense", "dense", 2)
    part = Embeddings(
        {"dense": np.ones((1, 2), np.float32)},
        (spec,),
        ids=["c" * 64],
        sources=["z"],
        indices=[2],
        errors=[ItemError(1, "y", "empty text")],
        modality="text",
        model="m",
    )
    table = to_table(part, keep_text=False, stored=left)
    assert table.column("source").to_pylist() == ["x", "y", "z"]  # in input order
    assert table.column("id").to_pylist() == ["a" * 64, None, "c" * 64]
    assert table.column(STORED_COLUMN).to_pylist() == [True, False, False]
    assert table.column("error").to_pylist() == [None, "empty text", None]
    assert table.column("vector").to_pylist()[0] is None
    assert STORED_COLUMN not in to_table(part).column_names  # only in jobs given stored keys

    from multiembed.ray.sink import WriteCounts, _not_stored

    counts = WriteCounts()
    rest = _not_stored(table, counts)
    assert counts.skipped == 1 and rest.column("source").to_pylist() == ["y", "z"]
    assert STORED_COLUMN not in rest.column_names


def test_items_are_named_by_a_source_column_or_a_preview_and_earlier_failures_kept():
    batch = pa.table({"text": ["a red bicycle", None], FAILED_COLUMN: [None, "line too long"]})
    items = read_items(batch, Layout("text"))
    assert [(item.source, item.value, reason) for item, reason in items] == [
        ("'a red bicycle'", "a red bicycle", None),
        ("None", None, "line too long"),
    ]
    files = pa.table({"name": ["x"], "text": [None], "file": ["/data/x.jpg"]})
    [(item, _)] = read_items(files, Layout("text", "name", "file"))
    assert item.source == "x" and item.value == Path("/data/x.jpg")


def test_cli_items_go_as_text_or_paths_and_the_rest_is_refused_with_the_loaders_reason(tiny_models):
    from multiembed.cli.ray_engine import _block
    from multiembed.sources import Item, LineTooLong

    load = multiembed.load("text", str(tiny_models["mean"]), device="cpu").loader("document")
    items = [
        Item("a:1", "a red bicycle"),
        Item("a:2", b"bad \xff byte"),
        Item("a:3", LineTooLong(70_000_000)),
        Item("b.txt", Path("b.txt")),
    ]
    block = _block(items, load)
    assert block.column("source").to_pylist() == ["a:1", "a:2", "a:3", "b.txt"]
    assert block.column("text").to_pylist() == ["a red bicycle", None, None, None]
    assert block.column("file").to_pylist() == [None, None, None, "b.txt"]
    failed = block.column(FAILED_COLUMN).to_pylist()
    assert failed[0] is None and failed[3] is None
    assert failed[1] == f"not valid UTF-8 text (byte 4); {TO_UTF8}" and failed[2].startswith(
        "line too long: 70,000,000 bytes"
    )
    layout = Layout("text", "source", "file")
    assert [item.value for item, _ in read_items(block, layout)] == [
        "a red bicycle",
        None,
        None,
        Path("b.txt"),
    ]


def test_an_error_raised_in_a_ray_task_is_reported_as_itself_without_rays_retry_advice():
    from multiembed.cli.ray_engine import _multiembed_cause
    from multiembed.errors import BackendError

    original = BackendError("device 'cuda' requested but CUDA is not available\nFailed to apply UDF ...")
    wrapper = RuntimeError("task failed")
    wrapper.__cause__ = original
    assert _multiembed_cause(wrapper) is original
    assert str(original) == "device 'cuda' requested but CUDA is not available"
    assert _multiembed_cause(RuntimeError("a bug of ours")) is None


def test_engine_flags_parse_and_default_to_in_process():
    from multiembed.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(["encode", "-m", "text", "x.txt"])
    assert (args.engine, args.ray_address) == ("local", None)
    args = parser.parse_args(["index", "x", "-m", "text", "--engine", "ray", "--ray-address", "auto"])
    assert (args.engine, args.ray_address) == ("ray", "auto")


# ---- on the cluster ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_text_vectors_equal_in_process_and_bad_items_are_rows_with_reasons(text_rows, minilm, text_items):
    reference = multiembed.load("text", minilm, device="cpu").encode(text_items)
    rows = by_source(text_rows.take_all())
    assert len(rows) == len(text_items)
    assert {"id", "source", "modality", "model", "vector", "text", "error"} <= set(text_rows.columns())
    for index, key, vector in zip(reference.indices, reference.ids, reference.vectors, strict=True):
        row = rows[f"#{index}"]
        assert row["id"] == key and row["error"] is None and row["text"] == text_items[index]
        np.testing.assert_allclose(np.asarray(row["vector"]), vector, rtol=0, atol=1e-6)
    failed = {f"#{error.index}": error.reason for error in reference.errors}
    assert failed == {"#4": "empty text", "#5": "empty text"}
    for source, reason in failed.items():
        assert (
            rows[source]["error"] == reason and rows[source]["vector"] is None and rows[source]["id"] is None
        )


@pytest.mark.slow
def test_sink_writes_milvus_lite_from_one_writer_and_the_store_reopens_it(text_rows, minilm, tmp_path):
    uri = str(tmp_path / "ray.db")
    sink = MilvusSink(uri, "docs", modality="text", model=minilm, rows_per_write=3)
    assert sink.write_concurrency == 1 and not sink.supports_distributed_writes
    text_rows.write_datasink(sink, concurrency=sink.write_concurrency)
    assert (sink.report.added, sink.report.skipped, sink.rows) == (7, 1, 7)  # the repeated text once
    assert sorted(error.reason for error in sink.report.errors) == ["empty text", "empty text"]

    # More writers than one: the tasks take turns on the file instead of failing.
    again = MilvusSink(uri, "docs", modality="text", model=minilm, rows_per_write=2)
    text_rows.repartition(4).write_datasink(again, concurrency=2)
    assert again.write_tasks >= 2 and (again.report.added, again.report.skipped, again.rows) == (0, 8, 7)

    with MilvusStore(uri, "docs") as store:  # no encoder given: rebuilt from the recorded identity
        assert store.count() == 7 and store.info.keeps_text
        ids = {row["id"] for row in store.client.query("docs", filter="", output_fields=["id"], limit=100)}
        assert ids == {row["id"] for row in text_rows.take_all() if row["id"]}
        assert again.stored_keys().known([*ids, "f" * 64]) == ids  # what a re-run leaves out
        assert mismatches(store.info.config, store.encoder.config()) == []
        [hit] = store.search(conftest.TEXTS[2], limit=1)
        assert hit.source == "#2" and hit.fields["text"] == conftest.TEXTS[2]
        assert hit.score == pytest.approx(1.0, abs=1e-5)

    other = text_rows.map_batches(
        lambda table: table.set_column(3, "model", pa.array(["other"] * table.num_rows)),
        batch_format="pyarrow",
    )
    with pytest.raises(Exception, match=r"holds .* vectors; these rows were made with 'other'"):
        other.write_datasink(MilvusSink(uri, "docs"), concurrency=1)


@pytest.mark.slow
def test_image_vectors_equal_in_process_with_decoding_in_a_separate_stage(cluster, image_models, tmp_path):
    folder = tmp_path / "photos"
    paths = [*good_images(folder), *bad_images(folder)]
    model = str(image_models["hf"])
    reference = multiembed.load("image", model, device="cpu").encode(paths)
    files = ray.data.read_binary_files([str(path) for path in paths], include_paths=True)
    rows = embed_dataset(files, "image", model, concurrency=1, device="cpu", separate_decode=True).take_all()
    assert len(rows) == len(paths)
    names = {Path(row["source"]).name: row for row in rows}  # named by read_binary_files' path column
    for index, key, vector in zip(reference.indices, reference.ids, reference.vectors, strict=True):
        row = names[paths[index].name]
        assert row["id"] == key and row["error"] is None
        np.testing.assert_allclose(np.asarray(row["vector"]), vector, rtol=0, atol=1e-6)
    failed = {Path(error.source).name: error.reason for error in reference.errors}
    assert len(failed) == 6 and {name: names[name]["error"] for name in failed} == failed


@pytest.mark.slow
def test_cli_encode_with_ray_writes_what_the_in_process_engine_writes(
    cluster, image_models, tmp_path, capsys
):
    folder = tmp_path / "photos"
    good_images(folder)
    bad = bad_images(folder)
    outputs, failures = {}, {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / f"{engine}.parquet"
        argv = ["encode", "-m", "image", "--model", str(image_models["hf"]), str(folder), "-q"]
        assert main([*argv, "-o", str(outputs[engine]), "--engine", engine, "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        failures[engine] = [line for line in err.splitlines() if line.startswith("failed: ")]
        assert "embedded 12 of 18 items, 6 failed" in err
    assert failures["ray"] == failures["local"] and len(failures["ray"]) == len(bad)
    assert f"failed: {folder / 'bad_empty.jpg'}: empty file (0 bytes)" in failures["ray"]
    local, remote = (pq.read_table(outputs[engine]) for engine in ("local", "ray"))
    assert remote.schema == local.schema and remote.schema.metadata == local.schema.metadata
    for column in ("id", "source", "modality", "model"):
        assert remote.column(column).to_pylist() == local.column(column).to_pylist()  # in input order
    np.testing.assert_allclose(
        np.array(remote.column("vector").to_pylist()),
        np.array(local.column("vector").to_pylist()),
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.slow
def test_cli_index_with_ray_stores_what_the_in_process_engine_stores(cluster, image_models, tmp_path, capsys):
    folder = tmp_path / "photos"
    good_images(folder)
    bad = bad_images(folder)
    model = str(image_models["hf"])
    reports = {}
    for engine in ("local", "ray"):
        uri = str(tmp_path / f"{engine}.db")
        argv = ["index", str(folder), "-m", "image", "--model", model, "--uri", uri, "-c", "photos", "-q"]
        assert main([*argv, "--engine", engine, "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        reports[engine] = {line for line in err.splitlines() if line.startswith("failed: ")}
        assert "added 12, skipped 0 already stored, 6 failed" in err and "(12 rows)" in err
    assert reports["ray"] == reports["local"] and len(reports["ray"]) == len(bad)
    with MilvusStore(str(tmp_path / "ray.db"), "photos") as store:
        query = folder / "b.png"
        [hit] = store.search(query, limit=1)
        assert hit.source == str(query) and hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_sink_writes_a_milvus_server_from_several_tasks(text_rows, minilm, milvus_server):
    sink = MilvusSink(milvus_server.uri, "ray_docs", modality="text", model=minilm, rows_per_write=3)
    assert sink.write_concurrency is None and sink.supports_distributed_writes
    # "#9" repeats "#1": parallel tasks may both count it as added (the Lite tests cover repeats)
    rows = text_rows.filter(lambda row: row["source"] != "#9")
    rows.write_datasink(sink, concurrency=sink.write_concurrency)
    assert (sink.report.added, sink.report.skipped, sink.report.failed, sink.rows) == (7, 0, 2, 7)
    keys = {row["id"] for row in text_rows.take_all() if row["id"]}
    assert len(keys) == 7 and sink.stored_keys().known([*keys, "f" * 64]) == keys
    with MilvusStore(milvus_server.uri, "ray_docs") as store:
        try:
            assert store.count() == 7
            [hit] = store.search(conftest.TEXTS[2], limit=1)
            assert hit.source == "#2" and hit.fields["text"] == conftest.TEXTS[2]
        finally:
            store.drop()


@pytest.mark.slow
def test_cli_index_with_ray_builds_the_index_it_is_given(tiny_models, milvus_server, tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("a red bicycle\n")
    argv = ["index", str(docs), "-m", "text", "--model", str(tiny_models["mean"]), "-c", "ray_params",
            "--uri", milvus_server.uri, "--engine", "ray", "--index-type", "IVF_FLAT",
            "--index-param", "nlist=0", "-q"]  # fmt: skip
    assert main(argv) == 2  # the server refuses nlist=0 before any Ray work: the parameter reached it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nlist out of range" in err[0]
