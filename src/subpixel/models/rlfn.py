"""RLFN (Kong et al., "Residual Local Feature Network for Efficient Super-Resolution", NTIRE 2022).

Built from the paper for speed comparisons (random weights are fine): a 3x3 head, 6 residual local
feature blocks (RLFB) of 52 channels, a 3x3 conv with a long residual, and a 3x3 conv + PixelShuffle.
An RLFB is three conv3x3-ReLU with a local residual, a 1x1 conv and enhanced spatial attention (ESA):
1x1 reduce to 16 channels, strided 3x3 conv, 7x7/3 max-pool, 3x3 conv, bilinear upsampling back, plus a
1x1 of the reduced features, 1x1 expand, sigmoid gate. Unlike the paper's, the max-pool is padded by 3 and
a side under 3 is replicate-padded to 3 before the strided conv, so inputs of any size run (1x1 included);
the pooled grid is thus a little larger than the paper's (11x11 rather than 9x9 for a 64x64 input): no
parameters added and negligible work, but not the paper's exact function.

ESA pools over wide windows whose grid depends on the image size, so tiled and whole-image outputs
differ slightly whatever the padding; ``receptive_field`` is a generous bound on its reach.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from subpixel.models.base import SRNet
from subpixel.models.registry import register

__all__ = ["ESA", "RLFB", "RLFN", "RLFNPlain"]

# One ESA reaches about 26 LR pixels (stride 2 x pool 7/3 x conv 3x3 x bilinear); 32 leaves slack for
# the pooling grid drifting with the image size.
_ESA_REACH = 32


def _at_least_3(x: torch.Tensor) -> torch.Tensor:
    """Repeat the last row and column of ``x`` ``(N, C, H, W)`` so each side is ``max(side, 3)``.

    ``max(n, 3) == n + 2 // n`` for ``n >= 1``: no branch on the size, so an ONNX trace stays valid at every size.
    """
    for axis in (2, 3):
        n = x.shape[axis]
        last = x.narrow(axis, n - 1, 1)
        x = torch.cat([x, last, last], dim=axis).narrow(axis, 0, n + 2 // n)
    return x


class ESA(nn.Module):
    """Enhanced spatial attention (RFANet/RFDN), in RLFN's trimmed form (one conv after pooling)."""

    def __init__(self, channels: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, esa_channels, 1)
        self.local = nn.Conv2d(esa_channels, esa_channels, 1)
        self.down = nn.Conv2d(esa_channels, esa_channels, 3, stride=2)
        self.pooled = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.expand = nn.Conv2d(esa_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        far = self.pooled(F.max_pool2d(self.down(_at_least_3(reduced)), kernel_size=7, stride=3, padding=3))
        far = F.interpolate(far, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.expand(far + self.local(reduced)))


class RLFB(nn.Module):
    """Residual local feature block: 3 x (conv3x3, ReLU) + residual, then conv1x1 and ESA (``attention``)."""

    def __init__(self, channels: int, esa_channels: int = 16, attention: bool = True) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(3))
        self.mix = nn.Conv2d(channels, channels, 1) if attention else None
        self.esa = ESA(channels, esa_channels) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = F.relu(conv(out))
        out = out + x
        return out if self.mix is None or self.esa is None else self.esa(self.mix(out))


@register("rlfn", summary="RLFN (Kong et al. 2022, NTIRE efficient-SR winner): 6 RLFB x 52 ch, ESA")
class RLFN(SRNet):
    """RLFN: ``blocks`` RLFBs of ``channels`` features with ESA, sub-pixel reconstruction."""

    def __init__(self, scale: int, channels: int = 52, blocks: int = 6, esa_channels: int = 16,
                 attention: bool = True) -> None:
        super().__init__(scale)
        self.arch_args = {"channels": channels, "blocks": blocks, "esa_channels": esa_channels, "attention": attention}
        self.receptive_field = 3 + blocks * (3 + (_ESA_REACH if attention else 0))
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(RLFB(channels, esa_channels, attention) for _ in range(blocks)))
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        self.to_subpixels = nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        return self.shuffle(self.to_subpixels(self.body_tail(self.blocks(feat)) + feat))


@register("rlfn-plain", summary="RLFN's plain trunk (no ESA, no 1x1): the speed reference for an RLFN-sized network")
class RLFNPlain(RLFN):
    """RLFN without its attention: the same head, 6 blocks of 3 x conv3x3 (52 channels) with residuals,
    tail and sub-pixel output. Benchmarked beside RLFN, it shows what ESA costs and whether our RLFN
    runs as fast as a network of its size should."""

    def __init__(self, scale: int, channels: int = 52, blocks: int = 6) -> None:
        super().__init__(scale, channels, blocks, attention=False)
        self.arch_args = {"channels": channels, "blocks": blocks}
