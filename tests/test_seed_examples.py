"""The code samples of the documents multiembed grew from (pymilvus' embedding docs, in ../shared/seeds),
run with `from pymilvus import model` changed to `from multiembed import model`; models that the docs
download come from local folders, hosted APIs from a server on 127.0.0.1. Their printed output is
checked against what the documents show."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np

DOCS = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
]


def run_sample(code: str, **names: object) -> tuple[str, dict[str, object]]:
    namespace: dict[str, object] = dict(names)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "seed_sample", "exec"), namespace)
    return out.getvalue(), namespace


DEFAULT_SAMPLE = """
from multiembed import model

# This will download "all-MiniLM-L6-v2", a light weight model.
ef = model.DefaultEmbeddingFunction()

# Data from which embeddings are to be generated
docs = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
]

embeddings = ef.encode_documents(docs)

# Print embeddings
print("Embeddings:", embeddings)
# Print dimension and shape of embeddings
print("Dim:", ef.dim, embeddings[0].shape)
"""

#: what the documents print: the first four numbers of the first vector, the last four of the last
DOCUMENTED_HEAD = [-3.09392996e-02, -1.80662833e-02, 1.34775648e-02, 2.77156215e-02]
DOCUMENTED_TAIL = [-4.75336798e-02, 5.21207601e-02, 9.04406682e-02, -5.36676683e-02]


def test_the_default_embedding_sample_prints_the_documented_numbers():
    printed, namespace = run_sample(DEFAULT_SAMPLE)
    assert printed.rstrip().endswith("Dim: 384 (384,)")
    assert printed.startswith("Embeddings: [array([-3.0939")
    embeddings = namespace["embeddings"]
    assert isinstance(embeddings, list) and len(embeddings) == 3
    assert all(vector.dtype == np.float32 for vector in embeddings)
    np.testing.assert_allclose(embeddings[0][:4], DOCUMENTED_HEAD, atol=1e-6)
    np.testing.assert_allclose(embeddings[-1][-4:], DOCUMENTED_TAIL, atol=1e-6)
    assert re.search(r"dtype=float32\)\]", printed)
