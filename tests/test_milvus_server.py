"""A real Milvus server (the `milvus` package's 2.3.5): MilvusStore, the CLI, version gating, bulk import.

The server is started once per session (tests/milvus_server.py); each test uses its own collections.
The version rules themselves are checked without a server first.
"""

from __future__ import annotations

import uuid

import pytest

import multiembed
from multiembed import BackendError, SchemaMismatchError
from multiembed.cli import main
from multiembed.milvus import MilvusStore
from multiembed.milvus.versions import check_server, needed_features, parse_version, server_index_params
from multiembed.outputs import OutputSpec

DOCS = [
    "artificial intelligence was founded as an academic discipline in 1956",
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database for similarity search",
    "sentence embedding model",
]
V235 = ((2, 3, 5), "v2.3.5-lite")
slow = pytest.mark.slow  # each server test runs in seconds; the server itself starts in ~10


@pytest.fixture
def name() -> str:
    """A collection of this test's own on the shared server."""
    return f"t{uuid.uuid4().hex[:12]}"


def write_docs(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(texts):
        (folder / f"{number:03d}.txt").write_text(text)
    return folder


# ---- the rules, without a server ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reported", "version"),
    [
        ("v2.3.5-lite", (2, 3, 5)),
        ("v2.4.0-rc.1", (2, 4, 0)),
        ("2.5", (2, 5, 0)),
        ("Zilliz Cloud Vector Database(Compatible with Milvus 2.5)", (2, 5, 0)),
        ("unknown", None),
    ],
)
def test_server_versions_are_read_from_what_servers_report(reported, version):
    assert parse_version(reported) == version


def test_what_a_version_lacks_is_named_with_the_version_it_needs():
    dense = OutputSpec("dense", "dense", 8)
    sparse = OutputSpec("sparse", "sparse", 100, "IP")

    def refusal(features=(), index_type=None, server=V235) -> str:
        with pytest.raises(BackendError) as raised:
            check_server("http://milvus:19530", *server, features=features, index_type=index_type)
        return str(raised.value)

    check_server("http://milvus:19530", *V235, features=needed_features([dense], False), index_type="IVF_PQ")
    check_server("http://milvus:19530", *V235, index_type="SCANN")  # a 2.3 index
    assert refusal(needed_features([dense], True)) == (
        "the Milvus server at http://milvus:19530 is v2.3.5-lite; the built-in BM25 function (hybrid=True, "
        "--hybrid) needs Milvus 2.5.0 or newer (Milvus Lite, a local .db path, has it too)"
    )
    assert "a sparse vector field (SPARSE_FLOAT_VECTOR) needs Milvus 2.4.0" in refusal(
        needed_features([sparse], False)
    )
    two_dense = needed_features([dense, OutputSpec("b", "dense", 4)], False)
    assert "a second vector field in one collection needs Milvus 2.4.0" in refusal(two_dense)
    assert "the GPU_CAGRA index needs Milvus 2.4.0" in refusal(index_type="gpu_cagra")
    assert "multiembed needs Milvus 2.3.0 or newer" in refusal(server=((2, 2, 16), "v2.2.16"))
    check_server("http://milvus:19530", (2, 5, 4), "v2.5.4", features=needed_features([dense, sparse], True))
    check_server("http://milvus:19530", None, "a fork that names no version", features=["bm25"])


def test_server_index_parameters_fill_what_milvus_2_3_requires():
    assert server_index_params("HNSW", 32, None) == {"M": 30, "efConstruction": 360}
    assert server_index_params("ivf_flat", 32, {"nlist": 7}) == {"nlist": 7}
    for dim, m in [(32, 4), (384, 48), (17, 1), (4, 1)]:
        params = server_index_params("IVF_PQ", dim, None)
        assert params["m"] == m and dim % params["m"] == 0
    assert server_index_params("AUTOINDEX", 32, None) == {}


# ---- against the server ---------------------------------------------------------------------------------
@slow
def test_store_adds_searches_filters_and_reopens_on_a_server(milvus_server, tiny_models, name):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    with MilvusStore(milvus_server.uri, name, encoder) as store:
        report = store.add(DOCS)
        assert (report.added, report.skipped, report.failed) == (len(DOCS), 0, 0)
        assert store.count() == len(DOCS)  # counted at once, not when the server flushes
        for position, text in enumerate(DOCS):  # a search right after the add sees it (Strong reads)
            hits = store.search(text, limit=2)
            assert hits[0].source == f"#{position}" and hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].fields["text"] == text
        filtered = store.search(DOCS[2], limit=5, filter='source in ["#0", "#1"]')
        assert {hit.source for hit in filtered} == {"#0", "#1"}
        again = store.add([*DOCS, "one more document"])
        assert (again.added, again.skipped) == (1, len(DOCS)) and store.count() == len(DOCS) + 1
    with MilvusStore(milvus_server.uri, name) as reopened:  # the identity saved with the collection
        assert reopened.encoder.config() == encoder.config()
        assert reopened.search(DOCS[3], limit=1)[0].source == "#3"
    other = multiembed.load("text", str(tiny_models["max-dense"]), device="cpu")
    with pytest.raises(SchemaMismatchError, match="dim: collection has 32, encoder has 16"):
        MilvusStore(milvus_server.uri, name, other)


@slow
def test_cli_index_search_and_reindex_on_a_server(milvus_server, tiny_models, tmp_path, capsys, name):
    docs = write_docs(tmp_path / "docs", DOCS[:3])
    index = ["index", str(docs), "-c", name, "--uri", milvus_server.uri, "-q"]
    assert main([*index, "-m", "text", "--model", str(tiny_models["mean"])]) == 0
    assert "added 3, skipped 0 already stored, 0 failed" in capsys.readouterr().err
    assert main(index) == 0  # the collection's recorded model is used again
    assert "added 0, skipped 3 already stored, 0 failed" in capsys.readouterr().err

    assert main(["search", DOCS[1], "-c", name, "--uri", milvus_server.uri, "--limit", "1"]) == 0
    top = capsys.readouterr().out.splitlines()[1].split()
    assert top[2].endswith("001.txt") and float(top[1]) == pytest.approx(1.0, abs=1e-4)
    prefix = f'source like "{docs / "000"}%"'  # Milvus 2.3 matches prefixes only
    query = ["search", DOCS[1], "-c", name, "--uri", milvus_server.uri, "--filter", prefix]
    assert main(query) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[2].endswith("000.txt")

    assert main(["collections", "--uri", milvus_server.uri]) == 0
    assert any(line.split()[:2] == [name, "3"] for line in capsys.readouterr().out.splitlines())


@slow
def test_index_types_milvus_lite_refuses_are_built_by_a_server(
    milvus_server, tiny_models, tmp_path, capsys, name
):
    docs = write_docs(tmp_path / "docs", DOCS)
    model = str(tiny_models["mean"])
    lite = ["index", str(docs), "-m", "text", "--model", model, "-c", "pq", "--index-type", "IVF_PQ", "-q"]
    assert main([*lite, "--uri", str(tmp_path / "lite.db")]) == 2
    assert "accepts IVF_PQ but never builds it" in capsys.readouterr().err
    server = ["index", str(docs), "-m", "text", "--model", model, "-c", name, "--uri", milvus_server.uri]
    assert main([*server, "--index-type", "IVF_FLAT", "--index-param", "nlist=0", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nlist out of range" in err[0]  # the server's refusal, in one line...
    assert main(["collections", "--uri", milvus_server.uri]) == 0
    assert name not in capsys.readouterr().out  # ...and no collection left without an index
    assert main([*server, "--index-type", "IVF_PQ", "-q"]) == 0  # nlist and m filled in for 2.3
    capsys.readouterr()
    assert main(["collections", "show", name, "--uri", milvus_server.uri]) == 0
    assert "IVF_PQ" in capsys.readouterr().out
    with MilvusStore(milvus_server.uri, name) as store:
        assert store.search(DOCS[4], limit=1)[0].source.endswith("004.txt")


@slow
def test_what_the_server_version_lacks_is_refused_in_one_line_before_anything_is_made(
    milvus_server, tiny_models, tmp_path, capsys, name
):
    from multiembed.model.sparse import BM25EmbeddingFunction, build_default_analyzer

    assert milvus_server.version.startswith("v2.3")
    docs = write_docs(tmp_path / "docs", DOCS)
    hybrid = ["index", str(docs), "-m", "text", "--model", str(tiny_models["mean"]), "--hybrid"]
    assert main([*hybrid, "-c", name, "--uri", milvus_server.uri, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"multiembed: error: the Milvus server at {milvus_server.uri} is {milvus_server.version}; the "
        "built-in BM25 function (hybrid=True, --hybrid) needs Milvus 2.5.0 or newer (Milvus Lite, a "
        "local .db path, has it too)"
    ]

    params = tmp_path / "bm25.json"
    function = BM25EmbeddingFunction(build_default_analyzer("en"))
    function.fit(DOCS)
    function.save(params)
    with pytest.raises(
        BackendError, match=r"^the Milvus server at .* is v2\.3\.5-lite; a sparse vector field"
    ):
        MilvusStore(milvus_server.uri, name, modality="bm25", model=str(params), device="cpu")
    lexical = [
        "index",
        str(docs),
        "-m",
        "bm25",
        "--model",
        str(params),
        "-c",
        name,
        "--uri",
        milvus_server.uri,
    ]
    assert main(lexical) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Milvus 2.4.0 or newer" in err[0] and "Traceback" not in err[0]

    from pymilvus import MilvusClient

    client = MilvusClient(milvus_server.uri)
    assert not client.has_collection(name)  # refused before anything was made
    client.close()


@slow
def test_bulk_files_import_into_the_server_and_are_searched(
    milvus_server, tiny_models, tmp_path, capsys, name
):
    docs = write_docs(tmp_path / "docs", [*DOCS, DOCS[0]])  # a repeated document is written once
    exported = tmp_path / "bulk"
    export = [
        "export-bulk",
        str(docs),
        "-m",
        "text",
        "--model",
        str(tiny_models["mean"]),
        "-o",
        str(exported),
    ]
    assert main([*export, "-q"]) == 0
    assert f"wrote {len(DOCS)} rows in 1 files, skipped 1 repeated" in capsys.readouterr().err

    load = ["import-bulk", str(exported), "--uri", milvus_server.uri, "-c", name]
    assert main(load) == 0
    assert f"imported {len(DOCS)} rows" in capsys.readouterr().err
    assert main(load) == 0  # its files are recorded in the collection: nothing is imported twice
    assert "imported 0 rows" in capsys.readouterr().err

    with MilvusStore(milvus_server.uri, name) as store:  # made from the export's recorded identity
        assert store.count() == len(DOCS)
        hit = store.search(DOCS[1], limit=1)[0]
        assert hit.source.endswith("001.txt") and hit.fields["text"] == DOCS[1]
        assert hit.score == pytest.approx(1.0, abs=1e-4)
        report = store.add([DOCS[2], "a new document"])  # the same content keys as an upsert run's
        assert (report.added, report.skipped) == (1, 1)
