"""Only multiembed's own errors leave load(), the Encoder, MilvusStore and the CLI, and each says what
is wrong; a model that fails on every item stops the run instead of reporting n bad items."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import multiembed
from multiembed import BackendError, ConfigError, InputError, MultiembedError, registry
from multiembed.encoder import ModelOutput, Role
from multiembed.milvus import MilvusStore
from multiembed.modalities.text import TextEncoder
from multiembed.sources import expand
from tests.image_files import photo


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return multiembed.load("text", str(tiny_models["mean"]), device="cpu")


def test_an_unknown_option_names_the_valid_ones(tiny_models):
    with pytest.raises(ConfigError, match=r"'text' does not take 'frames'; its options are: batch_size, "):
        multiembed.load("text", str(tiny_models["mean"]), frames=4)


def test_transform_options_are_refused_for_backbones_that_bring_their_own(image_models):
    with pytest.raises(ConfigError, match="resize_size: only torchvision backbones take transform options"):
        multiembed.load("image", str(image_models["hf"]), device="cpu", resize_size=100)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_a_bad_batch_size_is_a_config_error(tiny_models, bad):
    with pytest.raises(ConfigError, match=f"batch_size must be an integer >= 1, got {bad}"):
        multiembed.load("text", str(tiny_models["mean"]), device="cpu", batch_size=bad)


def test_a_missing_input_is_a_config_error():
    with pytest.raises(ConfigError, match="no such file or directory: /no/such/folder"):
        list(expand("image", "/no/such/folder"))


def test_a_broken_model_directory_is_one_model_not_found_error(image_models, tmp_path):
    broken = tmp_path / "broken-resnet"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "resnet", "hidden_sizes": "not a list"}')
    with pytest.raises(multiembed.ModelNotFoundError, match="cannot load as a Hugging Face image backbone"):
        multiembed.load("image", str(broken), device="cpu")
    (tmp_path / "not-perceiver").mkdir()
    (tmp_path / "not-perceiver" / "config.json").write_text('{"model_type": "perceiver"}')
    with pytest.raises(multiembed.ModelNotFoundError, match="cannot load as a multimodal Perceiver"):
        multiembed.load("video", str(tmp_path / "not-perceiver"), device="cpu")


class BrokenModel(TextEncoder):
    """A model that cannot run at all: every forward fails the same way."""

    def forward(self, batch: dict, role: Role) -> ModelOutput:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (3x32 and 64x32)")


class WrongShape(TextEncoder):
    def pool(self, output: ModelOutput, batch: dict, role: Role) -> torch.Tensor:
        return super().pool(output, batch, role)[:, :5]


class NaNForLongTexts(TextEncoder):
    """Gives NaN for texts of more than 6 tokens, as a model does for input far out of its range."""

    def pool(self, output: ModelOutput, batch: dict, role: Role) -> torch.Tensor:
        pooled = super().pool(output, batch, role)
        long = batch["attention_mask"].sum(dim=1) > 6
        return torch.where(long[:, None], torch.full_like(pooled, float("nan")), pooled)


class OutOfMemoryForLongTexts(TextEncoder):
    """Runs out of memory on any batch holding a text of more than 6 tokens, as a device would."""

    def forward(self, batch: dict, role: Role) -> ModelOutput:
        if batch["attention_mask"].shape[1] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(batch, role)


def _rebuild(cls: type[TextEncoder], encoder: TextEncoder) -> TextEncoder:
    return cls(encoder.model, model_id=encoder.model_id, policy=encoder.policy, batch_size=4)


def test_a_model_that_fails_on_every_item_stops_the_run(encoder, texts):
    with pytest.raises(
        BackendError, match="the model fails on every item, stopping the run: RuntimeError: mat1"
    ):
        _rebuild(BrokenModel, encoder).encode(texts * 3)


def test_a_non_finite_vector_is_that_items_error_and_nan_for_all_stops_the_run(encoder):
    from multiembed.failures import SystemicFailure
    from multiembed.outputs import NON_FINITE

    model = _rebuild(NaNForLongTexts, encoder)
    inputs = ["a dog", "a text long enough to get many more than six tokens", "a cat"]
    result = model.encode(inputs)
    assert [(error.index, error.reason) for error in result.errors] == [(1, NON_FINITE)]
    assert result.indices == [0, 2] and np.isfinite(result.vectors).all()
    np.testing.assert_allclose(result.vectors, encoder.encode(["a dog", "a cat"]).vectors, atol=1e-6)
    mixed = [inputs[0], inputs[1]] * 4  # NaN items one after another in a batch, among good ones
    assert [error.index for error in model.encode(mixed, batch_size=8).errors] == [1, 3, 5, 7]
    with pytest.raises(SystemicFailure, match=r"the model fails on every item.*not finite"):
        model.encode([inputs[1]] * 12)


def test_one_item_too_big_for_memory_fails_alone(encoder):
    inputs = ["a dog", "a text long enough to get many more than six tokens", "a cat"]
    result = _rebuild(OutOfMemoryForLongTexts, encoder).encode(inputs)
    assert [(error.index, error.reason) for error in result.errors] == [
        (1, "too big for the memory of cpu on its own (out of memory)")
    ]
    np.testing.assert_allclose(result.vectors, encoder.encode(["a dog", "a cat"]).vectors, atol=1e-6)


def test_a_wrong_output_shape_stops_the_run_at_once(encoder, texts):
    with pytest.raises(
        BackendError, match=r"output 'dense': the model gave shape \(4, 5\), expected \(4, 32\)"
    ):
        _rebuild(WrongShape, encoder).encode(texts)


def test_one_bad_item_is_still_just_one_item(encoder, texts):
    result = encoder.encode([texts[0], "", 7, texts[1]])
    assert [(error.index, error.reason) for error in result.errors] == [
        (1, "empty text"),
        (2, "expected text (str), got int"),
    ]
    assert result.indices == [0, 3]


def test_milvus_refusals_are_backend_errors(encoder, tmp_path):
    with MilvusStore(str(tmp_path / "x.db"), "docs", encoder) as store:
        store.add(["a red bicycle", "a dog"])
        with pytest.raises(BackendError, match=r"^Milvus: "):
            store.search("bicycle", filter="source ==== 'broken")
        with pytest.raises(ConfigError, match="limit must be an integer >= 1, got 0"):
            store.search("bicycle", limit=0)


def test_the_host_applications_pil_setting_is_left_alone():
    """multiembed refuses truncated images without flipping PIL's process-wide switch."""
    from multiembed.images import load_image

    buffer = io.BytesIO()
    photo(1, (64, 48)).save(buffer, "JPEG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as the host application wants it
    try:
        with pytest.raises(InputError, match="corrupt or truncated image"):
            load_image(truncated)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
        Image.open(io.BytesIO(truncated)).load()  # the host's own decoding still tolerates it
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_importing_multiembed_changes_no_pil_setting():
    code = "from PIL import ImageFile\nImageFile.LOAD_TRUNCATED_IMAGES = True\nimport multiembed.images\n"
    code += "import multiembed.modalities.image\nprint(ImageFile.LOAD_TRUNCATED_IMAGES)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr[-500:]


def test_a_modality_that_fails_to_import_is_named_and_the_rest_still_work(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_FAILED", {})
    monkeypatch.setattr(registry, "_discovered", False)
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None):
        if name == "multiembed.modalities.audio":
            raise ImportError("libsndfile.so: cannot open shared object file")
        module = real_import(name, package)  # already imported: register what discovery reaches again
        spec = getattr(module, "SPEC", None)
        if spec is not None:
            registry.register(spec)
        return module

    monkeypatch.setattr(registry.importlib, "import_module", import_module)
    names = [spec.name for spec in registry.list_modalities()]
    assert {"image", "image-text", "text", "video"} <= set(names) and "audio" not in names
    with pytest.raises(
        MultiembedError, match=r"modality 'audio' is unavailable: .*audio.py failed to import"
    ):
        registry.get("audio")
    assert "libsndfile" in registry.import_failures()["audio"]


@pytest.mark.slow
def test_cli_reports_a_bad_filter_in_one_line(encoder, tiny_models, tmp_path):
    uri = str(tmp_path / "cli.db")
    with MilvusStore(uri, "docs", encoder) as store:
        store.add(["a red bicycle"])
    done = subprocess.run(
        [sys.executable, "-m", "multiembed", "search", "bike", "-c", "docs", "--uri", uri, "--filter", "(("],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "multiembed: error: Milvus: " in done.stderr and "Traceback" not in done.stderr
    assert np.isfinite(encoder.encode_documents(["ok"])[0]).all()
