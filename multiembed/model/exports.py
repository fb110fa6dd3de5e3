"""Lazy package exports: ``model.dense.OpenAIEmbeddingFunction`` imports only the file that defines it.

pymilvus.model's packages list every class in ``__init__``; importing them all eagerly would load
torch, transformers and every provider's module just to reach one class. Each package here names
where its classes live, and the module is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps a public name to its submodule."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
