"""``subpixel export``: a model to ONNX with dynamic batch/height/width, checked against PyTorch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from subpixel.commands.options import emit_json, output_options
from subpixel.engine.onnx_export import DEFAULT_OPSET, MIN_OPSET, export_onnx
from subpixel.errors import SubpixelError
from subpixel.models.weights import find_shipped, is_weights_path

if TYPE_CHECKING:
    from subpixel.upscaler import Upscaler


@click.command()
@click.argument("model")
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Upscaling factor [default: a weights file's own scale, else 4].")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file [default: <model>_x<scale>.onnx (_random added with --random-weights), "
                   "or <stem>.onnx for a weights file, here].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET, show_default=True)
@click.option("--random-weights", is_flag=True, help="Export the architecture untrained (no weights needed).")
@output_options
def export(model: str, scale: int | None, fmt: str, output: Path | None, overwrite: bool, opset: int,
           random_weights: bool, quiet: bool, as_json: bool) -> None:
    """Export MODEL (a name or a .safetensors file) for ONNX Runtime and other runtimes.

    \b
    Input  lr: float32 NCHW RGB (not BGR) in [0, 1]; dynamic batch, height and width.
    Output sr: float32 NCHW RGB, scale times larger; NOT clamped (values slightly outside [0, 1]
               occur): clamp before casting to uint8.

    The file is run by ONNX Runtime at several input sizes (uniform noise) and compared with eager
    PyTorch; a max abs error of 1e-3 or more fails the export. Its metadata holds the model, scale,
    weights (shipped, a file's name and SHA-256, or random), card and this contract. Recurrent models
    (FRVSR) export their single-frame path only, with a warning even under -q.
    """
    from subpixel.models.loader import load

    if random_weights and is_weights_path(model):
        raise click.UsageError("--random-weights exports an untrained architecture; it contradicts a weights "
                               "file (pass an architecture name instead)")
    upscaler = load(model, scale=scale, device="cpu", engine="torch", pretrained=not random_weights)
    scale = upscaler.scale
    weights = Path(model).name if is_weights_path(model) else "random" if random_weights else "shipped"
    if output is None:  # in the current folder: a weights file's stem (mine_x2.onnx), else <model>_x<scale>[_random]
        stem = upscaler.name if is_weights_path(model) else f"{upscaler.name}_x{scale}"
        output = Path(f"{stem}_random.{fmt}" if random_weights else f"{stem}.{fmt}")
    if output.suffix.lower() != f".{fmt}":
        raise click.BadParameter(f"must end in .{fmt}", param_hint="--output")
    if output.exists() and not overwrite:
        raise SubpixelError(f"output {output} exists (use --overwrite)")
    recurrent = bool(getattr(upscaler.net, "recurrent", False))
    if recurrent:  # a correctness warning, not progress: -q keeps it
        click.echo(f"warning: {upscaler.name} is recurrent: the export holds its single-frame path only (every "
                   "frame is treated as the first of a sequence, without the previous estimate)", err=True)
    weights_file = None if random_weights else _weights_file(model, upscaler)
    report = export_onnx(upscaler.net, output, opset=opset, capture=True,
                         metadata=_metadata(upscaler, weights, weights_file))
    if as_json:
        emit_json({"model": upscaler.name, "scale": scale, "format": fmt, "weights": weights, **report.to_dict(),
                   **({"recurrent": False} if recurrent else {})})
    elif not quiet:
        click.echo(f"wrote {report.path} ({upscaler.name} x{scale}, {weights} weights, opset {report.opset}, "
                   "dynamic batch/height/width)")
        click.echo(f"parity vs PyTorch on uniform [0,1) noise: max abs error {report.max_abs_error:.2e} "
                   f"(< {report.tolerance:g})")


def _weights_file(model: str, upscaler: Upscaler) -> Path | None:
    """The weights file ``upscaler`` was loaded from: ``model`` itself, else the shipped one."""
    if is_weights_path(model):
        return Path(model)
    shipped = find_shipped(upscaler.name, upscaler.scale)
    return shipped.weights if shipped is not None else None


def _metadata(upscaler: Upscaler, weights: str, weights_file: Path | None) -> dict[str, str]:
    """The exported file's model, weights source (with the file's SHA-256) and card (none for random weights)."""
    meta = {"model": upscaler.name, "weights": weights}
    if weights_file is not None:
        meta["weights_sha256"] = hashlib.sha256(weights_file.read_bytes()).hexdigest()
        meta["card"] = json.dumps(upscaler.card, sort_keys=True, default=str)
    return meta
