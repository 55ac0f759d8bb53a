"""Colour conversions used by evaluation and Y-channel models (ITU-R BT.601, as in MATLAB)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["BT601_MATRIX", "BT601_OFFSET", "rgb_to_y"]

# MATLAB rgb2ycbcr for [0, 255] inputs: ycbcr = BT601_OFFSET + BT601_MATRIX @ rgb / 255.
BT601_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
BT601_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_y(rgb: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Y of BT.601 YCbCr from RGB in [0, 255]; channels last for arrays, ``(..., 3, H, W)`` for tensors.

    Returns float (not rounded), in [16, 235].
    """
    if isinstance(rgb, torch.Tensor):
        w = torch.as_tensor(BT601_MATRIX[0] / 255.0, dtype=rgb.dtype if rgb.is_floating_point() else torch.float64,
                            device=rgb.device)
        x = rgb.to(w.dtype)
        return 16.0 + (x * w.view(3, 1, 1)).sum(dim=-3)
    x = np.asarray(rgb, dtype=np.float64)
    return 16.0 + x @ (BT601_MATRIX[0] / 255.0)

