"""Host-to-host batched frames: uint8 ``(N, H, W, 3)`` in, uint8 ``(N, sH, sW, 3)`` out.

On CUDA, batches go through pinned host buffers, and two side streams upload the next batch and
download the previous one while the current batch computes (double-buffered, non-blocking
copies ordered by events). Elsewhere batches simply run one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from subpixel.ops.pixels import quantize

__all__ = ["FramePipeline", "to_uint8_nhwc"]

Engine = Callable[[torch.Tensor], torch.Tensor]


def to_uint8_nhwc(y: torch.Tensor) -> torch.Tensor:
    """Float ``(N, 3, H, W)`` in [0, 1] -> uint8 ``(N, H, W, 3)``, rounded as for images
    (:func:`~subpixel.ops.pixels.quantize`); ``y`` is left as it is."""
    return quantize(y).permute(0, 2, 3, 1).contiguous()


def _to_float_nchw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [0, 1] (channels-last memory, no copy of layout)."""
    return frames.permute(0, 3, 1, 2).float().div_(255)


class _Slot:
    """One of two in-flight batches: pinned host and device buffers plus the events ordering them."""

    def __init__(self, batch: int, hw: tuple[int, int], scale: int, device: torch.device) -> None:
        h, w = hw
        self.host_in = torch.empty((batch, h, w, 3), dtype=torch.uint8, pin_memory=True)
        self.host_out = torch.empty((batch, h * scale, w * scale, 3), dtype=torch.uint8, pin_memory=True)
        self.dev_in = torch.empty((batch, h, w, 3), dtype=torch.uint8, device=device)
        self.uploaded, self.computed, self.downloaded = (torch.cuda.Event() for _ in range(3))
        self.count = 0


class FramePipeline:
    """Runs ``engine`` over batches of uint8 RGB frames, host memory in and out.

    ``scale``: the engine's upscaling factor (sizes the output buffers). ``batch``: frames per
    engine call for :meth:`__call__` (batches given to :meth:`run` may be smaller).
    """

    def __init__(self, engine: Engine, scale: int, device: torch.device, batch: int = 8) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.engine, self.scale, self.device, self.batch = engine, scale, device, batch

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """All of ``frames`` ``(N, H, W, 3)`` uint8, ``batch`` at a time -> ``(N, sH, sW, 3)`` uint8."""
        chunks = (frames[i:i + self.batch] for i in range(0, len(frames), self.batch))
        outs = list(self.run(chunks))
        h, w = frames.shape[1:3]
        return np.concatenate(outs) if outs else np.empty((0, h * self.scale, w * self.scale, 3), np.uint8)

    def run(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Upscale each uint8 ``(n, H, W, 3)`` batch (n <= ``batch``, one frame size per run), in order."""
        if self.device.type == "cuda":
            yield from self._run_cuda(iter(batches))
            return
        for frames in batches:
            x = _to_float_nchw(torch.from_numpy(np.ascontiguousarray(frames)))
            yield to_uint8_nhwc(self.engine(x).to("cpu")).numpy()

    def _run_cuda(self, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        first = next(batches, None)
        if first is None:
            return
        hw = first.shape[1:3]
        slots = [_Slot(self.batch, hw, self.scale, self.device) for _ in range(2)]
        upload, download = torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)
        compute = torch.cuda.current_stream(self.device)

        def stage(slot: _Slot, frames: np.ndarray) -> None:
            if frames.shape[1:3] != hw or len(frames) > self.batch:
                raise ValueError(f"batches must be at most {self.batch} frames of {hw}, got {frames.shape}")
            slot.uploaded.synchronize()  # the previous upload from host_in is done: safe to overwrite
            slot.count = len(frames)
            slot.host_in[:slot.count].numpy()[...] = frames
            with torch.cuda.stream(upload):
                upload.wait_event(slot.computed)  # the previous compute has finished reading dev_in
                slot.dev_in[:slot.count].copy_(slot.host_in[:slot.count], non_blocking=True)
                slot.uploaded.record(upload)

        def collect(slot: _Slot, count: int) -> np.ndarray:
            slot.downloaded.synchronize()
            return slot.host_out[:count].numpy().copy()

        stage(slots[0], first)
        pending: tuple[_Slot, int] | None = None
        current: np.ndarray | None = first
        i = 0
        while current is not None:
            slot, other = slots[i % 2], slots[(i + 1) % 2]
            current = next(batches, None)
            if current is not None:
                stage(other, current)  # upload batch i+1 while batch i computes
            compute.wait_event(slot.uploaded)
            out = to_uint8_nhwc(self.engine(_to_float_nchw(slot.dev_in[:slot.count])))
            slot.computed.record(compute)
            with torch.cuda.stream(download):
                download.wait_event(slot.computed)
                slot.host_out[:slot.count].copy_(out, non_blocking=True)
                out.record_stream(download)
                slot.downloaded.record(download)
            if pending is not None:
                yield collect(*pending)  # batch i-1, downloaded while batch i computed
            pending = slot, slot.count
            i += 1
        assert pending is not None
        yield collect(*pending)
