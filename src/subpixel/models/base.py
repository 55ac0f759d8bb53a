"""The network contract shared by every architecture."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SRNet"]


class SRNet(nn.Module):
    """A super-resolution network: ``(N, 3, h, w)`` RGB in [0, 1] -> ``(N, 3, s*h, s*w)``.

    Subclasses set ``scale`` and ``receptive_field`` (LR pixels of context needed on each
    side for an output pixel to be exact; tiled inference pads tiles by at least this much).
    """

    scale: int
    receptive_field: int = 8

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def widest_activation(self) -> int:
        """Largest channel count of any convolution output (for memory estimates)."""
        widths = [m.out_channels for m in self.modules() if isinstance(m, nn.Conv2d)]
        return max(widths, default=3)

    def deploy(self) -> SRNet:
        """The inference form (re-parameterizable architectures fold their branches); default: self."""
        return self

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
