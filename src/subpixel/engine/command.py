"""``subpixel export``: a model to ONNX with dynamic batch/height/width, checked against PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from subpixel.commands.options import emit_json, output_options
from subpixel.engine.onnx_export import DEFAULT_OPSET, MIN_OPSET, export_onnx
from subpixel.errors import SubpixelError
from subpixel.models.weights import is_weights_path

log = logging.getLogger(__name__)


@click.command()
@click.argument("model")
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Upscaling factor [default: a weights file's own scale, else 4].")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file [default: <model>_x<scale>.onnx, or <stem>.onnx for a weights file, here].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET, show_default=True)
@click.option("--random-weights", is_flag=True, help="Export the architecture untrained (no weights needed).")
@output_options
def export(model: str, scale: int | None, fmt: str, output: Path | None, overwrite: bool, opset: int,
           random_weights: bool, quiet: bool, as_json: bool) -> None:
    """Export MODEL (a name or a .safetensors file) for ONNX Runtime and other runtimes.

    The file is run by ONNX Runtime at several input sizes and compared with eager PyTorch; a max abs
    error of 1e-3 or more fails the export. Recurrent models (FRVSR) export their single-frame path.
    """
    from subpixel.models.loader import load

    if random_weights and is_weights_path(model):
        raise click.UsageError("--random-weights exports an untrained architecture; it contradicts a weights "
                               "file (pass an architecture name instead)")
    upscaler = load(model, scale=scale, device="cpu", engine="torch", pretrained=not random_weights)
    scale = upscaler.scale
    if output is None:  # in the current folder: a weights file's stem (mine_x2.onnx), else <model>_x<scale>
        output = Path(f"{upscaler.name}.{fmt}" if is_weights_path(model) else f"{upscaler.name}_x{scale}.{fmt}")
    if output.suffix.lower() != f".{fmt}":
        raise click.BadParameter(f"must end in .{fmt}", param_hint="--output")
    if output.exists() and not overwrite:
        raise SubpixelError(f"output {output} exists (use --overwrite)")
    if getattr(upscaler.net, "recurrent", False) and not quiet:
        log.warning("%s is recurrent: the export holds its single-frame path only (every frame is treated as "
                    "the first of a sequence, without the previous estimate)", upscaler.name)
    report = export_onnx(upscaler.net, output, opset=opset, capture=True)
    if as_json:
        emit_json({"model": upscaler.name, "scale": scale, "format": fmt, **report.to_dict()})
    elif not quiet:
        click.echo(f"wrote {report.path} ({upscaler.name} x{scale}, opset {report.opset}, "
                   "dynamic batch/height/width)")
        click.echo(f"parity vs PyTorch: max abs error {report.max_abs_error:.2e} (< {report.tolerance:g})")
