"""Tiled inference: run any network over any image size with bounded memory.

Each tile is the core region plus ``overlap`` LR pixels on interior sides; its input crop adds
``pad`` pixels of context (at least the model's receptive field) so every output pixel sees the
same neighbourhood as in an untiled run. Overlapping outputs are blended with linear feathering.
When memory runs out (any device or engine) the tile size is halved and the image is run again. Images resized
by MATLAB's rules (bicubic, Lanczos; any size) are tiled without overlap and give the untiled pixels exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from subpixel.ops.resize import apply_taps, contributions, imresize, is_polyphase, round_to

__all__ = ["TileInfo", "tiled_forward", "tiled_imresize", "tile_size_for_budget", "is_oom_error", "is_oom_message",
           "MIN_TILE"]

Contributions = tuple[torch.Tensor, torch.Tensor]  # (taps, weights) per output sample of one axis

MIN_TILE = 16


@dataclass
class TileInfo:
    """What a tiled run did: the tile size finally used and how often it was halved."""

    tile: int
    halvings: int = 0
    tiles_run: int = 0


_OOM_TEXT = ("out of memory", "allocate memory", "failed to allocate", "bad_alloc", "bad allocation")


def is_oom_message(text: str) -> bool:
    """Whether an error message says memory ran out (CUDA/MPS, CPU allocators, ONNX Runtime, C++'s bad_alloc)."""
    return any(phrase in text.lower() for phrase in _OOM_TEXT)


def is_oom_error(err: BaseException) -> bool:
    """True for memory running out: CUDA/MPS out-of-memory, a CPU allocator's failure, Python's MemoryError
    (and :class:`~subpixel.errors.OutOfMemory`, an ONNX Runtime allocation failure)."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and is_oom_message(str(err))


def tile_size_for_budget(budget_bytes: int, widest_channels: int, scale: int, bytes_per_value: int = 4,
                         live_maps: int = 3) -> int:
    """LR tile side so that a tile's activations fit ``budget_bytes`` (a conservative estimate).

    Counts ``live_maps`` feature maps of the widest layer alive at once plus input and output images.
    """
    per_pixel = bytes_per_value * (live_maps * widest_channels + 3 + 3 * scale * scale * 2)
    side = int(math.sqrt(max(budget_bytes, 1) / per_pixel))
    return max(MIN_TILE, side // 8 * 8)


def _spans(length: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, tile):
        yield start, min(start + tile, length)


def _ramp(n: int, lead: int, trail: int, device: torch.device) -> torch.Tensor:
    """1-D feather weights: rising over ``lead`` samples, falling over ``trail`` samples."""
    w = torch.ones(n, device=device)
    lead, trail = min(lead, n), min(trail, n)
    if lead:
        w[:lead] = torch.arange(1, lead + 1, device=device, dtype=torch.float32) / (lead + 1)
    if trail:
        w[n - trail:] = torch.arange(trail, 0, -1, device=device, dtype=torch.float32) / (trail + 1)
    return w


def _run_once(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    pad: int,
    overlap: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[torch.Tensor, int]:
    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * scale, w * scale, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=x.device)
    ys, xs = list(_spans(h, tile)), list(_spans(w, tile))
    total, done = len(ys) * len(xs), 0
    for y0, y1 in ys:
        for x0, x1 in xs:
            # output region (with overlap on interior sides) and its input crop (with context)
            oy0, oy1 = max(y0 - overlap, 0), min(y1 + overlap, h)
            ox0, ox1 = max(x0 - overlap, 0), min(x1 + overlap, w)
            iy0, iy1 = max(oy0 - pad, 0), min(oy1 + pad, h)
            ix0, ix1 = max(ox0 - pad, 0), min(ox1 + pad, w)
            y_out = fn(x[:, :, iy0:iy1, ix0:ix1]).float()
            if y_out.device != x.device:
                y_out = y_out.to(x.device)
            cy, cx = (oy0 - iy0) * scale, (ox0 - ix0) * scale
            hh, ww = (oy1 - oy0) * scale, (ox1 - ox0) * scale
            y_out = y_out[:, :, cy:cy + hh, cx:cx + ww]
            wy = _ramp(hh, (y0 - oy0) * scale * 2 if y0 > 0 else 0, (oy1 - y1) * scale * 2 if y1 < h else 0,
                       x.device)
            wx = _ramp(ww, (x0 - ox0) * scale * 2 if x0 > 0 else 0, (ox1 - x1) * scale * 2 if x1 < w else 0,
                       x.device)
            wt = (wy[:, None] * wx[None, :])[None, None]
            sy, sx = oy0 * scale, ox0 * scale
            out[:, :, sy:sy + hh, sx:sx + ww].addcmul_(y_out, wt)
            weight[:, :, sy:sy + hh, sx:sx + ww].add_(wt)
            done += 1
            if progress is not None:
                progress(done, total)
    out.div_(weight)
    return out, total


def tiled_forward(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    pad: int,
    overlap: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, TileInfo]:
    """Apply ``fn`` (LR tile -> SR tile) over ``x`` ``(N, C, H, W)`` in tiles of ``tile`` LR pixels.

    ``x`` stays where it is (e.g. host memory); ``fn`` may move tiles to another device.
    Returns the float32 result on ``x``'s device and a :class:`TileInfo`. Out-of-memory errors
    halve the tile (down to ``MIN_TILE``) and restart the image.
    """
    if tile < 1:
        raise ValueError("tile must be positive")
    overlap = min(overlap, max(tile // 4, 0))
    info = TileInfo(tile=tile)
    while True:
        try:
            out, info.tiles_run = _run_once(fn, x, scale, info.tile, pad, overlap, progress)
            return out, info
        except Exception as err:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not is_oom_error(err) or info.tile // 2 < MIN_TILE:
                raise
            info.tile //= 2
            info.halvings += 1
            overlap = min(overlap, info.tile // 4)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def tiled_imresize(x: torch.Tensor, size: tuple[int, int], kernel: str, tile: int,
                   progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, TileInfo]:
    """:func:`~subpixel.ops.resize.imresize` of a ``(C, H, W)`` tensor (integer or floating) to ``size``, one
    output tile (``tile`` input pixels square) at a time, so its passes take memory per tile.

    Bit for bit the untiled result: every output pixel uses the whole image's taps and weights (sliced,
    never recomputed for a crop) in the same order and precision, integers rounded after each pass. An image
    within one tile, and floating bicubic by one whole factor (imresize's convolution, which a crop does not
    reproduce bit for bit; its peak is a few times the output's), are resized whole. The result is
    channels-last in memory (``.permute(1, 2, 0)`` is contiguous) when tiled.
    """
    if tile < 1:
        raise ValueError("tile must be positive")
    c, h, w = x.shape
    scales = (size[0] / h, size[1] / w)
    if (h <= tile and w <= tile) or is_polyphase(x.dtype, kernel, scales):
        if progress is not None:
            progress(1, 1)
        return imresize(x, size=size, kernel=kernel), TileInfo(tile=max(h, w), tiles_run=1)
    rows, cols = (_axis_taps(n, m, f, kernel) for n, m, f in zip((h, w), size, scales))
    out = torch.empty(*size, c, dtype=x.dtype).permute(2, 0, 1)
    spans = [(ys, xs) for ys in _spans(size[0], max(1, round(tile * scales[0])))
             for xs in _spans(size[1], max(1, round(tile * scales[1])))]
    for done, ((y0, y1), (x0, x1)) in enumerate(spans, 1):
        out[:, y0:y1, x0:x1] = _resize_tile(x, (rows[0][y0:y1], rows[1][y0:y1]), (cols[0][x0:x1], cols[1][x0:x1]),
                                            scales[0] <= scales[1])
        if progress is not None:
            progress(done, len(spans))
    return out, TileInfo(tile=tile, tiles_run=len(spans))


def _axis_taps(in_len: int, out_len: int, scale: float, kernel: str) -> Contributions:
    """One axis's taps and weights as :func:`~subpixel.ops.resize.imresize` uses them (an axis it leaves
    alone: each sample itself, weight 1, which changes no value)."""
    if in_len == out_len and scale == 1:
        return torch.arange(in_len)[:, None], torch.ones(in_len, 1, dtype=torch.float64)
    return contributions(in_len, out_len, scale, True, kernel)


def _resize_tile(x: torch.Tensor, rows: Contributions, cols: Contributions, height_first: bool) -> torch.Tensor:
    """One output tile: the two 1-D passes in imresize's order, over the input crop their taps reach."""
    r0, c0 = int(rows[0].min()), int(cols[0].min())
    crop = x[:, r0:int(rows[0].max()) + 1, c0:int(cols[0].max()) + 1]
    integer = not x.dtype.is_floating_point
    work = crop.to(torch.float64 if integer else torch.float32 if x.dtype in (torch.float16, torch.bfloat16)
                   else x.dtype)
    passes = [(1, rows[0] - r0, rows[1]), (2, cols[0] - c0, cols[1])]
    for axis, idx, weights in passes if height_first else passes[::-1]:
        work = apply_taps(work, axis, idx, weights)
        work = round_to(work, x.dtype) if integer else work
    return work.to(x.dtype)
