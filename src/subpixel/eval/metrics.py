"""PSNR and SSIM exactly as the SR literature computes them (Wang et al. SSIM, MATLAB-style)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "shave", "SSIM_WINDOW"]

SSIM_WINDOW = 11  # the Gaussian window's side


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Crop ``border`` pixels from each side of the first two axes."""
    if border <= 0:
        return img
    return img[border:-border, border:-border, ...]


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two same-shape arrays."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / mse))


@lru_cache(maxsize=4)
def _gaussian_1d(size: int = SSIM_WINDOW, sigma: float = 1.5) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor) -> torch.Tensor:
    """'valid' 11x11 Gaussian filtering, done separably (the 2-D window is an outer product)."""
    g = _gaussian_1d()
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM (11x11 Gaussian, sigma 1.5, K1=0.01, K2=0.03, 'valid' windows) of 2-D arrays.

    For ``(H, W, C)`` inputs the per-channel SSIMs are averaged. Both sides need at least
    :data:`SSIM_WINDOW` (11) pixels: a ``ValueError`` otherwise.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its window), "
                         f"got shape {a.shape}")
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x = torch.from_numpy(np.asarray(a, np.float64))[None, None]
    y = torch.from_numpy(np.asarray(b, np.float64))[None, None]
    stats = _filter(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mu_x, mu_y, exx, eyy, exy = stats
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())
