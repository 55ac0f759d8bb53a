"""``--engine auto`` on the CPU: time eager PyTorch and ONNX Runtime once, keep the faster.

The decision is cached in-process per architecture (class and parameter count, so variants of
one class stay apart), scale and thread count; a cached decision still builds a fresh engine for
the network at hand. A decision made without ONNX Runtime (its export failed) is not cached: the
next ``auto`` tries the export again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from subpixel.engine.onnx_engine import OnnxEngine
from subpixel.engine.torch_engine import TorchEngine
from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet

__all__ = ["EngineChoice", "choose_cpu_engine", "PROBE_SHAPE"]

log = logging.getLogger(__name__)

PROBE_SHAPE = (1, 3, 96, 96)
_CHOICES: dict[tuple, EngineChoice] = {}


@dataclass(frozen=True)
class EngineChoice:
    """Which engine ``auto`` picked, the probe times (ms, best of a few) and why an engine was left out."""

    engine: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


def _key(net: SRNet, threads: int | None) -> tuple:
    cls = type(net)
    return f"{cls.__module__}.{cls.__qualname__}", net.num_parameters(), net.scale, threads


def _probe_ms(engine: TorchEngine | OnnxEngine, x: torch.Tensor, repeats: int = 3) -> float:
    engine(x)  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine(x)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def choose_cpu_engine(net: SRNet, threads: int | None = None) -> TorchEngine | OnnxEngine:
    """The faster of eager fp32 PyTorch and ONNX Runtime for ``net`` on the CPU (``engine.selection`` says why)."""
    key = _key(net, threads)
    choice = _CHOICES.get(key)
    if choice is not None:
        engine: TorchEngine | OnnxEngine | None = None
        if choice.engine == "onnx":
            try:  # the choice was made for other weights of the same architecture: these may not export
                engine = OnnxEngine.from_net(net, threads)
            except SubpixelError as err:
                choice = EngineChoice("torch", note=f"onnx not considered: {err}")
                log.info(choice.note)
        engine = engine or TorchEngine(net, torch.device("cpu"))
        engine.selection = choice
        return engine
    x = torch.rand(PROBE_SHAPE, generator=torch.Generator().manual_seed(0))
    candidates: dict[str, TorchEngine | OnnxEngine] = {"torch": TorchEngine(net, torch.device("cpu"))}
    note = ""
    try:
        candidates["onnx"] = OnnxEngine.from_net(net, threads)
    except SubpixelError as err:
        note = f"onnx not considered: {err}"
        log.info(note)
    timings = {name: round(_probe_ms(engine, x), 3) for name, engine in candidates.items()}
    best = min(timings, key=timings.__getitem__)
    choice = EngineChoice(best, timings, note)
    if "onnx" in candidates:
        _CHOICES[key] = choice
    log.info("engine auto on cpu: %s (%s)", best, ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
    candidates[best].selection = choice
    return candidates[best]

