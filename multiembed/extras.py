"""Optional dependencies: import them on use, and say which extra installs them when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from multiembed.errors import BackendError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the pip command that installs it (never installs anything)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BackendError(
            f"{module} is needed for this and is not installed ({error}); "
            f'install it with: pip install "multiembed[{extra}]"'
        ) from None
