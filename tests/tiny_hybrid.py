"""Tiny BGE-M3- and mGTE-shaped model folders, laid out as the published ones are.

BGE-M3 (``BAAI/bge-m3``): an XLM-RoBERTa encoder saved with ``save_pretrained``, its SentencePiece
tokenizer, and the two heads next to them as ``torch.save``'d state dicts: ``sparse_linear.pt``
(hidden -> 1, the lexical weight of each token) and ``colbert_linear.pt`` (hidden -> colbert dim).

mGTE (``Alibaba-NLP/gte-multilingual-base``): a token-classification model with one label (the
token weight) whose output also carries ``last_hidden_state`` (its CLS state is the dense vector).
The published model's class is remote code; the tiny one ships its own small remote-code module,
so it loads both ways: with ``trust_remote_code=True`` as the custom class (what pymilvus.model
loads), without it as transformers' own ``XLMRobertaForTokenClassification``. Same weights.

The tokenizer is an XLM-RoBERTa unigram tokenizer built in-process from a small vocabulary
(transformers 5 builds it on the ``tokenizers`` library; no sentencepiece file, nothing downloaded).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CORPUS = (
    "artificial intelligence was founded as an academic discipline in 1956 "
    "a red bicycle leans against a brick wall query passage document the quick brown fox "
    "jumps over lazy dog search vector database milvus embedding model sentence hybrid sparse dense "
    "bonjour le monde hallo welt"
)
HIDDEN = 32
COLBERT_DIM = 24

#: the remote-code module of the tiny mGTE: transformers' token classifier, plus ``last_hidden_state``
MGTE_MODULE = """
from dataclasses import dataclass

import torch
from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification
from transformers.modeling_outputs import TokenClassifierOutput


class TinyGTEConfig(XLMRobertaConfig):
    model_type = "tiny-gte"


@dataclass
class TokenWeightsOutput(TokenClassifierOutput):
    last_hidden_state: torch.FloatTensor | None = None


class TinyGTEForTokenClassification(XLMRobertaForTokenClassification):
    config_class = TinyGTEConfig

    def forward(self, input_ids=None, attention_mask=None, return_dict=True, **kwargs):
        sequence = self.roberta(input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        logits = self.classifier(self.dropout(sequence))
        return TokenWeightsOutput(logits=logits, last_hidden_state=sequence)
"""


def tiny_xlmr_tokenizer(model_max_length: int = 96):  # type: ignore[no-untyped-def]
    """An XLM-RoBERTa tokenizer: whole words of CORPUS as pieces, and single characters as fallback."""
    from transformers import XLMRobertaTokenizer

    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [(f"\u2581{word}", -5.0) for word in dict.fromkeys(CORPUS.split())]
    characters = [(char, -10.0) for char in string.ascii_letters + string.digits + string.punctuation]
    pieces = [("\u2581", -8.0), *words, *characters, ("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=specials + pieces, model_max_length=model_max_length)


def _encoder_config(vocab_size: int, **extra: object):  # type: ignore[no-untyped-def]
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=100,  # positions start after the padding index (1): 98 tokens
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **extra,
    )


def tiny_bge_m3_dir(root: Path, seed: int = 0, colbert_dim: int = COLBERT_DIM) -> Path:
    """A BGE-M3-shaped folder: XLM-RoBERTa encoder, tokenizer, ``sparse_linear.pt``, ``colbert_linear.pt``."""
    from transformers import XLMRobertaModel

    tokenizer = tiny_xlmr_tokenizer()
    torch.manual_seed(seed)
    model = XLMRobertaModel(_encoder_config(len(tokenizer))).eval()
    sparse_linear = torch.nn.Linear(HIDDEN, 1)
    with torch.no_grad():  # most tokens get a weight (random init would zero about half of them)
        sparse_linear.weight.mul_(0.2)
        sparse_linear.bias.fill_(0.3)
    colbert_linear = torch.nn.Linear(HIDDEN, colbert_dim)
    path = root / f"bge-m3-{seed}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.save(sparse_linear.state_dict(), path / "sparse_linear.pt")
    torch.save(colbert_linear.state_dict(), path / "colbert_linear.pt")
    return path


def tiny_mgte_dir(root: Path, seed: int = 0, *, remote_only: bool = False, labels: int = 1) -> Path:
    """An mGTE-shaped folder: a one-label token classifier, with the remote-code class named in auto_map.

    ``remote_only`` records the model type of the remote code (as the published mGTE's "new"), so
    the folder loads only with ``trust_remote_code=True``.
    """
    import json

    from transformers import XLMRobertaForTokenClassification

    tokenizer = tiny_xlmr_tokenizer()
    torch.manual_seed(seed)
    config = _encoder_config(
        len(tokenizer),
        num_labels=labels,
        auto_map={
            "AutoConfig": "modeling_tiny_gte.TinyGTEConfig",
            "AutoModelForTokenClassification": "modeling_tiny_gte.TinyGTEForTokenClassification",
        },
    )
    model = XLMRobertaForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(0.2)  # most tokens get a weight
        model.classifier.bias.fill_(0.3)
    path = root / f"mgte-{seed}{'-remote' if remote_only else ''}-{labels}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "modeling_tiny_gte.py").write_text(MGTE_MODULE)
    if remote_only:
        config_file = path / "config.json"
        saved = json.loads(config_file.read_text())
        saved.update(model_type="tiny-gte", architectures=["TinyGTEForTokenClassification"])
        config_file.write_text(json.dumps(saved, indent=2))
    return path
