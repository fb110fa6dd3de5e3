"""Text modality: parity with sentence-transformers / transformers / pymilvus.model, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import multiembed
from multiembed import InputError
from multiembed.cpu import cpu_features

#: what a text that is not UTF-8 is told to do
TO_UTF8 = "convert it to UTF-8 first (from Latin-1: iconv -f LATIN1 -t UTF-8)"

REFERENCE_SENTENCE = "Artificial intelligence was founded as an academic discipline in 1956."
PARITY = 1e-5


def reference(path: Path, texts: list[str], prompt: str | None = None) -> np.ndarray:
    model = SentenceTransformer(str(path), device="cpu")
    return model.encode(texts, prompt=prompt, normalize_embeddings=True, batch_size=3)


@pytest.mark.parametrize("name", ["mean", "cls-prompt", "max-dense", "mean-noprompt"])
def test_documents_match_sentence_transformers(tiny_models, texts, name):
    encoder = multiembed.load("text", str(tiny_models[name]), device="cpu", batch_size=3)
    ours = np.stack(encoder.encode_documents(texts))
    prompt = "passage: " if name == "mean-noprompt" else None
    expected = reference(tiny_models[name], texts, prompt=prompt)
    assert ours.shape == expected.shape == (len(texts), encoder.dim)
    assert np.abs(ours - expected).max() <= PARITY


@pytest.mark.parametrize("name", ["cls-prompt", "mean-noprompt"])
def test_queries_get_the_models_query_prompt(tiny_models, texts, name):
    encoder = multiembed.load("text", str(tiny_models[name]), device="cpu")
    queries = np.stack(encoder.encode_queries(texts))
    expected = reference(tiny_models[name], texts, prompt="query: ")
    assert np.abs(queries - expected).max() <= PARITY
    documents = np.stack(encoder.encode_documents(texts))
    assert np.abs(queries - documents).max() > 1e-3, "the query prompt must change the vectors"


def test_query_instruction_applies_to_queries_only(tiny_models, texts):
    instruction = "Represent this sentence for searching relevant passages: "
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu", query_instruction=instruction)
    assert (
        np.abs(
            np.stack(encoder.encode_queries(texts))
            - reference(tiny_models["mean"], [instruction + t for t in texts])
        ).max()
        <= PARITY
    )
    assert (
        np.abs(np.stack(encoder.encode_documents(texts)) - reference(tiny_models["mean"], texts)).max()
        <= PARITY
    )


def test_bge_alias_from_the_hub_cache_carries_its_query_instruction(tiny_models, tmp_path, monkeypatch):
    """A hub id already in the local cache loads offline, with the alias's model settings."""
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "models--BAAI--bge-base-en-v1.5" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_models["cls-prompt"], snapshot)
    (tmp_path / "models--BAAI--bge-base-en-v1.5" / "refs").mkdir()
    (tmp_path / "models--BAAI--bge-base-en-v1.5" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    encoder = multiembed.load("text", "bge-base", device="cpu")
    assert encoder.model_id == "BAAI/bge-base-en-v1.5"
    instruction = "Represent this sentence for searching relevant passages: "
    assert encoder.prompts == {"query": instruction, "document": None}
    query = encoder.encode_queries(["a red bicycle"])[0]
    expected = reference(snapshot, ["a red bicycle"], prompt=instruction)[0]
    assert np.abs(query - expected).max() <= PARITY


def test_packaged_minilm_reference_values(minilm_dir):
    encoder = multiembed.load("text", device="cpu")  # default model: minilm, from the package
    assert encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert encoder.dim == 384
    vector = encoder.encode_documents([REFERENCE_SENTENCE])[0]
    assert vector.dtype == np.float32 and vector.shape == (384,)
    np.testing.assert_allclose(vector[:4], [-3.0939e-02, -1.8066e-02, 1.3478e-02, 2.7716e-02], atol=1e-6)


def test_minilm_equals_pymilvus_model(minilm_dir, texts):
    from pymilvus.model.dense import SentenceTransformerEmbeddingFunction

    theirs = SentenceTransformerEmbeddingFunction(model_name=str(minilm_dir), device="cpu")
    ours = multiembed.load("text", str(minilm_dir), device="cpu")
    for method in ("encode_documents", "encode_queries", "__call__"):
        mine = getattr(ours, method)(texts)
        expected = getattr(theirs, method)(texts)
        assert isinstance(mine, list) and all(isinstance(v, np.ndarray) for v in mine)
        np.testing.assert_allclose(np.stack(mine), np.stack(expected), atol=1e-6)


def test_minilm_equals_hand_written_transformers_pipeline(minilm_dir, texts):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir).eval()
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    ours = np.stack(multiembed.load("text", str(minilm_dir), device="cpu").encode_documents(texts))
    assert np.abs(ours - expected).max() <= PARITY


@pytest.mark.skipif(not cpu_features().bf16, reason="bfloat16 on the CPU needs AVX512-BF16 or AMX")
def test_bfloat16_fast_mode_stays_close_to_float32(minilm_dir, texts):
    exact = multiembed.load("text", str(minilm_dir), device="cpu")
    fast = multiembed.load("text", str(minilm_dir), device="cpu", dtype="bfloat16")
    a = np.stack(exact.encode_documents(texts))
    b = np.stack(fast.encode_documents(texts))
    assert b.dtype == np.float32
    cosine = (a * b).sum(axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    assert np.abs(np.linalg.norm(b, axis=1) - 1).max() < 1e-5


def test_bad_items_are_reported_not_raised(tiny_models):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    result = encoder.encode(["good text", "", "   ", None, 42, b"\xc3\x28", b"bytes are fine", "dog"])
    assert result.indices == [0, 6, 7]
    assert [(e.index, e.reason) for e in result.errors] == [
        (1, "empty text"),
        (2, "empty text"),
        (3, "expected text (str), got NoneType"),
        (4, "expected text (str), got int"),
        (5, f"not valid UTF-8 text (byte 0); {TO_UTF8}"),
    ]
    good = encoder.encode_documents(["good text", "bytes are fine", "dog"])  # bytes decode as UTF-8
    np.testing.assert_allclose(result.vectors, np.stack(good), atol=1e-6)


def test_text_files_are_read_as_one_item(tiny_models, tmp_path):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    (tmp_path / "a.txt").write_text("a red bicycle\n", encoding="utf-8")
    result = encoder.encode([tmp_path / "a.txt", tmp_path / "missing.txt"])
    assert result.sources == [str(tmp_path / "a.txt")]
    assert result.errors[0].source == str(tmp_path / "missing.txt")
    assert "cannot read file" in result.errors[0].reason
    np.testing.assert_allclose(result.vectors[0], encoder.encode_documents(["a red bicycle\n"])[0])


def test_encode_documents_raises_with_the_item_name(tiny_models):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    with pytest.raises(InputError, match=r"#1: empty text"):
        encoder.encode_documents(["fine", ""])


def test_not_a_sentence_transformers_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        multiembed.ModelNotFoundError, match="cannot load as a sentence-transformers text model"
    ):
        multiembed.load("text", str(tmp_path), device="cpu")


# ---- giant words and broken strings ----------------------------------------------------------------
class RecordingTokenizer:
    """A tokenizer that remembers the longest text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.longest = 0

    def __call__(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.tokenizer(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def base64_word(size: int) -> str:
    """Random base64 text without spaces: ``+`` and ``/`` split it into many short WordPiece words."""
    import base64
    import random

    return base64.b64encode(random.Random(0).randbytes(size * 3 // 4)).decode()[:size]


GIANT_WORDS = {
    "letters": lambda: "a" * 10_000_000,  # one [UNK]: its middle is dropped
    "letters-then-words": lambda: "word " * 10 + "a" * 10_000_000 + " more words" * 300,
    "base64": lambda: base64_word(10_000_000),  # cut inside the word, at the bound
    "emoji": lambda: "\U0001f600" * 2_000_000,  # one [UNK] too, not letters: cut at the most a cut keeps
}


@pytest.mark.parametrize("name", list(GIANT_WORDS))
def test_a_giant_word_is_never_tokenized_whole(tiny_models, name):
    from multiembed.texts import MAX_CHARS_PER_TOKEN, MAX_WORD_CHARS, cut_for_tokenizer, token_ids

    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    max_tokens = int(encoder.model.max_seq_length)
    tokenizer = RecordingTokenizer(encoder.model.tokenizer)
    text = GIANT_WORDS[name]()
    cut = cut_for_tokenizer(text, tokenizer, max_tokens)
    assert tokenizer.longest <= MAX_CHARS_PER_TOKEN * max_tokens + MAX_WORD_CHARS
    assert len(cut) <= MAX_CHARS_PER_TOKEN * max_tokens + MAX_WORD_CHARS
    if name != "emoji":  # the emoji's whole is 2 M tokenizer characters; its cut is one [UNK] as well
        sample = text[:150_000] + text[-3_300:]  # the same shape, small enough to tokenize whole here
        assert token_ids(tokenizer, cut)[:max_tokens] == token_ids(tokenizer, sample)[:max_tokens]
    assert (
        token_ids(tokenizer, cut_for_tokenizer(text[:150_000], tokenizer, max_tokens))[:max_tokens]
        == (token_ids(tokenizer, text[:150_000])[:max_tokens])
    )


def test_giant_words_among_good_texts_match_sentence_transformers(minilm_dir):
    texts = [
        "a red bicycle",
        "word " * 10 + "a" * 5_000_000 + " more words" * 300,
        "tail " + base64_word(200_000),
        "dog",
    ]
    encoder = multiembed.load("text", str(minilm_dir), device="cpu")
    result = encoder.encode(texts)
    assert result.indices == [0, 1, 2, 3]
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(result.vectors - expected).max() <= PARITY


def test_a_lone_surrogate_is_an_item_error(tiny_models):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    result = encoder.encode(["good text", "abc\ud800def", "dog", "\udfff"])
    assert result.indices == [0, 2]
    assert [(e.index, e.reason) for e in result.errors] == [
        (1, "text contains a lone surrogate (U+D800) at character 3: not valid Unicode"),
        (3, "text contains a lone surrogate (U+DFFF) at character 0: not valid Unicode"),
    ]
    np.testing.assert_allclose(result.vectors, np.stack(encoder.encode_documents(["good text", "dog"])))
