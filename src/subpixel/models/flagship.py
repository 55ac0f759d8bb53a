"""Sprint: subpixel's own efficient SR family, built from what made efficient-SR winners fast.

* Re-parameterizable convs (RepVGG/ECBSR/RLFN): every dense conv trains as 3x3 + 1x1 (+ identity) and
  :meth:`Sprint.reparameterize` folds it into one plain 3x3, so inference pays for a single conv.
* SPAN-style parameter-free attention: a block gates itself, ``x + (h + x) * (sigmoid(h) - 0.5)``; the
  symmetric (odd) activation keeps the gate centred, nothing pools (tiles are exact), and the outer
  identity (ours) keeps signal and gradients from shrinking geometrically through the stacked gates.
* A large-kernel depthwise mixer (CFSR): 7x7 depthwise (a 3x3 depthwise branch folded into it) and a
  1x1, as a residual, for reach at little cost.
* GPU-friendly: no normalisation, no channel attention/global pooling, static shapes only, so
  torch.compile, CUDA graphs and ONNX export work with dynamic H, W. A long feature residual, a
  nearest-neighbour image skip and a PixelShuffle output finish the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet
from subpixel.models.registry import register
from subpixel.models.reparam import FoldedConv, fold_into, identity_kernel

__all__ = ["RepConv3x3", "RepDepthwise", "SprintBlock", "Sprint", "SprintS"]


class RepConv3x3(FoldedConv):
    """3x3 + 1x1 (+ identity) branches, ``channels`` in and out; trains and folds as one 3x3 conv."""

    padding = 1

    def __init__(self, channels: int, identity: bool = True) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.identity = identity

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the equivalent 3x3 conv."""
        weight = self.conv3.weight + F.pad(self.conv1.weight, [1, 1, 1, 1])
        if self.identity:
            weight = weight + identity_kernel(weight)
        return weight, self.conv3.bias + self.conv1.bias


class RepDepthwise(FoldedConv):
    """kxk + 3x3 depthwise branches; trains and folds as one kxk depthwise conv."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.large = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.small = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.padding, self.groups = kernel // 2, channels

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the equivalent kxk depthwise conv."""
        pad = (self.large.kernel_size[0] - 3) // 2
        return self.large.weight + F.pad(self.small.weight, [pad] * 4), self.large.bias + self.small.bias


class SprintBlock(nn.Module):
    """conv3x3-SiLU, residual large-kernel depthwise mixer, conv3x3, residual parameter-free self-gating."""

    def __init__(self, channels: int, mixer_kernel: int, reparameterized: bool) -> None:
        super().__init__()
        if reparameterized:
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
            self.mixer = nn.Conv2d(channels, channels, mixer_kernel, padding=mixer_kernel // 2, groups=channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        else:
            self.conv1 = RepConv3x3(channels)
            self.mixer = RepDepthwise(channels, mixer_kernel)
            self.conv2 = RepConv3x3(channels, identity=False)  # h starts small: blocks start near identity
        self.point = nn.Conv2d(channels, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        h = h + self.point(self.act(self.mixer(h)))
        h = self.conv2(h)
        return x + (h + x) * (torch.sigmoid(h) - 0.5)


@register("sprint", summary="Sprint (ours): re-parameterized 3x3s, self-gating, 7x7 depthwise mixer")
class Sprint(SRNet):
    """Sprint: ``blocks`` :class:`SprintBlock` of ``channels`` features between a 3x3 head and a sub-pixel tail.

    ``reparameterized=True`` builds the folded inference structure (what :meth:`reparameterize` returns).
    """

    live_maps = 6  # a block holds its input, h, the mixer's and the gate's temporaries (~5.4 maps measured)

    def __init__(self, scale: int, channels: int = 48, blocks: int = 6, mixer_kernel: int = 7,
                 reparameterized: bool = False) -> None:
        super().__init__(scale)
        if not isinstance(mixer_kernel, int) or isinstance(mixer_kernel, bool) or mixer_kernel < 3 \
                or mixer_kernel % 2 == 0:
            raise SubpixelError(f"mixer_kernel must be odd and >= 3, got {mixer_kernel}")
        self.arch_args = {"channels": channels, "blocks": blocks, "mixer_kernel": mixer_kernel,
                          "reparameterized": reparameterized}
        # head, body tail and output convs reach 1 each; a block reaches 1 + mixer_kernel // 2 + 1
        self.receptive_field = 3 + blocks * (2 + mixer_kernel // 2)
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(SprintBlock(channels, mixer_kernel, reparameterized) for _ in range(blocks)))
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1) if reparameterized else RepConv3x3(channels)
        self.to_subpixels = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = self.body_tail(self.blocks(feat)) + feat
        out = self.to_subpixels(feat) + x.repeat_interleave(self.scale * self.scale, dim=1)
        return self.shuffle(out)

    def deploy(self) -> Sprint:
        """The re-parameterized network (``self`` when already folded)."""
        return self if self.arch_args["reparameterized"] else self.reparameterize()

    def reparameterize(self) -> Sprint:
        """A new plain network (``reparameterized=True``) computing the same function; ``self`` is unchanged."""
        plain = type(self)(self.scale, **{**self.arch_args, "reparameterized": True})
        return fold_into(plain, self)


@register("sprint-s", summary="Sprint-S (ours): 32 channels, 4 blocks")
class SprintS(Sprint):
    """Sprint-S: the small Sprint (32 channels, 4 blocks)."""

    def __init__(self, scale: int, channels: int = 32, blocks: int = 4, mixer_kernel: int = 7,
                 reparameterized: bool = False) -> None:
        super().__init__(scale, channels, blocks, mixer_kernel, reparameterized)
