"""`from multiembed import model` in place of `from pymilvus import model`: the seed documents' BM25
example runs unchanged apart from the import, and prints what the documentation shows."""

from __future__ import annotations

import contextlib
import io

import scipy.sparse as sp

SEED_EXAMPLE = """
from multiembed import model
from multiembed.model.sparse import BM25EmbeddingFunction

# 1. prepare a small corpus to search
docs = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
]
query = "Where was Turing born?"
bm25_ef = BM25EmbeddingFunction()

# 2. fit the corpus to get BM25 model parameters on your documents.
bm25_ef.fit(docs)

# 3. store the fitted parameters to disk to expedite future processing.
bm25_ef.save("bm25_params.json")

# 4. load the saved params
new_bm25_ef = BM25EmbeddingFunction()
new_bm25_ef.load("bm25_params.json")

docs_embeddings = new_bm25_ef.encode_documents(docs)
query_embeddings = new_bm25_ef.encode_queries([query])
print("Dim:", new_bm25_ef.dim, list(docs_embeddings)[0].shape)
"""


def test_the_seed_bm25_example_prints_the_documented_dims(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(SEED_EXAMPLE, "seed_bm25_example", "exec"), namespace)
    assert out.getvalue() == "Dim: 21 (1, 21)\n"
    docs, queries = namespace["docs_embeddings"], namespace["query_embeddings"]
    assert isinstance(docs, sp.csr_array) and docs.shape == (3, 21) and docs.dtype == "float32"
    assert isinstance(queries, sp.csr_array) and queries.shape == (1, 21)
    assert (tmp_path / "bm25_params.json").is_file()


def test_the_module_layout_mirrors_pymilvus_model():
    from multiembed import model

    assert model.sparse.BM25EmbeddingFunction.__name__ == "BM25EmbeddingFunction"
    analyzer = model.sparse.build_default_analyzer(language="en")
    assert analyzer("Where was Turing born?") == ["ture", "born"]
