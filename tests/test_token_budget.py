"""Token-budget batches: long texts in small batches, short ones in full ones, vectors unchanged."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import multiembed
from multiembed.batching import budget_batches
from multiembed.errors import ConfigError
from multiembed.modalities.image import ImageEncoder
from multiembed.modalities.text import TextEncoder


def padded(sizes: list[int], batch: list[int]) -> int:
    return max(sizes[index] for index in batch) * len(batch)


# ---- the batching function ---------------------------------------------------------------------
def test_every_batch_fits_the_budget_and_is_as_full_as_it_may_be():
    rng = random.Random(0)
    sizes = [rng.choice([3, 5, 8, 13, 40, 120, 256]) for _ in range(300)]
    batches = budget_batches(sizes, max_items=16, budget=512)
    for batch in batches:
        assert len(batch) <= 16
        assert sizes[batch[0]] == max(sizes[index] for index in batch)  # padded to its first item
        assert padded(sizes, batch) <= 512
    for batch, following in itertools.pairwise(batches):  # closed only when the next item did not fit
        assert len(batch) == 16 or padded(sizes, [*batch, following[0]]) > 512


def test_every_item_comes_once_longest_first():
    sizes = [7, 300, 2, 45, 45, 9, 1000, 3]
    batches = budget_batches(sizes, max_items=4, budget=100)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(len(sizes)))
    assert [sizes[index] for index in flat] == sorted(sizes, reverse=True)


def test_an_item_over_the_budget_is_a_batch_of_its_own():
    assert budget_batches([10, 5000, 10, 10], max_items=8, budget=100) == [[1], [0, 2, 3]]
    assert budget_batches([500, 400, 1], max_items=8, budget=100) == [[0], [1], [2]]


def test_batch_size_caps_short_items():
    assert budget_batches([2] * 10, max_items=4, budget=10_000) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_ties_keep_input_order_so_batches_are_reproducible():
    sizes = [5, 9, 5, 9, 5, 9]
    assert budget_batches(sizes, max_items=2, budget=100) == [[1, 3], [5, 0], [2, 4]]
    assert budget_batches(sizes, max_items=2, budget=100) == budget_batches(list(sizes), 2, 100)


def test_without_a_budget_batches_are_batch_size_items():
    sizes = [1, 900, 3, 900, 5]
    assert budget_batches(sizes, max_items=2) == [[1, 3], [4, 2], [0]]
    assert budget_batches([], max_items=2, budget=10) == []


@pytest.mark.parametrize(("max_items", "budget"), [(0, 10), (2, 0)])
def test_nonsense_limits_are_configuration_errors(max_items, budget):
    with pytest.raises(ConfigError):
        budget_batches([1, 2], max_items=max_items, budget=budget)


# ---- through the encoder --------------------------------------------------------------------------
def long_tail_corpus() -> list[str]:
    """Short sentences with a few documents far past MiniLM's 256 tokens, and one giant word."""
    rng = random.Random(1)
    words = ["vector", "search", "finds", "similar", "images", "texts", "videos", "in", "a", "collection"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 40))) for _ in range(20)]
    for index in (3, 14):
        texts[index] = " ".join(rng.choice(words) for _ in range(rng.randint(400, 2500)))
    texts[7] = "medium " * 150
    texts[11] = "x" * 100_000 + " tail"  # cut inside the word before tokenizing
    return texts


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return multiembed.load("text", str(minilm_dir), device="cpu", batch_size=8)


def test_text_budgets_tokens_and_only_text_declares_one(minilm):
    assert minilm.size_budget(8) == 8 * TextEncoder.size_budget_per_item
    assert ImageEncoder.size_budget_per_item is None  # fixed shapes: batches of batch_size as before


def test_size_of_is_the_padded_length_the_model_reads(minilm):
    tokenizer = minilm.model.tokenizer
    for text in long_tail_corpus():
        real = tokenizer(text, truncation=True, max_length=minilm.model.max_seq_length)["input_ids"]
        assert minilm.size_of(text) == len(real)


def test_long_tail_matches_sentence_transformers_within_the_budget(minilm, minilm_dir, monkeypatch):
    from sentence_transformers import SentenceTransformer

    texts = long_tail_corpus()
    monkeypatch.setattr(minilm, "size_budget_per_item", 64)  # 512 padded tokens: two 256-token texts
    shapes: list[tuple[int, int]] = []
    monkeypatch.setattr(
        minilm, "batch_observer", lambda batch: shapes.append(tuple(batch["input_ids"].shape))
    )
    result = minilm.encode(texts, progress=False)

    assert result.indices == list(range(len(texts)))
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    expected = reference.encode(texts, batch_size=8, normalize_embeddings=True)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-5)

    assert sum(items for items, _ in shapes) == len(texts)
    assert all(items * length <= 512 for items, length in shapes)
    assert (2, 256) in shapes  # the long documents went two by two
    assert any(items == 8 for items, _ in shapes)  # the short ones in full batches
    assert [length for _, length in shapes] == sorted((length for _, length in shapes), reverse=True)


def test_a_prompt_counts_against_the_budget(tiny_models, texts):
    encoder = multiembed.load("text", str(tiny_models["cls-prompt"]), device="cpu", batch_size=4)
    encoder.size_budget_per_item = 4  # 16 padded tokens per batch
    shapes: list[tuple[int, int]] = []
    encoder.batch_observer = lambda batch: shapes.append(tuple(batch["input_ids"].shape))
    encoder.encode(texts, role="query", progress=False)
    assert sum(items for items, _ in shapes) == len(texts)
    assert all(items == 1 or items * length <= 16 for items, length in shapes)
    assert any(items > 1 for items, _ in shapes)
