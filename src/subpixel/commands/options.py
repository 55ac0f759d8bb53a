"""Options shared by several commands."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from subpixel.engine.device import PRECISIONS
from subpixel.ops.tiling import MIN_TILE
from subpixel.upscaler import check_tile

F = Callable[..., Any]


class DeviceType(click.ParamType):
    """A ``--device`` name: auto, cpu, cuda, cuda:N or mps (whether it is there is checked when it is used)."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        if text in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", text):
            return text
        self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N|mps]"


def device_option(f: F) -> F:
    """``--device``: auto, cpu, cuda, cuda:N or mps."""
    return click.option("--device", type=DeviceType(), default="auto", show_default=True,
                        help="auto = CUDA, then MPS, then CPU; cuda:N picks a GPU.")(f)


def _check_tile(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """``--tile``'s callback: :func:`~subpixel.upscaler.check_tile` as a usage error."""
    try:
        return check_tile(value)
    except ValueError:
        raise click.BadParameter(f"must be 0 (no tiling) or at least {MIN_TILE}") from None


def tile_option(f: F) -> F:
    """``--tile``: an LR tile side of at least ``MIN_TILE`` pixels, or 0 for none."""
    return click.option("--tile", type=click.IntRange(min=0), default=None, callback=_check_tile,
                        help=f"LR tile side in pixels (>= {MIN_TILE}); 0 = no tiling [default: from memory].")(f)


def runtime_options(f: F) -> F:
    """``--device``, ``--precision`` and ``--engine``."""
    f = click.option("--engine", default="auto", show_default=True,
                     help="Runtime: auto, torch, torch-compile, torch-cudagraph, onnx.")(f)
    f = click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
                     help="Compute precision; falls back to fp32 where unsupported.")(f)
    return device_option(f)


def output_options(f: F) -> F:
    """``--quiet`` and ``--json``."""
    f = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar or messages.")(f)
    return f


def emit_json(obj: Any) -> None:
    """Write ``obj`` as :func:`json_text` on stdout."""
    sys.stdout.write(json_text(obj))


def json_text(obj: Any) -> str:
    """``obj`` as strict, indented JSON text ending in a newline: infinite or NaN numbers become null, which
    every parser reads (a caller that must keep them writes text itself, as ``eval`` writes an exact
    reproduction's PSNR as ``"inf"``); other objects become strings."""
    return json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
