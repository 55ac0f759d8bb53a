"""Options shared by several commands."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import click

from subpixel.engine.device import PRECISIONS

F = Callable[..., Any]


def runtime_options(f: F) -> F:
    """``--device``, ``--precision`` and ``--engine``."""
    f = click.option("--engine", default="auto", show_default=True,
                     help="Runtime: auto, torch, torch-compile, torch-cudagraph, onnx.")(f)
    f = click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
                     help="Compute precision; falls back to fp32 where unsupported.")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                     show_default=True)(f)
    return f


def output_options(f: F) -> F:
    """``--quiet`` and ``--json``."""
    f = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar or messages.")(f)
    return f


def emit_json(obj: Any) -> None:
    """Write ``obj`` as :func:`json_text` on stdout."""
    sys.stdout.write(json_text(obj))


def json_text(obj: Any) -> str:
    """``obj`` as strict, indented JSON text ending in a newline: infinite or NaN numbers (the PSNR of
    identical images) become null, which every parser reads; other objects become strings."""
    return json.dumps(_finite(obj), indent=2, default=str, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
