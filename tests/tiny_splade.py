"""Tiny, randomly initialised BERT masked-LMs saved the way SPLADE checkpoints are published.

SPLADE needs the masked-LM head (its logits are the vector), so these are ``BertForMaskedLM``
folders: config, safetensors weights and a word-piece tokenizer covering the test corpus. Two seeds
give a document model and a query model sharing one vocabulary, like naver's efficient-SPLADE pairs.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from tests.tiny_models import CORPUS

#: short enough that a test sentence or two runs past it, so truncation is exercised
MAX_TOKENS = 48


def splade_vocabulary(extra_words: tuple[str, ...] = ()) -> dict[str, int]:
    """Special tokens, characters, ``##`` continuations and the corpus words (plus ``extra_words``)."""
    words = sorted(set(CORPUS.split()) | set(extra_words))
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + list(string.ascii_lowercase + string.digits + string.punctuation) + pieces + words
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def tiny_splade_dir(
    root: Path, name: str = "splade", seed: int = 0, extra_words: tuple[str, ...] = ()
) -> Path:
    """A 2-layer, 32-wide ``BertForMaskedLM`` and its tokenizer (``model_max_length=MAX_TOKENS``).

    ``extra_words`` changes the vocabulary: a model that cannot serve as the others' query model.
    """
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = splade_vocabulary(extra_words)
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=MAX_TOKENS)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    model = BertForMaskedLM(config).eval()
    path = root / name
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
