"""SESR (Bhardwaj et al., "Collapsible Linear Blocks for Super-Efficient Super Resolution", MLSys 2022).

Training form: each convolution is a *collapsible linear block*, a kxk conv expanding to ``p`` channels
followed by a 1x1 projection back, with no nonlinearity in between and a short identity residual where
the shapes match. Layout, as in the paper and its authors' reference network::

    x - 0.5 -> 5x5 block (f) ---------------------------------+  long residual
            -> m x [3x3 block + short residual -> PReLU] -> (+) -> 5x5 block (c*s^2)
            -> + x (each channel repeated s^2 times: a nearest-neighbour skip) -> depth-to-space

x4 uses two x2 depth-to-space steps (as the paper does), x2/x3 one step. :meth:`SESR.collapse` folds
every block and its short residual into one kxk conv; the long residuals and the input skip are
additions across nonlinearities and stay. The paper's final clip to [0, 1] is left to the pipeline
(outputs are clipped when converted), so training gradients are not cut.
"""

from __future__ import annotations

import torch
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.models._ycbcr import LumaPath
from subpixel.models.base import SRNet
from subpixel.models.registry import register
from subpixel.models.reparam import FoldedConv, fold_into, identity_kernel

__all__ = ["LinearBlock", "SESR", "SESRM5", "SESRM11", "SESRXL"]


class LinearBlock(FoldedConv):
    """kxk conv to ``expansion`` channels, 1x1 conv back to ``out_ch``, optional identity residual.

    Runs folded (:class:`~subpixel.models.reparam.FoldedConv`): the paper's efficient training.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expansion: int, residual: bool) -> None:
        super().__init__()
        if residual and in_ch != out_ch:
            raise ValueError("a residual linear block needs in_ch == out_ch")
        self.expand = nn.Conv2d(in_ch, expansion, kernel, padding=kernel // 2)
        self.project = nn.Conv2d(expansion, out_ch, 1)
        self.residual = residual
        self.padding = kernel // 2

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the single kxk conv equal to this block (residual included)."""
        proj = self.project.weight[:, :, 0, 0]
        weight = torch.einsum("op,pikl->oikl", proj, self.expand.weight)
        bias = proj @ self.expand.bias + self.project.bias
        return (weight + identity_kernel(weight) if self.residual else weight), bias


class SESR(SRNet):
    """SESR with ``features`` (f) channels and ``blocks`` (m) 3x3 linear blocks; subclasses fix f and m.

    ``expansion`` (p) is the linear blocks' inner width; ``mode`` is ``"rgb"`` (RGB in/out) or ``"y"``
    (luma only, chroma by bicubic); ``collapsed=True`` builds the plain inference network.
    """

    live_maps = 4  # ~3.5 maps of the widest layer measured at once
    features = 16
    blocks = 5

    def __init__(self, scale: int, expansion: int = 256, mode: str = "rgb", collapsed: bool = False) -> None:
        super().__init__(scale)
        if mode not in ("rgb", "y"):
            raise SubpixelError(f"sesr mode must be 'rgb' or 'y', not {mode!r}")
        self.arch_args = {"expansion": expansion, "mode": mode, "collapsed": collapsed}
        self.receptive_field = 2 + self.blocks + 2  # 5x5, m 3x3, 5x5 (chroma bicubic needs 2)
        channels = 3 if mode == "rgb" else 1
        f = self.features

        def block(in_ch: int, out_ch: int, kernel: int, residual: bool) -> nn.Module:
            if collapsed:
                return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
            return LinearBlock(in_ch, out_ch, kernel, expansion, residual)

        self.head = block(channels, f, 5, False)
        self.body = nn.ModuleList(block(f, f, 3, True) for _ in range(self.blocks))
        self.acts = nn.ModuleList(nn.PReLU(f) for _ in range(self.blocks))
        self.tail = block(f, channels * scale * scale, 5, False)
        steps = [2, 2] if scale == 4 else [scale]
        self.shuffle = nn.Sequential(*(nn.PixelShuffle(s) for s in steps))
        self.luma = LumaPath() if mode == "y" else None

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        feat0 = feat = self.head(x - 0.5)
        for conv, act in zip(self.body, self.acts):
            feat = act(conv(feat))
        out = self.tail(feat + feat0) + x.repeat_interleave(self.scale * self.scale, dim=1)
        return self.shuffle(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x) if self.luma is None else self.luma(x, self._net, self.scale)

    def deploy(self) -> SESR:
        """The collapsed network (``self`` when already collapsed)."""
        return self if self.arch_args["collapsed"] else self.collapse()

    def collapse(self) -> SESR:
        """A new plain network (``collapsed=True``) computing the same function; ``self`` is unchanged."""
        plain = type(self)(self.scale, **{**self.arch_args, "collapsed": True})
        return fold_into(plain, self)


@register("sesr-m5", summary="SESR-M5 (Bhardwaj et al. 2022): f=16, m=5 collapsible linear blocks")
class SESRM5(SESR):
    """SESR-M5: 16 features, 5 linear blocks."""

    features, blocks = 16, 5


@register("sesr-m11", summary="SESR-M11 (Bhardwaj et al. 2022): f=16, m=11 collapsible linear blocks")
class SESRM11(SESR):
    """SESR-M11: 16 features, 11 linear blocks."""

    features, blocks = 16, 11


@register("sesr-xl", summary="SESR-XL (Bhardwaj et al. 2022): f=32, m=11 collapsible linear blocks")
class SESRXL(SESR):
    """SESR-XL: 32 features, 11 linear blocks."""

    features, blocks = 32, 11
