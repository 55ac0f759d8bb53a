"""ESPCN (Shi et al., CVPR 2016): three convolutions in LR space, then a sub-pixel (PixelShuffle) output."""

from __future__ import annotations

import torch
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.models._ycbcr import LumaPath
from subpixel.models.base import SRNet
from subpixel.models.registry import register
from subpixel.ops.resize import imresize

__all__ = ["ESPCN"]

SKIPS = ("none", "nearest", "bicubic")


@register("espcn", summary="ESPCN (Shi et al. 2016): conv5x5-64, conv3x3-32, conv3x3 + pixel shuffle")
class ESPCN(SRNet):
    """ESPCN: conv 5x5 (64) tanh, conv 3x3 (32) tanh, conv 3x3 -> c*s^2, PixelShuffle(s).

    ``mode="rgb"`` maps RGB to RGB (c=3); ``mode="y"`` is the paper's form: the network sees only
    BT.601 luma, chroma is upscaled with MATLAB bicubic. ``skip`` (default ``"none"``, the paper)
    optionally adds a ``"nearest"`` or ``"bicubic"`` upscaled copy of the network's input.
    """

    receptive_field = 4  # 2 (5x5) + 1 (3x3) + 1 (3x3); bicubic chroma/skip needs 2

    def __init__(self, scale: int, mode: str = "rgb", skip: str = "none") -> None:
        super().__init__(scale)
        if mode not in ("rgb", "y"):
            raise SubpixelError(f"espcn mode must be 'rgb' or 'y', not {mode!r}")
        if skip not in SKIPS:
            raise SubpixelError(f"espcn skip must be one of {', '.join(SKIPS)}, not {skip!r}")
        channels = 3 if mode == "rgb" else 1
        self.arch_args = {"mode": mode, "skip": skip}
        self.skip = skip
        self.conv1 = nn.Conv2d(channels, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.luma = LumaPath() if mode == "y" else None
        tanh_gain = nn.init.calculate_gain("tanh")
        for conv, gain in ((self.conv1, tanh_gain), (self.conv2, tanh_gain), (self.conv3, 1.0)):
            nn.init.xavier_uniform_(conv.weight, gain=gain)
            nn.init.zeros_(conv.bias)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))
        if self.skip == "nearest":
            out = out + x.repeat_interleave(self.scale * self.scale, dim=1)
        out = self.shuffle(out)
        if self.skip == "bicubic":
            out = out + imresize(x, scale=self.scale).to(out.dtype)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x) if self.luma is None else self.luma(x, self._net, self.scale)
