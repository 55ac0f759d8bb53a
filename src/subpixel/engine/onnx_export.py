"""Export an :class:`SRNet` to ONNX (dynamic batch, height and width) and check it against PyTorch."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from subpixel.errors import SubpixelError, first_line
from subpixel.io.atomic import replacing
from subpixel.models.base import SRNet
from subpixel.models.interp import Interpolation

__all__ = ["ExportReport", "export_onnx", "DEFAULT_OPSET", "MIN_OPSET", "PARITY_TOLERANCE", "PARITY_SHAPES",
           "PARITY_INPUT", "INPUT_CONTRACT", "OUTPUT_CONTRACT"]

log = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-3
# two batch sizes, odd non-square sizes and a side of 1 each way, so a shape baked into the graph is caught
PARITY_SHAPES = ((1, 3, 32, 48), (2, 3, 45, 27), (1, 3, 1, 13), (1, 3, 11, 1))
PARITY_INPUT = "uniform [0,1) noise, seed 0, shapes " + ", ".join("x".join(map(str, s)) for s in PARITY_SHAPES)
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
INPUT_CONTRACT = f"{INPUT_NAME}: float32 NCHW RGB (not BGR) in [0, 1]; dynamic batch, height and width"
OUTPUT_CONTRACT = (f"{OUTPUT_NAME}: float32 NCHW RGB, (N, 3, scale*H, scale*W); not clamped, values slightly "
                   "outside [0, 1] occur: clamp before casting to uint8")
RECURRENT_GRAPH = "single-frame path of a recurrent model"
_EXPORT_LOCK = threading.Lock()  # torch.onnx.export and the console capture are process-wide: one at a time


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matches eager PyTorch."""

    path: str
    opset: int
    max_abs_error: float
    tolerance: float
    checked_shapes: list[list[int]]
    parity_input: str = PARITY_INPUT
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME

    def to_dict(self) -> dict:
        return asdict(self)


def _max_abs_error(net: SRNet, path: Path) -> float:
    """Largest |ONNX Runtime - PyTorch| over :data:`PARITY_SHAPES` (inf when outputs differ in shape)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in PARITY_SHAPES:
        x = torch.rand(shape, generator=gen)
        with torch.inference_mode():
            ref = net(x).numpy()
        (out,) = session.run(None, {INPUT_NAME: x.numpy()})
        if out.shape != ref.shape:
            return float("inf")
        err = float(np.max(np.abs(out.astype(np.float64) - ref)))
        worst = max(worst, err if np.isfinite(err) else float("inf"))
    return worst


def export_onnx(net: SRNet, path: str | Path, opset: int = DEFAULT_OPSET, capture: bool = False,
                metadata: Mapping[str, str] | None = None) -> ExportReport:
    """Write ``net`` (fp32, CPU copy; ``net`` itself is untouched) to ``path`` as ONNX.

    Input ``lr`` ``(N, 3, H, W)`` and output ``sr`` ``(N, 3, sH, sW)`` have dynamic N, H and W (see
    :data:`INPUT_CONTRACT` and :data:`OUTPUT_CONTRACT`: RGB in [0, 1] in, RGB out, not clamped). The file's
    metadata (:func:`_metadata`) holds the version, model, scale and I/O contract, then ``metadata``. The
    file is validated with ``onnx.checker`` and run by ONNX Runtime at :data:`PARITY_SHAPES`; a max abs
    error >= :data:`PARITY_TOLERANCE` against eager PyTorch raises :class:`SubpixelError`. It is written under a
    temporary name beside ``path`` and renamed over it only once it passes, so a failure leaves ``path``
    as it was. ``capture`` (for command-line use) takes the exporter's console output off the terminal,
    at the file-descriptor level, so for the whole process while it runs; it is logged at debug level
    on failure. Exports from several threads run one after another (the exporter has global state).
    """
    if isinstance(net, Interpolation):
        raise SubpixelError(f"{type(net).__name__.lower()} is interpolation, not a network: nothing to export")
    if opset < MIN_OPSET:
        raise SubpixelError(f"ONNX opset must be >= {MIN_OPSET}, got {opset}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder is needed, no permission...
        raise SubpixelError(f"cannot create the output folder {path.parent}: {err.strerror or err}") from None
    model = copy.deepcopy(net).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    captured = io.StringIO()
    try:
        with replacing(path) as tmp:
            with _EXPORT_LOCK, _captured_output(captured) if capture else contextlib.nullcontext():
                error = _export_and_compare(model, tmp, opset, _metadata(net, metadata or {}))
            if not error < PARITY_TOLERANCE:
                raise SubpixelError(f"ONNX export of {type(net).__name__} failed the parity check: max abs error "
                                    f"{error:.3g} vs eager PyTorch (must be < {PARITY_TOLERANCE:g})")
    except SubpixelError:
        if captured.getvalue().strip():
            log.debug("ONNX exporter output:\n%s", captured.getvalue())
        raise
    return ExportReport(str(path), opset, error, PARITY_TOLERANCE, [list(s) for s in PARITY_SHAPES])


def _metadata(net: SRNet, extra: Mapping[str, str]) -> dict[str, str]:
    """The file's metadata: subpixel version, model, scale, I/O contract, the graph of a recurrent model, ``extra``."""
    from subpixel import __version__  # here: the package imports this module

    meta = {"subpixel_version": __version__, "model": type(net).__name__.lower(), "scale": str(net.scale),
            "input": INPUT_CONTRACT, "output": OUTPUT_CONTRACT}
    if getattr(net, "recurrent", False):
        meta |= {"recurrent": "false", "graph": RECURRENT_GRAPH}
    return meta | dict(extra)


def _annotate(path: Path, metadata: Mapping[str, str]) -> None:
    """Give the file at ``path`` its metadata, a one-line contract as doc string and 3 output channels."""
    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = model.graph.doc_string = (
        f"{metadata.get('model', '')} x{metadata.get('scale', '?')}: {INPUT_NAME} float32 NCHW RGB in [0, 1] -> "
        f"{OUTPUT_NAME} float32 NCHW RGB, not clamped (clamp before uint8)")
    channels = model.graph.output[0].type.tensor_type.shape.dim[1]
    channels.Clear()  # the exporter leaves it symbolic (DepthToSpace's output)
    channels.dim_value = 3
    onnx.save(model, str(path))


def _export_and_compare(model: SRNet, path: Path, opset: int, metadata: Mapping[str, str]) -> float:
    """Export ``model`` to ``path`` with ``metadata`` (:func:`_annotate`), validate the file and return
    :func:`_max_abs_error`."""
    name = type(model).__name__
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            # dynamo=False: the torch.export-based exporter needs onnxscript and static-ish shapes
            torch.onnx.export(model, (torch.rand(1, 3, 24, 24),), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                              do_constant_folding=True)
        _annotate(path, metadata)
        onnx.checker.check_model(str(path))
    except Exception as err:  # the exporter raises many types for unsupported operators
        raise SubpixelError(f"ONNX export of {name} failed: {first_line(err)}") from err
    try:
        return _max_abs_error(model, path)
    except Exception as exc:  # ONNX Runtime's own exception types
        raise SubpixelError(f"ONNX Runtime cannot run the export of {name}: {first_line(exc)}") from exc


@contextlib.contextmanager
def _captured_output(sink: io.StringIO) -> Iterator[None]:
    """Send stdout and stderr, Python's and native code's alike (file descriptors 1 and 2), to ``sink``."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as spool:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(spool.fileno(), 1)
            os.dup2(spool.fileno(), 2)
            with contextlib.redirect_stdout(spool), contextlib.redirect_stderr(spool):
                yield
        finally:
            spool.flush()
            for fd, copy_of in zip((1, 2), saved):
                os.dup2(copy_of, fd)
                os.close(copy_of)
            spool.seek(0)
            sink.write(spool.read())
