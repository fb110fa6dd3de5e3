# ruff: noqa: E501  (the samples are kept verbatim, long lines included)
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


JINA_SAMPLE = """
from multiembed.model.reranker import JinaRerankFunction

jina_api_key = "<YOUR_JINA_API_KEY>"

rf = JinaRerankFunction("jina-reranker-v1-base-en", jina_api_key, base_url=JINA_URL)

query = "What event in 1956 marked the official birth of artificial intelligence as a discipline?"

documents = [
   "In 1950, Alan Turing published his seminal paper, 'Computing Machinery and Intelligence,' proposing the Turing Test as a criterion of intelligence, a foundational concept in the philosophy and development of artificial intelligence.",
   "The Dartmouth Conference in 1956 is considered the birthplace of artificial intelligence as a field; here, John McCarthy and others coined the term 'artificial intelligence' and laid out its basic goals.",
   "In 1951, British mathematician and computer scientist Alan Turing also developed the first program designed to play chess, demonstrating an early example of AI in game strategy.",
   "The invention of the Logic Theorist by Allen Newell, Herbert A. Simon, and Cliff Shaw in 1955 marked the creation of the first true AI program, which was capable of solving logic problems, akin to proving mathematical theorems."
]

results = rf(query, documents)

for result in results:
   print(f"Index: {result.index}")
   print(f"Score: {result.score:.6f}")
   print(f"Text: {result.text}\\n")
"""

#: the relevance scores the documents show Jina giving the four documents (in input order)
JINA_SCORES = [0.349866, 0.937096, 0.272896, 0.354210]


def test_the_jina_rerank_sample_prints_the_documented_ranking():
    from tests.provider_server import provider_server

    def jina(path: str, headers: dict, body: dict):
        if headers.get("authorization") != "Bearer <YOUR_JINA_API_KEY>":
            return 401, {"detail": "Unauthorized"}, {}
        assert path == "/v1/rerank" and body["model"] == "jina-reranker-v1-base-en"
        ranked = sorted(range(len(body["documents"])), key=lambda i: -JINA_SCORES[i])
        results = [{"index": i, "relevance_score": JINA_SCORES[i], "document": {"text": body["documents"][i]}}
                   for i in ranked[: body.get("top_n") or len(ranked)]]  # fmt: skip
        return 200, {"model": body["model"], "results": results, "usage": {"total_tokens": 1}}, {}

    with provider_server(jina) as server:
        printed, namespace = run_sample(JINA_SAMPLE, JINA_URL=server.url + "/v1")
    documents = namespace["documents"]
    blocks = printed.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["Index: 1", "Index: 3", "Index: 0", "Index: 2"]
    assert [block.splitlines()[1] for block in blocks] == [
        "Score: 0.937096", "Score: 0.354210", "Score: 0.349866", "Score: 0.272896"
    ]  # fmt: skip
    assert blocks[0].splitlines()[2] == f"Text: {documents[1]}"
