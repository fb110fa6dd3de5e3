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


BGE_M3_SAMPLE = """
from multiembed.model.hybrid import BGEM3EmbeddingFunction
from pymilvus import (
    utility,
    FieldSchema, CollectionSchema, DataType,
    Collection, AnnSearchRequest, RRFRanker, connections,
)

# 1. prepare a small corpus to search
docs = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
]
query = "Who started AI research?"

# BGE-M3 model can embed texts as dense and sparse vectors.
# It is included in the optional `model` module in pymilvus, to install it,
# simply run "pip install pymilvus[model]".

bge_m3_ef = BGEM3EmbeddingFunction(model_name=BGE_M3_DIR, use_fp16=False, device="cpu")

docs_embeddings = bge_m3_ef(docs)
query_embeddings = bge_m3_ef([query])
"""


def test_the_bge_m3_sample_gives_vectors_milvus_takes_for_hybrid_search(tmp_path):
    """The sample, then the documents' next step: dense + sparse fields, AnnSearchRequest + RRFRanker."""
    from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker

    from tests.tiny_hybrid import tiny_bge_m3_dir

    folder = tiny_bge_m3_dir(tmp_path / "bge-m3")
    _, namespace = run_sample(BGE_M3_SAMPLE, BGE_M3_DIR=str(folder))
    docs, ef = namespace["docs"], namespace["bge_m3_ef"]
    docs_embeddings, query_embeddings = namespace["docs_embeddings"], namespace["query_embeddings"]
    assert set(docs_embeddings) == {"dense", "sparse"} and len(docs_embeddings["dense"]) == 3
    assert next(iter(docs_embeddings["sparse"])).shape == (1, ef.dim["sparse"])

    client = MilvusClient(str(tmp_path / "seed.db"))
    schema = client.create_schema(auto_id=True)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=512)
    schema.add_field("sparse_vector", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense_vector", DataType.FLOAT_VECTOR, dim=ef.dim["dense"])
    index = client.prepare_index_params()
    index.add_index("sparse_vector", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    index.add_index("dense_vector", index_type="AUTOINDEX", metric_type="IP")
    client.create_collection("hybrid_demo", schema=schema, index_params=index)
    rows = [
        {"text": doc, "sparse_vector": sparse, "dense_vector": dense}
        for doc, sparse, dense in zip(docs, docs_embeddings["sparse"], docs_embeddings["dense"], strict=True)
    ]
    client.insert("hybrid_demo", rows)
    client.load_collection("hybrid_demo")
    requests = [
        AnnSearchRequest([query_embeddings["sparse"][[0]]], "sparse_vector", {"metric_type": "IP"}, limit=3),
        AnnSearchRequest([query_embeddings["dense"][0]], "dense_vector", {"metric_type": "IP"}, limit=3),
    ]
    hits = client.hybrid_search("hybrid_demo", requests, RRFRanker(), limit=3, output_fields=["text"])[0]
    assert sorted(hit["entity"]["text"] for hit in hits) == sorted(docs)
    dense_best = max(
        range(3), key=lambda i: float(docs_embeddings["dense"][i] @ query_embeddings["dense"][0])
    )
    only_dense = client.search("hybrid_demo", [query_embeddings["dense"][0]], anns_field="dense_vector",
                               limit=1, output_fields=["text"])[0]  # fmt: skip
    assert only_dense[0]["entity"]["text"] == docs[dense_best]
    client.close()


MODEL2VEC_SAMPLE = """
from multiembed import model

model2vec_ef = model.dense.Model2VecEmbeddingFunction(
    model_source=MODEL2VEC_DIR, # or local directory
)

docs = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
]

docs_embeddings = model2vec_ef.encode_documents(docs)

# Print embeddings
print("Embeddings:", docs_embeddings)
# Print dimension and shape of embeddings
print("Dim:", model2vec_ef.dim, docs_embeddings[0].shape)

queries = ["When was artificial intelligence founded",
           "Where was Alan Turing born?"]

query_embeddings = model2vec_ef.encode_queries(queries)

# Print embeddings
print("Embeddings:", query_embeddings)
# Print dimension and shape of embeddings
print("Dim", model2vec_ef.dim, query_embeddings[0].shape)
"""


def test_the_model2vec_sample_runs_on_a_local_static_model(tmp_path, minilm_dir):
    """The documents' Model2Vec sample on a static model made from the packaged MiniLM's token table
    (potion-base-8M itself would print 256; this model is 384 wide)."""
    from model2vec import StaticModel

    from tests.tiny_local_models import minilm_static_dir

    folder = minilm_static_dir(minilm_dir, tmp_path / "static")
    printed, namespace = run_sample(MODEL2VEC_SAMPLE, MODEL2VEC_DIR=str(folder))
    lines = [line for line in printed.splitlines() if line.startswith("Dim")]
    assert lines == ["Dim: 384 (384,)", "Dim 384 (384,)"]
    assert printed.count("dtype=float32)]") == 2
    reference = StaticModel.from_pretrained(str(folder))
    np.testing.assert_allclose(namespace["docs_embeddings"], reference.encode(namespace["docs"]), atol=1e-5)
    np.testing.assert_allclose(
        namespace["query_embeddings"], reference.encode(namespace["queries"]), atol=1e-5
    )
