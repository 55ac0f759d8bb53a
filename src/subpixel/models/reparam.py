"""Structural re-parameterization: linear multi-branch convolutions that fold into one conv.

A :class:`FoldedConv` defines :meth:`~FoldedConv.folded` (the weight and bias of the single
convolution its branches sum to) and trains *as* that convolution: the same function and the same
gradients for every branch's parameters as running the branches, at the cost of one conv
(SESR's "efficient training"). :func:`fold_into` copies a trained network into its plain twin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from subpixel.models.base import SRNet

__all__ = ["FoldedConv", "fold_into", "identity_kernel"]


def identity_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A kernel shaped like ``weight`` (``(C, C, k, k)``) that passes each channel through unchanged."""
    k = weight.shape[-1]
    eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return F.pad(eye[:, :, None, None], [k // 2, k // 2, k // 2, k // 2])


class FoldedConv(nn.Module):
    """Base of linear multi-branch convolutions; subclasses set ``padding``/``groups`` and define ``folded``."""

    padding: int = 0
    groups: int = 1

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the single equivalent convolution."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # fold in full precision; the conv may use AMP
            weight, bias = self.folded()
        return F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), padding=self.padding, groups=self.groups)


def fold_into(plain: SRNet, trained: SRNet) -> SRNet:
    """Load ``trained``'s weights into ``plain``, its inference twin, folding each module with ``folded()``.

    ``plain`` must have an ``nn.Conv2d`` under the name of every foldable module of ``trained`` and the
    same parameters elsewhere; it takes ``trained``'s device, dtype and train/eval mode.
    """
    foldable = {name: m for name, m in trained.named_modules() if isinstance(m, FoldedConv)}
    prefixes = tuple(f"{name}." for name in foldable)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith(prefixes)}
    with torch.no_grad():
        for name, module in foldable.items():
            state[f"{name}.weight"], state[f"{name}.bias"] = module.folded()
    ref = next(trained.parameters())
    plain.to(device=ref.device, dtype=ref.dtype).load_state_dict(state)
    return plain.train(trained.training)
