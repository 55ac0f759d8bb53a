"""MATLAB ``imresize``-compatible bicubic resizing for NumPy arrays and torch tensors.

MATLAB's algorithm, reproduced here:

* output size is ``ceil(scale * input)`` per axis;
* the cubic kernel (a = -0.5) is stretched by ``1/scale`` when downscaling (antialiasing);
* source coordinates are ``u = x/scale + 0.5 (1 - 1/scale)``, borders mirror symmetrically;
* the axis with the smaller scale is resized first (height first on a tie);
* integer images are rounded back to their dtype after *each* 1-D pass.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["imresize", "imresize_np", "upscale_bicubic", "cubic", "output_size", "contributions", "apply_taps",
           "round_to", "is_polyphase"]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def lanczos3(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's Lanczos-3 kernel."""
    eps = torch.finfo(x.dtype).eps
    num = torch.sin(torch.pi * x) * torch.sin(torch.pi * x / 3) + eps
    den = (torch.pi**2 * x * x / 3) + eps
    return (num / den) * (x.abs() < 3)


_KERNELS = {"bicubic": (cubic, 4.0), "lanczos3": (lanczos3, 6.0)}


def output_size(size: int, scale: float) -> int:
    """MATLAB output length for one axis: ``ceil(size * scale)`` in doubles, as MATLAB computes it (50 x 1.1 is
    55.00000000000001: 56)."""
    return math.ceil(size * scale)


@lru_cache(maxsize=64)
def contributions(
    in_len: int, out_len: int, scale: float, antialias: bool, kernel: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(out_len, P)`` and float64 weights ``(out_len, P)`` for one axis."""
    fn, kernel_width = _KERNELS[kernel]
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * fn(dist * scale) if shrink else fn(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror out-of-range indices (MATLAB's 'symmetric' padding), 0-based.
    idx = idx.long() - 1
    period = 2 * in_len
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= in_len, period - 1 - idx, idx)
    keep = weights.abs().sum(dim=0) > 0
    return idx[:, keep].contiguous(), weights[:, keep].contiguous()


def _resize_axis(
    x: torch.Tensor, axis: int, out_len: int, scale: float, antialias: bool, kernel: str
) -> torch.Tensor:
    """Resize ``x`` (floating point) along ``axis`` to ``out_len``; memory stays ~2x the output."""
    idx, w = contributions(x.shape[axis], out_len, float(scale), antialias, kernel)
    return apply_taps(x, axis, idx, w)


def apply_taps(x: torch.Tensor, axis: int, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_p x[idx[:, p]] * w[:, p]`` along ``axis`` (floating ``x``), summed in tap order: the exact
    values of :func:`imresize`'s pass for the taps of :func:`contributions` (or a slice of them)."""
    idx = idx.to(x.device)
    w = w.to(device=x.device, dtype=x.dtype)
    shape = [1] * x.dim()
    shape[axis] = idx.shape[0]
    out = None
    for p in range(idx.shape[1]):
        term = x.index_select(axis, idx[:, p]) * w[:, p].view(shape)
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


@lru_cache(maxsize=8)
def _polyphase_kernel(scale: int) -> torch.Tensor:
    """``(s*s, 1, 5, 5)`` float64 weights: output phase ``(py, px)`` of MATLAB bicubic x``scale``.

    Output pixel ``s*i + p`` samples the input at ``i + d_p`` with ``d_p = (p + 0.5)/s - 0.5``, so
    its taps are ``i-2 .. i+2`` weighted by ``cubic(d_p - k)`` (they already sum to one).
    """
    offsets = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5
    taps = cubic(offsets[:, None] - torch.arange(-2, 3, dtype=torch.float64)[None, :])  # (s, 5)
    return torch.einsum("ai,bj->abij", taps, taps).reshape(scale * scale, 1, 5, 5)


def _span(x: torch.Tensor, axis: int, start: int | None, stop: int | None) -> torch.Tensor:
    """``x[start:stop]`` along ``axis``, clamped to its length like Python (and ONNX ``Slice``)."""
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _mirror_pad2(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Pad two samples each side of ``axis`` with MATLAB's 'symmetric' mirror (edge repeated).

    Built from clamped slices only, so a side of 1 (padded with its one sample) needs no size-dependent
    branch and an ONNX trace holds for every size.
    """
    first, last = _span(x, axis, 0, 1), _span(x, axis, -1, None)
    head = _span(torch.cat([first, _span(x, axis, 0, 2)], dim=axis), axis, -2, None).flip(axis)
    tail = _span(torch.cat([_span(x, axis, -2, None), last], dim=axis), axis, 0, 2).flip(axis)
    return torch.cat([head, x, tail], dim=axis)


def _is_whole(value: object) -> bool:
    """Whether ``value`` is a finite whole real number (``8``, ``8.0``, ``numpy.int64(8)``; ``True`` is not)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and float(value).is_integer())


def upscale_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB bicubic upscaling of a floating tensor ``(..., H, W)`` by an integer ``scale``.

    The same values as :func:`imresize` (to float rounding), computed as one 5x5 polyphase
    convolution and a pixel shuffle: fast on any device and exportable to ONNX with dynamic
    height and width, because nothing depends on the input size (a side of 1 included).
    """
    if not x.dtype.is_floating_point or not _is_whole(scale) or scale < 2 or x.dim() < 2 or min(x.shape[-2:]) < 1:
        raise ValueError("upscale_bicubic needs a floating tensor with H, W >= 1 and an integer scale >= 2, "
                         f"got a {x.dtype} tensor of shape {tuple(x.shape)} and scale {scale!r}")
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    weight = _polyphase_kernel(int(scale)).to(device=x.device, dtype=compute)
    planes = x.to(compute).flatten(0, -3).unsqueeze(1) if x.dim() > 2 else x.to(compute)[None, None]
    padded = _mirror_pad2(_mirror_pad2(planes, 2), 3)
    out = F.pixel_shuffle(F.conv2d(padded, weight), int(scale))
    return out.reshape(*x.shape[:-2], out.shape[-2], out.shape[-1]).to(x.dtype)


def round_to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """MATLAB-style conversion of floating ``x``: round half away from zero, saturate to ``dtype``'s range.

    The values stay floating (cast them with ``.to(dtype)``). Exact: the fraction ``x - trunc(x)`` of a float is
    representable, so 0.49999999999999994 rounds to 0 and -2.5 to -3 (``floor(x + 0.5)`` gives 1 and -2).
    """
    info = torch.iinfo(dtype)
    whole = torch.trunc(x)
    away = (x - whole).abs_().ge_(0.5).to(x.dtype).mul_(torch.sign(x))
    return whole.add_(away).clamp_(info.min, info.max)


def is_polyphase(dtype: torch.dtype, kernel: str, scales: tuple[float, float]) -> bool:
    """Whether :func:`imresize` uses :func:`upscale_bicubic`: floating bicubic by one whole factor >= 2."""
    return dtype.is_floating_point and kernel == "bicubic" and scales[0] == scales[1] >= 2 and scales[0].is_integer()


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    kernel: str = "bicubic",
    fast: bool = True,
) -> torch.Tensor:
    """Bicubic-resize the last two axes (H, W) of a tensor exactly as MATLAB does.

    ``x`` may be any shape ``(..., H, W)``, on any device. Integer tensors are computed in
    float64 and rounded back to their dtype after each 1-D pass (MATLAB's uint8 behaviour);
    floating tensors keep their dtype (float16/bfloat16 are computed in float32).
    Give either ``scale`` (same for both axes) or ``size=(out_h, out_w)``; ``kernel`` is
    ``"bicubic"`` (default) or ``"lanczos3"``. ``fast``: floating bicubic by one whole factor runs as one
    polyphase convolution, the same values for finite input; its zero taps spread a NaN or infinity
    further than MATLAB's, which ``fast=False`` reproduces (no data-dependent check here: networks trace it).
    """
    if kernel not in _KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(_KERNELS)}")
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if in_h == 0 or in_w == 0:
        raise ValueError("cannot resize an empty image")
    if size is None:
        assert scale is not None
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        scales = (float(scale), float(scale))
        size = (output_size(in_h, scale), output_size(in_w, scale))
    else:
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_whole(n) and n >= 1 for n in size)):
            raise ValueError(f"size must be two whole numbers >= 1 (out_h, out_w), got {size!r}")
        size = (int(size[0]), int(size[1]))
        scales = (size[0] / in_h, size[1] / in_w)
    integer = not x.dtype.is_floating_point
    if fast and is_polyphase(x.dtype, kernel, scales):
        return upscale_bicubic(x, int(scales[0]))
    orig_dtype = x.dtype
    if integer:
        work = x.to(torch.float64)
    elif x.dtype in (torch.float16, torch.bfloat16):
        work = x.to(torch.float32)
    else:
        work = x
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for k in order:
        axis = x.dim() - 2 + k
        if work.shape[axis] == size[k] and scales[k] == 1:
            continue
        work = _resize_axis(work, axis, size[k], scales[k], antialias, kernel)
        if integer:
            work = round_to(work, orig_dtype)
    if work is x:  # scale 1: no pass ran; never hand back the caller's own tensor
        return x.clone()
    return work.to(orig_dtype)


def imresize_np(
    img: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    kernel: str = "bicubic",
) -> np.ndarray:
    """NumPy front-end of :func:`imresize` for ``(H, W)`` or ``(H, W, C)`` arrays (non-finite values spread as far
    as MATLAB's taps reach them)."""
    arr = np.ascontiguousarray(img)
    t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if img.ndim == 3:
        t = t.permute(2, 0, 1)
    elif img.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    finite = not t.dtype.is_floating_point or bool(torch.isfinite(t).all())
    out = imresize(t, scale=scale, size=size, antialias=antialias, kernel=kernel, fast=finite)
    if img.ndim == 3:
        out = out.permute(1, 2, 0)
    return out.contiguous().numpy()
