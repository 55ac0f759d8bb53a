"""subpixel: image and video super-resolution."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from subpixel.errors import SubpixelError

if TYPE_CHECKING:
    from subpixel.models.loader import load
    from subpixel.upscaler import Upscaler

__version__ = "0.1.0"
__all__ = ["load", "Upscaler", "SubpixelError", "__version__"]

# name -> module, imported on first use: ``import subpixel.cli`` (and ``subpixel --help``) stays clear of torch
_LAZY = {"load": "subpixel.models.loader", "Upscaler": "subpixel.upscaler"}


def __getattr__(name: str) -> Any:
    """PEP 562: ``load`` and ``Upscaler`` import their modules (and torch) when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
