"""Optical flow primitives: backward warping, flow upsampling and a parameter-free Lucas-Kanade estimate.

Flow convention everywhere: ``flow[:, 0]`` horizontal, ``flow[:, 1]`` vertical, in pixels; pixel ``p``
of the current frame shows what the other frame shows at ``p + flow(p)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["warp", "upsample_flow", "lucas_kanade"]


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``img`` at ``p + flow(p)`` for every pixel ``p``.

    ``flow``: ``(N, 2, H, W)`` in pixels. Samples outside the image take the nearest border value.
    """
    n, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype)
    gx = (2 * (xs.view(1, 1, w) + flow[:, 0]) + 1) / w - 1
    gy = (2 * (ys.view(1, h, 1) + flow[:, 1]) + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def upsample_flow(flow: torch.Tensor, scale: int) -> torch.Tensor:
    """LR flow -> HR flow: bilinear resize (pixel-centre aligned), displacements times ``scale``."""
    return F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False) * scale


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2 * radius + 1)``-pixel square window (separable, edges replicated)."""
    k = 2 * radius + 1
    x = F.pad(x, (radius,) * 4, mode="replicate")
    return F.avg_pool2d(F.avg_pool2d(x, (1, k), stride=1), (k, 1), stride=1)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (xp[..., 1:-1, 2:] - xp[..., 1:-1, :-2]) / 2, (xp[..., 2:, 1:-1] - xp[..., :-2, 1:-1]) / 2


def _refine(cur: torch.Tensor, other: torch.Tensor, flow: torch.Tensor, radius: int, damping: float) -> torch.Tensor:
    """One Gauss-Newton step: solve the windowed 2x2 normal equations (summed over channels) per pixel."""
    moved = warp(other, flow)
    gx, gy = _gradients(0.5 * (moved + cur))
    diff = cur - moved
    terms = torch.stack([gx * gx, gx * gy, gy * gy, gx * diff, gy * diff], dim=1).sum(2)  # (N, 5, H, W)
    a, b, c, u, v = _box(terms, radius).unbind(1)
    a, c = a + damping, c + damping
    det = a * c - b * b
    return flow + torch.stack([(c * u - b * v) / det, (a * v - b * u) / det], dim=1)


def lucas_kanade(cur: torch.Tensor, other: torch.Tensor, levels: int = 2, iters: int = 2, radius: int = 7,
                 damping: float = 1e-3, max_flow: float = 8.0) -> torch.Tensor:
    """Flow ``(N, 2, H, W)`` from ``cur`` to ``other`` (``(N, C, H, W)`` in [0, 1]) by pyramidal Lucas-Kanade.

    ``levels`` pyramid levels (2x average pooling), ``iters`` Gauss-Newton steps per level on
    ``(2 * radius + 1)``-pixel square windows; ``damping`` regularises flat regions towards zero
    motion, and the result is clamped to ``max_flow`` pixels. Computed in float32 whatever the
    autocast state (the normal equations underflow in half precision); differentiable, no parameters.
    """
    with torch.autocast(cur.device.type, enabled=False):
        cur, other = cur.float(), other.float()
        pyramid = [(cur, other)]
        for _ in range(levels - 1):
            pyramid.append((F.avg_pool2d(pyramid[-1][0], 2, ceil_mode=True),
                            F.avg_pool2d(pyramid[-1][1], 2, ceil_mode=True)))
        flow = cur.new_zeros(cur.shape[0], 2, *pyramid[-1][0].shape[-2:])
        for c, o in reversed(pyramid):
            if flow.shape[-2:] != c.shape[-2:]:
                flow = F.interpolate(flow, size=c.shape[-2:], mode="bilinear", align_corners=False) * 2
            for _ in range(iters):
                flow = _refine(c, o, flow, radius, damping).clamp(-max_flow, max_flow)
        return flow
