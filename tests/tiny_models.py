"""Builders for tiny, randomly initialised models saved to disk the way users' models are.

Tests load them back through the same `from_pretrained` / directory path a hub model takes, so the
real loading code runs; only the weights are small and random.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CORPUS = (
    "artificial intelligence was founded as an academic discipline in 1956 "
    "a red bicycle leans against a brick wall query passage document the quick brown fox "
    "jumps over lazy dog search vector database milvus embedding model sentence"
)


def tiny_bert_dir(root: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with a word-piece vocabulary covering CORPUS and single letters."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted(set(CORPUS.split()))
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + list(string.ascii_lowercase + string.digits + string.punctuation) + pieces + words
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = BertTokenizer(vocab=vocab)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    model = BertModel(config).eval()
    path = root / "bert"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_sentence_transformer(
    root: Path,
    name: str,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    dense: int | None = None,
    include_prompt: bool = True,
    prompts: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a sentence-transformers model: Transformer -> Pooling [-> Dense] [-> Normalize]."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    bert = tiny_bert_dir(root / f"{name}-src", seed=seed)
    modules: list[torch.nn.Module] = [
        Transformer(str(bert), max_seq_length=64),
        Pooling(32, pooling_mode=pooling, include_prompt=include_prompt),
    ]
    if dense:
        torch.manual_seed(seed + 1)
        modules.append(Dense(32, dense))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts, device="cpu")
    path = root / name
    model.save(str(path))
    return path
