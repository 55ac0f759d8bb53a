"""Runtime backends. ``make_engine`` picks one: eager torch, ``torch.compile``, CUDA graphs or ONNX Runtime.

Every engine is callable on float32 ``(N, 3, h, w)`` tensors and has ``name``, ``device`` and
``precision``; see :class:`TorchEngine` and :class:`OnnxEngine`. :class:`FramePipeline` is not an
engine (``make_engine`` never makes one): it runs an engine over uint8 frames, host memory in and
out, with host-device copies overlapped on CUDA.
"""

from __future__ import annotations

import logging

import torch

from subpixel.engine.device import engine_device, torch_dtype
from subpixel.engine.frames import FramePipeline
from subpixel.engine.onnx_engine import OnnxEngine
from subpixel.engine.select import EngineChoice, choose_cpu_engine
from subpixel.engine.torch_engine import TorchEngine
from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet
from subpixel.models.interp import Interpolation

__all__ = ["make_engine", "ENGINES", "Engine", "TorchEngine", "OnnxEngine", "FramePipeline", "EngineChoice"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "torch-compile", "torch-cudagraph", "onnx")
_TORCH_MODE = {"torch": "eager", "torch-compile": "compile", "torch-cudagraph": "cudagraph"}
Engine = TorchEngine | OnnxEngine


def make_engine(net: SRNet, engine: str = "auto", device: str | torch.device = "auto", precision: str = "fp32",
                threads: int | None = None) -> Engine:
    """Build the runtime for ``net``.

    ``auto``: on the CPU at fp32, the faster of eager torch and ONNX Runtime (timed once per
    architecture and scale, see :mod:`subpixel.engine.select`); elsewhere eager torch.
    Interpolation built-ins always run on torch. ``onnx`` is CPU and fp32 only (device ``auto`` means
    cpu for it; another precision falls back to fp32 with a warning); ``torch-cudagraph`` needs CUDA.
    ``threads``: ONNX Runtime intra-op threads (torch uses its process-wide setting).
    """
    if engine not in ENGINES:
        raise SubpixelError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    torch_dtype(precision)  # validates the name
    dev = engine_device(engine, device)
    interpolation = isinstance(net, Interpolation)
    if interpolation and engine == "onnx":
        raise SubpixelError(f"{type(net).__name__.lower()} is interpolation and runs on torch; "
                            "use engine torch or auto")
    if engine == "auto":
        if dev.type == "cpu" and precision == "fp32" and not interpolation:
            return choose_cpu_engine(net, threads)
        engine = "torch"
    if engine == "onnx":
        if dev.type != "cpu":
            raise SubpixelError(f"the onnx engine runs on the CPU only, not {dev.type}; use device cpu")
        if precision != "fp32":
            log.warning("the onnx engine runs fp32 only; using fp32 instead of %s", precision)
        return OnnxEngine.from_net(net, threads)
    if engine == "torch-cudagraph" and dev.type != "cuda":
        raise SubpixelError("engine torch-cudagraph needs a CUDA GPU")
    return TorchEngine(net, dev, precision, mode=_TORCH_MODE[engine])
