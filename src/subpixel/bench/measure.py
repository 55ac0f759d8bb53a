"""Timing and peak-memory measurements of one runtime at one job."""

from __future__ import annotations

import ctypes
import gc
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from subpixel.bench.jobs import Job
from subpixel.engine.frames import FramePipeline

__all__ = ["Speed", "PeakMemory", "measure_engine", "measure_host", "MEMORY_METHOD", "HOST_PEER_MEMORY"]

MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated over the first (cold, untimed) batch call: weights, input, output "
            "and activations, absolute",
    "cpu": "peak RSS growth over the first (cold, untimed) batch call of a fresh engine: VmHWM after minus VmRSS "
           "before, with free heap pages returned first (glibc malloc_trim) and VmHWM reset through "
           "/proc/self/clear_refs (Linux); includes allocator and ONNX Runtime arena growth, not the weights",
}
HOST_PEER_MEMORY = ("peak RSS growth over the first (cold, untimed) call of a freshly made peer, measured as for "
                    "our CPU engines (VmHWM after minus VmRSS before, glibc malloc_trim first, Linux); includes "
                    "allocator growth, not the weights")


@dataclass
class Speed:
    """Throughput at ``batch`` (frames/s, output megapixels/s), batch-1 latency, host-to-host frames/s, memory.

    ``samples`` is the number of batch-1 latency samples behind p50/p95 (``max_ms`` their maximum);
    ``cpu_per_wall`` is the process CPU time over the wall time of the timed calls (about the
    threads kept busy; well below ``threads`` on a loaded machine or while waiting on a GPU).
    ``timed`` says what fps and p50/p95 cover: ``tensors`` (float32 tensors already on the device,
    uint8 conversions and host copies excluded) or ``host-uint8`` (the whole uint8 RGB call, host
    to host: then ``fps`` is the host-to-host figure and ``h2h_fps`` repeats it).
    """

    batch: int
    fps: float
    out_mps: float
    p50_ms: float
    p95_ms: float
    h2h_fps: float | None
    peak_mem_mb: float | None
    samples: int | None = None
    max_ms: float | None = None
    cpu_per_wall: float | None = None
    timed: str = "tensors"


def _sync(device: torch.device) -> None:
    """Wait for queued kernels, so timings cover the work (CUDA and Apple's MPS run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _malloc_trim() -> None:
    """Return glibc's free heap pages to the OS, so memory reused by the next call shows up in RSS again."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Context manager measuring peak memory of the code it wraps (see :data:`MEMORY_METHOD`).

    ``mb`` is ``None`` where it cannot be measured (no /proc, or VmHWM cannot be reset).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self._base_kb: int | None = None

    def __enter__(self) -> PeakMemory:
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "cpu":
            gc.collect()
            _malloc_trim()
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS
                self._base_kb = _proc_status_kb("VmRSS")
            except OSError:
                self._base_kb = None
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._base_kb is not None:
            self.mb = max(_proc_status_kb("VmHWM") - self._base_kb, 0) / 1024


def _latencies(call: Callable[[], object], device: torch.device, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(samples) * 1e3, [50, 95])
    return float(p50), float(p95)


class _CpuClock:
    """Process CPU time and wall time of the code it wraps, summed over uses."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> _CpuClock:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += time.process_time() - self._cpu0
        self.wall += time.perf_counter() - self._wall0

    @property
    def ratio(self) -> float | None:
        return self.cpu / self.wall if self.wall > 0 else None


def measure_engine(engine: Callable[[torch.Tensor], torch.Tensor], device: torch.device, job: Job, batch: int,
                   iters: int, warmup: int) -> Speed:
    """Time ``engine`` on device-resident float32 frames (host copies excluded).

    Memory is taken on a first, untimed, cold batch call, which counts as the first of the
    ``warmup`` calls (with ``warmup`` 0 it is still made); then ``warmup - 1`` more untimed calls
    and ``iters`` timed ones at ``batch`` (CUDA events) give throughput; batch-1 calls give p50/p95 latency (with
    batch 1 the same samples give throughput). The host-to-host figure runs uint8 frames in and
    out through :class:`FramePipeline` (pinned memory and overlapped copies on CUDA).
    """
    gen = torch.Generator(device=device).manual_seed(0)
    one = torch.rand(1, 3, job.height, job.width, device=device, generator=gen)
    many = torch.rand(batch, 3, job.height, job.width, device=device, generator=gen) if batch > 1 else one
    with PeakMemory(device) as mem:
        engine(many)
    for _ in range(max(warmup - 1, 0)):
        engine(many)
    clock = _CpuClock()
    if batch > 1:
        with clock:
            fps = batch * iters / _batch_seconds(engine, many, device, iters)
        for _ in range(warmup):
            engine(one)
        with clock:
            lat = _latencies(lambda: engine(one), device, iters)
    else:
        with clock:
            lat = _latencies(lambda: engine(one), device, iters)
        fps = iters / sum(lat)
    p50, p95 = _percentiles_ms(lat)
    h2h = _host_to_host_fps(engine, device, job, batch, iters)
    return Speed(batch, fps, fps * job.out_megapixels, p50, p95, h2h, mem.mb, samples=len(lat),
                 max_ms=max(lat) * 1e3, cpu_per_wall=clock.ratio, timed="tensors")


def _batch_seconds(engine: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
                   iters: int) -> float:
    """Wall time of ``iters`` back-to-back calls (timed with CUDA events on the GPU)."""
    if device.type != "cuda":
        return sum(_latencies(lambda: engine(x), device, iters))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        engine(x)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def _host_to_host_fps(engine: Callable[[torch.Tensor], torch.Tensor], device: torch.device, job: Job, batch: int,
                      iters: int) -> float:
    frames = np.random.default_rng(0).integers(0, 256, (batch, job.height, job.width, 3), dtype=np.uint8)
    pipeline = FramePipeline(engine, job.scale, device, batch)
    rounds = max(2, math.ceil(iters / batch))
    if device.type == "cuda":
        for _ in pipeline.run([frames]):  # warm-up: pinned buffers, streams
            pass
    t0 = time.perf_counter()
    for _ in pipeline.run(itertools.repeat(frames, rounds)):
        pass
    return rounds * batch / (time.perf_counter() - t0)


def measure_host(fn: Callable[[np.ndarray], np.ndarray], job: Job, iters: int, warmup: int) -> Speed:
    """Time a CPU program taking one uint8 ``(H, W, 3)`` RGB frame (batch 1; host-to-host by nature, so its
    fps *is* its host-to-host figure). The first, cold call (memory) is untimed, as in :func:`measure_engine`."""
    frame = np.random.default_rng(0).integers(0, 256, (job.height, job.width, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    with PeakMemory(cpu) as mem:
        fn(frame)
    for _ in range(max(warmup - 1, 0)):
        fn(frame)
    with _CpuClock() as clock:
        lat = _latencies(lambda: fn(frame), cpu, iters)
    fps = iters / sum(lat)
    p50, p95 = _percentiles_ms(lat)
    return Speed(1, fps, fps * job.out_megapixels, p50, p95, fps, mem.mb, samples=len(lat), max_ms=max(lat) * 1e3,
                 cpu_per_wall=clock.ratio, timed="host-uint8")
