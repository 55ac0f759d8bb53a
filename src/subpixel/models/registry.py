"""Registry of architectures: a name maps to a builder ``(scale, **kwargs) -> SRNet``."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet

__all__ = ["ArchSpec", "register", "build", "check_counts", "check_scale", "get_spec", "architectures"]

T = TypeVar("T", bound=type[SRNet])


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture."""

    name: str
    builder: Callable[..., SRNet]
    scales: tuple[int, ...] | None  # None: any positive integer scale
    summary: str
    interpolation: bool = False


_REGISTRY: dict[str, ArchSpec] = {}


def register(
    name: str, *, scales: tuple[int, ...] | None = (2, 3, 4), summary: str = "", interpolation: bool = False
) -> Callable[[T], T]:
    """Class decorator adding an architecture under ``name``; ``summary`` defaults to the first line of the class's
    docstring, else ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ArchSpec(name, cls, scales, summary or (doc[0] if doc else name), interpolation)
        return cls

    return wrap


def _ensure_loaded() -> None:
    import subpixel.models  # noqa: F401  (imports every architecture module)


def get_spec(name: str) -> ArchSpec:
    """The spec registered as ``name`` (clear error when unknown)."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SubpixelError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


# constructor arguments that count channels or layers, in every architecture that takes them (a list: per level)
_COUNT_ARGS = ("channels", "blocks", "expansion", "esa_channels", "flow_channels")


def _is_count(value: object) -> bool:
    """Whether ``value`` is a positive integer (``True`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_counts(name: str, kwargs: dict[str, object], label: str | None = None) -> None:
    """Refuse a channel or layer count architecture ``name`` takes that is not a positive integer (or, where its
    builder's default is a list, a non-empty list of them); arguments it does not take are left to the builder's
    own error. Messages start with ``label`` (default ``"<name>: "``), then the argument's name."""
    spec = get_spec(name)
    label = f"{spec.name}: " if label is None else label
    takes = inspect.signature(spec.builder).parameters
    for key in _COUNT_ARGS:
        if key not in kwargs or key not in takes:
            continue
        value = kwargs[key]
        if isinstance(takes[key].default, (list, tuple)):
            if not (isinstance(value, (list, tuple)) and value and all(_is_count(v) for v in value)):
                raise SubpixelError(f"{label}{key} must be a non-empty list of positive integers, got {value!r}")
        elif not _is_count(value):
            raise SubpixelError(f"{label}{key} must be a positive integer, got {value!r}")


def check_scale(scale: object) -> int:
    """``scale`` as an int: a whole number >= 1 (``2.0`` and ``numpy.int64(2)`` are fine, ``True`` is not)."""
    if (isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale)
            or scale != int(scale) or scale < 1):
        raise SubpixelError(f"scale must be a positive whole number, got {scale!r}")
    return int(scale)


def build(name: str, scale: int, **kwargs: object) -> SRNet:
    """Instantiate architecture ``name`` for ``scale`` (a whole number >= 1, else :class:`SubpixelError`); channel
    and layer counts must be positive integers."""
    spec = get_spec(name)
    scale = check_scale(scale)
    if spec.scales is not None and scale not in spec.scales:
        raise SubpixelError(f"{name} supports scales {', '.join(map(str, spec.scales))}, not x{scale}")
    check_counts(name, kwargs)
    return spec.builder(scale=scale, **kwargs)


def architectures() -> dict[str, ArchSpec]:
    """All registered architectures by name."""
    _ensure_loaded()
    return dict(_REGISTRY)
