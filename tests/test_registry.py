"""The modality registry."""

from __future__ import annotations

import pytest

import multiembed
from multiembed import registry
from multiembed.modalities.text import TextEncoder


def test_text_is_registered_with_its_models():
    spec = multiembed.get("text")
    assert spec.default_model == "minilm"
    assert spec.encoder_class is TextEncoder
    assert {(m.alias, m.dim) for m in spec.models} == {
        ("minilm", 384),
        ("mpnet", 768),
        ("bge-base", 768),
    }
    assert spec.model_info("BAAI/bge-base-en-v1.5").alias == "bge-base"
    assert spec.model_info("MiniLM").hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert "text" in [s.name for s in multiembed.list_modalities()]


def test_unknown_modality_names_the_known_ones():
    with pytest.raises(multiembed.MultiembedError, match=r"unknown modality 'pics'.*text"):
        multiembed.get("pics")


def make_spec(name: str, encoder_class: type) -> registry.ModalitySpec:
    return registry.ModalitySpec(
        name=name,
        description="demo",
        default_model="minilm",
        models=(),
        extensions=frozenset({".txt"}),
        encoder_class=encoder_class,
    )


def test_a_new_modality_registers_itself(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = make_spec("lines", TextEncoder)
    registry.register(spec)
    assert multiembed.get("lines") is spec
    assert registry.register(spec) is spec  # importing twice is harmless


def test_a_second_class_under_one_name_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    clash = make_spec("text", type("Other", (TextEncoder,), {}))
    with pytest.raises(multiembed.MultiembedError, match="registered twice"):
        registry.register(clash)


def test_missing_optional_dependency_names_the_extra():
    from multiembed.extras import require

    with pytest.raises(multiembed.BackendError, match=r'pip install "multiembed\[video\]"'):
        require("no_such_module_for_multiembed", "video")
