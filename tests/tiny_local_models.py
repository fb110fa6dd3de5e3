"""Builders for the Model2Vec, INSTRUCTOR and BGE-reranker folders the drop-in tests load.

Each folder has the layout the hub repos have (``minishlab/potion-*``, ``hkunlp/instructor-*``,
``BAAI/bge-reranker-*``), so the real loading code runs; only the weights are small (or, for the
static model, taken from the packaged MiniLM).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.tiny_models import CORPUS, tiny_bert_dir

INSTRUCTOR_WORDS = CORPUS + " represent question for retrieval the document"


def minilm_static_dir(minilm: Path, root: Path, *, dtype: str = "float32") -> Path:
    """A Model2Vec folder made offline from MiniLM: its token-embedding table and its tokenizer.

    ``model2vec.distill`` needs extras (scikit-learn, skeletoken) the tests do without; the table
    it starts from is this one, and the folder is what ``StaticModel.save_pretrained`` writes.
    """
    from model2vec import StaticModel
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    table = load_file(str(minilm / "model.safetensors"))["embeddings.word_embeddings.weight"]
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    model = StaticModel(table.astype(dtype), tokenizer, normalize=True, base_model_name=str(minilm))
    path = root / f"minilm-static-{dtype}"
    model.save_pretrained(path)
    return path


def weighted_static_dir(minilm: Path, root: Path, *, rows: int = 64, seed: int = 0) -> Path:
    """A vocabulary-quantised Model2Vec folder: tokens mapped onto ``rows`` shared rows, with weights."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    vocab = tokenizer.get_vocab_size()
    generator = np.random.default_rng(seed)
    table = generator.standard_normal((rows, 24)).astype(np.float32)
    mapping = generator.integers(0, rows, size=vocab).astype(np.int64)
    weights = generator.uniform(0.1, 2.0, size=vocab).astype(np.float32)
    model = StaticModel(
        table, tokenizer, normalize=False, weights=weights, token_mapping=mapping, max_length=16
    )
    path = root / "weighted-static"
    model.save_pretrained(path)
    return path


def tiny_t5_tokenizer() -> Any:
    """A T5 (Unigram, ``</s>``-terminated) tokenizer over the test vocabulary, built without files."""
    from transformers import T5Tokenizer

    words = sorted(set(INSTRUCTOR_WORDS.lower().split()))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + word, -1.0 - 0.01 * index) for index, word in enumerate(words)]
    pieces += [(char, -5.0) for char in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_instructor_dir(root: Path, *, seed: int = 0, normalize_module: bool = True) -> Path:
    """An INSTRUCTOR folder in hkunlp's layout: T5 encoder, mean Pooling, Dense (no bias), Normalize."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_t5_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="relu",
    )
    path = root / f"instructor-{seed}"
    T5EncoderModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    modules = [
        ("", "Transformer"),
        ("1_Pooling", "Pooling"),
        ("2_Dense", "Dense"),
        *([("3_Normalize", "Normalize")] if normalize_module else []),
    ]
    _write_json(
        path / "modules.json",
        [
            {"idx": i, "name": str(i), "path": folder, "type": f"sentence_transformers.models.{kind}"}
            for i, (folder, kind) in enumerate(modules)
        ],
    )
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 48, "do_lower_case": False})
    _write_json(
        path / "config_sentence_transformers.json", {"__version__": {"sentence_transformers": "2.2.2"}}
    )
    _write_json(
        path / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    _write_json(
        path / "2_Dense" / "config.json",
        {"in_features": 32, "out_features": 16, "bias": False,
         "activation_function": "torch.nn.modules.linear.Identity"},
    )  # fmt: skip
    torch.manual_seed(seed + 1)
    torch.save({"linear.weight": torch.randn(16, 32) / 4}, path / "2_Dense" / "pytorch_model.bin")
    if normalize_module:
        (path / "3_Normalize").mkdir()
    return path


def tiny_reranker_dir(root: Path, *, seed: int = 5) -> Path:
    """A BGE-style reranker: a sequence classifier with one logit, saved with its tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    bert = tiny_bert_dir(root / "reranker-src", seed=seed)
    config = BertConfig.from_pretrained(bert)
    config.num_labels = 1
    torch.manual_seed(seed)
    path = root / "reranker"
    classifier = BertForSequenceClassification(config).eval()
    torch.nn.init.normal_(classifier.classifier.weight, std=1.0)  # spread the scores: a clear order
    classifier.save_pretrained(path)
    AutoTokenizer.from_pretrained(bert).save_pretrained(path)
    return path


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
