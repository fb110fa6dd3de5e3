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


def tiny_hf_resnet_dir(root: Path, seed: int = 0) -> Path:
    """A 4-stage bottleneck ResNet (32-d) with an explicit ConvNext-style processor, as NOTES advises."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    torch.manual_seed(seed)
    config = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="bottleneck"
    )
    path = root / "hf-resnet"
    ResNetModel(config).eval().save_pretrained(path)
    ConvNextImageProcessor(
        size={"shortest_edge": 224},
        crop_pct=0.875,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)
    return path


def tiny_timm_dir(root: Path, seed: int = 0) -> Path:
    """timm's own tiny test ResNet saved the way timm publishes models (config.json + safetensors)."""
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(seed)
    path = root / "timm-resnet"
    save_for_hf(timm.create_model("test_resnet", num_classes=0), str(path), safe_serialization=True)
    return path


def resnet50_state_dict_file(root: Path, seed: int = 0, suffix: str = ".pth") -> Path:
    """Random full-size torchvision ResNet-50 weights (the architecture the default model fixes)."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    state = resnet50().state_dict()
    path = root / f"resnet50{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def tiny_clip_dir(root: Path, seed: int = 0) -> Path:
    """A 2-layer CLIP (16-d projection) with a character-level BPE tokenizer built in-process."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    symbols = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(f"{symbol}</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "eos_token_id": vocab["<|endoftext|>"],
            "bos_token_id": vocab["<|startoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    path = root / "clip"
    CLIPModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path


def tiny_whisper_dir(root: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide Whisper with the standard 80-mel, 30 s feature extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    config = WhisperConfig(
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_source_positions=1500,
        max_target_positions=32,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    path = root / "whisper"
    WhisperModel(config).eval().save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


def tiny_perceiver_dir(root: Path, seed: int = 0) -> Path:
    """A multimodal Perceiver with 8 latents of 16 channels, 4 frames of 32x32 and 256 audio samples."""
    from transformers import PerceiverConfig, PerceiverForMultimodalAutoencoding

    torch.manual_seed(seed)
    config = PerceiverConfig(
        num_latents=8,
        d_latents=16,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=2,
        num_cross_attention_heads=1,
        image_size=32,
        num_frames=4,
        audio_samples_per_frame=64,
        samples_per_patch=16,
        output_shape=[1, 4, 32, 32],
        output_num_channels=16,
        num_labels=700,
    )
    path = root / "perceiver"
    PerceiverForMultimodalAutoencoding(config).eval().save_pretrained(path)
    return path
