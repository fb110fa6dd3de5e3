"""Heavy libraries imported on first use, so light commands (``--help``, ``modalities``) stay fast.

``torch`` takes over a second to import. Modules that need it only inside functions import this
proxy instead; the real module is imported the first time one of its attributes is read. Type
checkers see the real module (``if TYPE_CHECKING: import torch``).
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any


class LazyModule(types.ModuleType):
    """A stand-in for a module that imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._real: types.ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        if self._real is None:
            self._real = importlib.import_module(self.__name__)
        return getattr(self._real, attribute)


torch = LazyModule("torch")


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports each public name from its module on first use."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
