"""PyTorch runtime: eager, ``torch.compile``d or CUDA-graph replayed; fp32/fp16/bf16 with fp32 fallback."""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from subpixel.engine.device import cpu_has_native_bf16, torch_dtype
from subpixel.models.base import SRNet

if TYPE_CHECKING:
    from subpixel.engine.select import EngineChoice

__all__ = ["TorchEngine", "CudaGraphs", "TORCH_MODES"]

log = logging.getLogger(__name__)

TORCH_MODES = {"eager": "torch", "compile": "torch-compile", "cudagraph": "torch-cudagraph"}
Forward = Callable[[torch.Tensor], torch.Tensor]


class CudaGraphs:
    """Replays ``fn`` from CUDA graphs captured once per input shape/dtype/strides (LRU, ``max_graphs``).

    Each graph has its own memory pool, so replays of different shapes never clobber each other;
    the returned tensor is a copy of the graph's static output and stays valid after later calls.
    """

    def __init__(self, fn: Forward, max_graphs: int = 8) -> None:
        self.fn = fn
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = OrderedDict()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.stride(), x.device)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x)
            self._graphs[key] = entry
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        static_in, static_out, graph = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def _capture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]:
        static_in = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up (cuDNN autotuning, lazy allocations) off the capture
            for _ in range(3):
                self.fn(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        return static_in, static_out, graph


class TorchEngine:
    """Runs an :class:`SRNet` on one device; callable on float32 ``(N, 3, h, w)`` tensors.

    ``mode``: ``eager``, ``compile`` (``torch.compile``) or ``cudagraph`` (CUDA only: one captured
    graph per input shape, see :class:`CudaGraphs`). ``channels_last`` stores weights and
    activations NHWC (not on MPS). fp16/bf16 run a reduced-precision copy of the network (the
    fp32 weights are kept); a precision that raises or yields non-finite outputs on a probe, or
    later overflows on a finite input that fp32 computes finitely, falls back to fp32 for the rest
    of the engine's life, with a warning (a non-finite input's output is returned as it is).
    Outputs are float32 on ``device``.
    """

    def __init__(
        self,
        net: SRNet,
        device: torch.device,
        precision: str = "fp32",
        channels_last: bool = True,
        mode: str = "eager",
    ) -> None:
        if mode not in TORCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(TORCH_MODES)}, not {mode!r}")
        if mode == "cudagraph" and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.dtype = torch_dtype(precision)
        self.precision = precision
        self.device = device
        self.mode = mode
        self.name = TORCH_MODES[mode]
        self.selection: EngineChoice | None = None  # set when ``auto`` selection chose this engine
        self.channels_last = channels_last and device.type != "mps"
        self.net = net.eval().to(device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._lowp: SRNet | None = None
        if device.type == "cpu" and (self.dtype == torch.float16 or (self.dtype == torch.bfloat16
                                                                     and not cpu_has_native_bf16())):
            log.warning("%s on this CPU is emulated (no native support) and usually slower than fp32", precision)
        if self.dtype != torch.float32:
            self._lowp = copy.deepcopy(self.net).to(self.dtype)
        self._fn = self._wrap(self.net if self._lowp is None else self._lowp)
        if self.dtype != torch.float32 and not self._precision_works():
            self._fallback(f"precision {precision} unsupported on {device} (probe failed)")

    def _wrap(self, module: SRNet) -> Forward:
        if self.mode == "compile":
            return torch.compile(module)  # static kernels first; a second input shape recompiles dynamic
        if self.mode == "cudagraph":
            return CudaGraphs(module)
        return module

    def _precision_works(self) -> bool:
        probe = torch.rand(1, 3, 16, 16, device=self.device)
        assert self._lowp is not None
        try:
            with torch.no_grad():
                out = self._lowp(self._prepare(probe))
        except (RuntimeError, NotImplementedError, TypeError):
            return False
        return bool(torch.isfinite(out).all())

    def _fallback(self, why: str) -> None:
        log.warning("%s; using fp32", why)
        self.precision, self.dtype, self._lowp = "fp32", torch.float32, None
        self._fn = self._wrap(self.net)

    def _prepare(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(self.device, non_blocking=True).to(dtype=dtype or self.dtype, memory_format=fmt)

    @torch.no_grad()  # not inference_mode: callers may update outputs in place
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(self._prepare(x)).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(x)
        if self.dtype == torch.float32 or bool(torch.isfinite(out).all()) or not bool(torch.isfinite(x).all()):
            return out
        with torch.no_grad():
            ref = self.net(self._prepare(x, torch.float32))
        if not bool(torch.isfinite(ref).all()):
            return out  # fp32 overflows too: the input, not the precision, is to blame
        self._fallback(f"{self.precision} output non-finite (overflowing) on {self.device} where fp32's is finite")
        return ref
