"""ONNX Runtime (CPUExecutionProvider) runtime for exported networks."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort
import torch

from subpixel.engine.onnx_export import export_onnx
from subpixel.errors import OutOfMemory, SubpixelError, first_line
from subpixel.models.base import SRNet
from subpixel.ops.tiling import is_oom_message

if TYPE_CHECKING:
    from subpixel.engine.select import EngineChoice

__all__ = ["OnnxEngine"]


class OnnxEngine:
    """Runs an ONNX SR model on the CPU; callable on float32 ``(N, 3, h, w)`` tensors like :class:`TorchEngine`.

    ``threads``: ONNX Runtime intra-op threads (``None``: its default, one per physical core).
    Always fp32.
    """

    name = "onnx"
    precision = "fp32"

    def __init__(self, model: str | Path, threads: int | None = None) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4  # fatal only: a run error reaches the user once, as a SubpixelError
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.device = torch.device("cpu")
        self.selection: EngineChoice | None = None  # set when ``auto`` selection chose this engine
        self._input = self.session.get_inputs()[0].name

    @classmethod
    def from_net(cls, net: SRNet, threads: int | None = None) -> OnnxEngine:
        """Export ``net`` (with the parity check) to a temporary file and load it."""
        with tempfile.TemporaryDirectory(prefix="subpixel-onnx-") as tmp:
            # the session holds the model; the file can go
            return cls(export_onnx(net, Path(tmp) / "model.onnx").path, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            (out,) = self.session.run(None, {self._input: arr})
        except Exception as err:  # ONNX Runtime's own exception types, with its multi-line messages
            kind = OutOfMemory if is_oom_message(str(err)) else SubpixelError  # tiled runs halve the tile
            raise kind(f"ONNX Runtime cannot run an input of shape {tuple(x.shape)}: {first_line(err)}") from err
        return torch.from_numpy(out)
