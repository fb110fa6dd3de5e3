"""Fast CPU modes: OpenVINO float32/bfloat16/int8, the quality gate, the export cache, auto, the CPU policy.

Tiny models are built here (random weights, saved as users' models are); every export goes to a
temporary MULTIEMBED_CACHE or next to a temporary model, never to the user's cache.
"""

from __future__ import annotations

import json
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import multiembed
from multiembed import BackendError, SchemaMismatchError
from multiembed.cli import main
from multiembed.cpu import cpu_features
from multiembed.device import DevicePolicy
from multiembed.fast import MIN_COSINE, LowQualityWarning
from multiembed.fast.cache import MANIFEST
from multiembed.fast.quality import compare, top_k_agreement
from multiembed.identity import load_arguments, mismatches
from multiembed.milvus import MilvusStore
from tests.tiny_models import tiny_sentence_transformer

pytest.importorskip("openvino")
pytest.importorskip("nncf")

TEXTS = [
    "artificial intelligence was founded as an academic discipline in 1956",
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database for similarity search",
    "dog",
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """Each test has its own per-user cache; CPU features are re-read (some tests override them)."""
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("MULTIEMBED_CACHE", str(cache))
    cpu_features.cache_clear()
    yield cache
    cpu_features.cache_clear()


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A tiny sentence-transformers model (mean pooling + Dense head) in a directory of its own."""
    return tiny_sentence_transformer(tmp_path / "models", "tiny", pooling="mean", dense=16)


def _entry(encoder: multiembed.Encoder) -> Path:
    assert encoder.fast_report is not None
    return Path(encoder.fast_report["cache"])


def test_openvino_float32_equals_torch(tiny):
    exact = multiembed.load("text", tiny, device="cpu")
    fast = multiembed.load("text", tiny, device="cpu", backend="openvino")
    for role in ("document", "query"):
        reference = exact.encode(TEXTS, role=role, progress=False).vectors
        vectors = fast.encode(TEXTS, role=role, progress=False).vectors
        assert vectors.dtype == np.float32 and vectors.shape == reference.shape == (len(TEXTS), 16)
        np.testing.assert_allclose(vectors, reference, atol=1e-5)  # measured: ~2e-7
    assert fast.fast_report["quality"]["min_cosine"] > 0.99999
    assert str(fast.policy) == "cpu openvino float32"


def test_image_backbone_runs_in_openvino(tmp_path):
    from multiembed.fast.corpus import sample_images
    from tests.tiny_models import tiny_hf_resnet_dir

    backbone = tiny_hf_resnet_dir(tmp_path)
    exact = multiembed.load("image", backbone, device="cpu", workers=0)
    fast = multiembed.load("image", backbone, device="cpu", backend="openvino", workers=0)
    images = sample_images(4, seed=3)
    reference = exact.encode(images, progress=False).vectors
    np.testing.assert_allclose(fast.encode(images, progress=False).vectors, reference, atol=1e-5)  # ~1e-7
    assert fast.config()["backend"] == "openvino" and fast.fast_report["quality"]["items"] == 48


def test_config_records_backend_and_dtype_and_identities_differ(tiny):
    exact = multiembed.load("text", tiny, device="cpu")
    fast = multiembed.load("text", tiny, device="cpu", backend="openvino", dtype="int8")
    assert (exact.config()["backend"], exact.config()["dtype"]) == ("torch", "float32")
    assert (fast.config()["backend"], fast.config()["dtype"]) == ("openvino", "int8")
    assert mismatches(fast.config(), exact.config()) == [
        "dtype: collection has 'int8', encoder has 'float32'",
        "backend: collection has 'openvino', encoder has 'torch'",
    ]
    modality, model, options = load_arguments(fast.config())
    assert (modality, model) == ("text", str(tiny))
    assert (options["backend"], options["dtype"]) == ("openvino", "int8")
    assert "backend" not in load_arguments(exact.config())[2]


def test_int8_and_bfloat16_pass_through_the_gate(tiny):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = multiembed.load("text", tiny, device="cpu", backend="openvino", dtype="int8")
    quality = fast.fast_report["quality"]
    assert set(quality) >= {"min_cosine", "mean_cosine", "top10_agreement", "items", "queries", "passed"}
    assert 0 < quality["min_cosine"] <= quality["mean_cosine"] <= 1.0 + 1e-9
    assert 0 <= quality["top10_agreement"] <= 1 and quality["queries"] > 0 and quality["items"] >= 100
    assert quality["passed"] == (quality["min_cosine"] >= MIN_COSINE)
    low = [w for w in caught if issubclass(w.category, LowQualityWarning)]
    assert bool(low) == (not quality["passed"])  # an explicit request below the gate runs, with a warning
    saved = json.loads((_entry(fast) / "gate-int8.json").read_text())
    assert saved["quality"] == quality and saved["cpu"] == cpu_features().describe()
    if cpu_features().bf16:
        bf16 = multiembed.load("text", tiny, device="cpu", backend="openvino", dtype="bfloat16")
        assert bf16.fast_report["quality"]["min_cosine"] > 0.999
        assert (_entry(bf16) / "gate-bfloat16.json").is_file()


def test_export_is_written_once_and_reused(tiny, own_cache):
    first = multiembed.load("text", tiny, device="cpu", backend="openvino")
    entry = _entry(first)
    assert entry.parent == tiny / "openvino" and first.fast_report["reused"] is False
    assert not own_cache.exists()  # the model folder was writable: nothing in the per-user cache
    written = {path.name: path.stat().st_mtime_ns for path in entry.iterdir()}
    second = multiembed.load("text", tiny, device="cpu", backend="openvino")
    assert _entry(second) == entry and second.fast_report["reused"] is True
    assert {path.name: path.stat().st_mtime_ns for path in entry.iterdir()} == written
    assert sorted(path.name for path in entry.parent.iterdir()) == [entry.name]  # no temporary leftovers
    assert multiembed.load("text", tiny, device="cpu").weights == first.weights  # exports aren't weights


def test_read_only_model_folder_exports_into_multiembed_cache(tiny, own_cache):
    modes = {path: path.stat().st_mode for path in [tiny, *tiny.rglob("*")] if path.is_dir()}
    for path in modes:
        path.chmod(stat.S_IREAD | stat.S_IEXEC)
    try:
        fast = multiembed.load("text", tiny, device="cpu", backend="openvino")
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert _entry(fast).parent == own_cache / "openvino"
    assert (_entry(fast) / MANIFEST).is_file() and not (tiny / "openvino").exists()


def test_changed_weights_get_a_new_export(tiny):
    from safetensors.torch import load_file, save_file

    before = _entry(multiembed.load("text", tiny, device="cpu", backend="openvino"))
    weights = tiny / "model.safetensors"
    state = load_file(str(weights))
    name = next(key for key in state if key.endswith("word_embeddings.weight"))
    state[name] = state[name] + 0.01
    save_file(state, str(weights), metadata={"format": "pt"})
    after = _entry(multiembed.load("text", tiny, device="cpu", backend="openvino"))
    assert after != before and after.parent == before.parent


def test_collection_made_with_openvino_reopens_with_it_and_refuses_torch(tiny, tmp_path):
    uri = str(tmp_path / "fast.db")
    fast = multiembed.load("text", tiny, device="cpu", backend="openvino")
    with MilvusStore(uri, "docs", fast) as store:
        store.add(TEXTS)
    with MilvusStore(uri, "docs") as store:
        assert (store.encoder.config()["backend"], store.encoder.config()["dtype"]) == ("openvino", "float32")
        assert store.encoder.fast_report["reused"] is True
        assert store.search(TEXTS[1], limit=1)[0].source == "#1"
    exact = multiembed.load("text", tiny, device="cpu")
    with pytest.raises(SchemaMismatchError, match="backend: collection has 'openvino', encoder has 'torch'"):
        MilvusStore(uri, "docs", exact)


def test_bfloat16_is_refused_on_a_cpu_without_it(tiny, monkeypatch):
    monkeypatch.setenv("MULTIEMBED_CPU_FEATURES", "avx2,fma")
    cpu_features.cache_clear()
    with pytest.raises(BackendError, match=r"no AVX512-BF16 or AMX .*avx2 fma.*backend='openvino'"):
        multiembed.load("text", tiny, device="cpu", dtype="bfloat16")
    with pytest.raises(BackendError, match="no AVX512-BF16 or AMX"):
        DevicePolicy.resolve("cpu", "bfloat16", "openvino")
    with pytest.raises(BackendError, match="needs backend='openvino'"):
        DevicePolicy.resolve("cpu", "int8")
    assert DevicePolicy.resolve("cpu", "int8", "openvino").precision == "int8"


def test_auto_picks_a_mode_that_passes_the_gate_and_remembers_it(tiny, monkeypatch):
    monkeypatch.setenv("MULTIEMBED_CPU_FEATURES", "avx2,fma")  # an AVX2-only machine: no bfloat16 tried
    cpu_features.cache_clear()
    encoder = multiembed.load("text", tiny, device="cpu", backend="auto")
    report = encoder.fast_report
    measured = {(row["backend"], row["dtype"]): row for row in report["measured"]}
    assert set(measured) == {("torch", "float32"), ("openvino", "float32"), ("openvino", "int8")}
    chosen = (encoder.config()["backend"], encoder.config()["dtype"])
    assert report["chosen_by"] == "auto" and measured[chosen]["passed"]
    fastest = max((row for row in measured.values() if row["passed"]), key=lambda row: row["items_per_s"])
    assert chosen == (fastest["backend"], fastest["dtype"])
    decision = Path(report["decision"])
    stamp = decision.stat().st_mtime_ns
    again = multiembed.load("text", tiny, device="cpu", backend="auto")
    assert (again.config()["backend"], again.config()["dtype"]) == chosen
    assert again.fast_report["decision"] == str(decision) and decision.stat().st_mtime_ns == stamp


def test_quality_numbers():
    generator = np.random.default_rng(0)
    docs, queries = generator.normal(size=(50, 8)), generator.normal(size=(5, 8))
    same = compare(docs, docs, queries, queries)
    assert same.min_cosine == pytest.approx(1.0) and same.top10_agreement == 1.0 and same.passed
    noisy = compare(docs, docs + generator.normal(scale=0.5, size=docs.shape), queries, queries)
    assert noisy.min_cosine < MIN_COSINE and not noisy.passed and noisy.mean_cosine > noisy.min_cosine
    assert top_k_agreement(docs, -docs, queries, queries) == 0.0  # reversed ranking: nothing shared


def test_cli_encode_with_openvino_int8(tiny, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    argv = ["encode", "--modality", "text", str(source), "-o", str(out), "--model", str(tiny)]
    assert main([*argv, "--backend", "openvino", "--dtype", "int8", "-q"]) == 0
    table = pq.read_table(out)
    config = json.loads(table.schema.metadata[b"multiembed.config"])
    assert (config["backend"], config["dtype"]) == ("openvino", "int8")
    vectors = np.array(table.column("vector").to_pylist())
    assert vectors.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_minilm_int8_passes_the_gate(minilm_dir, tmp_path):
    """Real weights: int8 stays within the gate (min cosine >= 0.99) on the fixed sample."""
    local = tmp_path / "minilm"
    shutil.copytree(minilm_dir, local, symlinks=False, ignore=shutil.ignore_patterns("openvino"))
    fast = multiembed.load("text", local, device="cpu", backend="openvino", dtype="int8")
    assert fast.fast_report["passed"] and fast.fast_report["quality"]["min_cosine"] >= MIN_COSINE
    exact = multiembed.load("text", local, device="cpu")
    cosines = (exact.encode(TEXTS, progress=False).vectors * fast.encode(TEXTS, progress=False).vectors).sum(
        1
    )
    assert cosines.min() >= MIN_COSINE
