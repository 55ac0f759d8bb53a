"""The network contract shared by every architecture."""

from __future__ import annotations

import torch
from torch import nn

from subpixel.models.complexity import count_params

__all__ = ["SRNet", "PerFrame"]


class SRNet(nn.Module):
    """A super-resolution network: ``(N, 3, h, w)`` RGB in [0, 1] -> ``(N, 3, s*h, s*w)``.

    Subclasses set ``scale`` and ``receptive_field`` (LR pixels of context needed on each
    side for an output pixel to be exact; tiled inference pads tiles by at least this much), and
    ``live_maps`` where a forward pass holds more than three maps of the widest layer at once (the tile
    memory budget counts them).
    """

    scale: int
    receptive_field: int = 8
    live_maps: int = 3

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
        """Parameter count (weights and biases, trainable or not): :func:`~subpixel.models.complexity.count_params`."""
        return count_params(self)

    def per_frame_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The computation one output image costs in steady use, run on input ``x``; what
        :func:`~subpixel.models.complexity.count_macs` measures. Default: :meth:`forward`; a recurrent video
        network runs a later frame of a sequence (its first frame may skip work)."""
        return self(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PerFrame(SRNet):
    """``net``'s :meth:`~SRNet.per_frame_forward` as a network's forward: a recurrent network's work per frame in
    steady use (FRVSR's flow network, warp and SR network), what :func:`~subpixel.models.complexity.count_macs`
    counts and ``subpixel bench`` times. ``net`` is held, not copied: its parameters are this module's."""

    def __init__(self, net: SRNet) -> None:
        super().__init__(net.scale)
        self.net, self.receptive_field, self.live_maps = net, net.receptive_field, net.live_maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.per_frame_forward(x)
