"""NomicEmbeddingFunction on a local nomic-embed-text-style folder: the task prefixes nomic-embed-text
was trained with are added, so the vectors equal sentence-transformers' with the prefixes typed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multiembed import ConfigError, model
from tests.tiny_models import tiny_sentence_transformer


@pytest.fixture(scope="module")
def nomic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sentence_transformer(tmp_path_factory.mktemp("nomic"), "nomic-embed-text", seed=4)


@pytest.fixture(scope="module")
def reference(nomic_dir):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(nomic_dir), device="cpu")

    def encode(prefix: str, texts: list[str]) -> np.ndarray:
        return st.encode([prefix + text for text in texts], convert_to_numpy=True)

    return encode


def test_local_folder_adds_nomics_task_prefixes(nomic_dir, reference, texts):
    ef = model.dense.NomicEmbeddingFunction(str(nomic_dir))
    assert ef.local and ef.dim == 32
    queries = ef.encode_queries(texts)
    documents = ef.encode_documents(texts)
    assert all(isinstance(v, np.ndarray) and v.shape == (32,) for v in queries + documents)
    np.testing.assert_allclose(np.stack(queries), reference("search_query: ", texts), atol=1e-5)
    np.testing.assert_allclose(np.stack(documents), reference("search_document: ", texts), atol=1e-5)
    np.testing.assert_allclose(np.stack(ef(texts)), np.stack(documents), atol=1e-6)  # task_type default
    assert not np.allclose(queries[0], documents[0])


@pytest.mark.parametrize("task_type", ["search_query", "clustering"])
def test_call_uses_the_task_type(nomic_dir, reference, texts, task_type):
    ef = model.dense.NomicEmbeddingFunction(str(nomic_dir), task_type=task_type)
    np.testing.assert_allclose(np.stack(ef(texts[:3])), reference(f"{task_type}: ", texts[:3]), atol=1e-5)


def test_local_options_are_checked(nomic_dir):
    with pytest.raises(ConfigError, match="Matryoshka sizes come from the hosted API"):
        model.dense.NomicEmbeddingFunction(str(nomic_dir), dimensions=16)
    with pytest.raises(ConfigError, match="a local Nomic model does not take long_text_mode"):
        model.dense.NomicEmbeddingFunction(str(nomic_dir), long_text_mode="mean")
    with pytest.raises(ConfigError, match="task_type must be one of"):
        model.dense.NomicEmbeddingFunction(str(nomic_dir), task_type="search")


def test_a_model_name_means_the_hosted_api(monkeypatch):
    monkeypatch.setenv("NOMIC_API_KEY", "nk-test")
    ef = model.dense.NomicEmbeddingFunction(dimensions=512)
    assert not ef.local and ef.dim == 512  # no request: the asked-for Matryoshka size
    assert ef.encoder.config()["model"] == "nomic:nomic-embed-text-v1.5"
