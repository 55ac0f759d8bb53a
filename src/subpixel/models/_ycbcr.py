"""BT.601 YCbCr for networks that super-resolve luma only (the Y-channel form of the papers).

Values live in [0, 1]: MATLAB's ``rgb2ycbcr`` of a [0, 255] image divided by 255.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from subpixel.ops.color import BT601_MATRIX, BT601_OFFSET
from subpixel.ops.resize import imresize

__all__ = ["LumaPath"]


class LumaPath(nn.Module):
    """Runs a luma network on Y and MATLAB-bicubic on Cb/Cr; constants are non-persistent buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fwd", torch.tensor(BT601_MATRIX / 255.0, dtype=torch.float32), persistent=False)
        inverse = np.linalg.inv(BT601_MATRIX / 255.0)
        self.register_buffer("inv", torch.tensor(inverse, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.tensor(BT601_OFFSET / 255.0, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def to_ycbcr(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> YCbCr in [0, 1]."""
        return torch.einsum("ij,njhw->nihw", self.fwd.to(rgb.dtype), rgb) + self.offset.to(rgb.dtype)

    def to_rgb(self, ycc: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_ycbcr` (unclipped)."""
        return torch.einsum("ij,njhw->nihw", self.inv.to(ycc.dtype), ycc - self.offset.to(ycc.dtype))

    def forward(self, rgb: torch.Tensor, luma_net: Callable[[torch.Tensor], torch.Tensor], scale: int
                ) -> torch.Tensor:
        """Super-resolve ``rgb`` with ``luma_net`` on ``(N, 1, h, w)`` Y and bicubic chroma."""
        ycc = self.to_ycbcr(rgb)
        y = luma_net(ycc[:, :1])
        chroma = imresize(ycc[:, 1:], scale=scale).to(y.dtype)
        return self.to_rgb(torch.cat([y, chroma], dim=1))
