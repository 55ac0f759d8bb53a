"""Model complexity: parameter counts and multiply-accumulates (MACs) for a given output size."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from subpixel.models.base import SRNet

__all__ = ["count_params", "count_macs"]


def count_params(net: nn.Module) -> int:
    """Number of parameters (weights and biases)."""
    return sum(p.numel() for p in net.parameters())


def _layer_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        return inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
    assert isinstance(module, nn.Linear)
    return output.numel() * module.in_features


def count_macs(net: SRNet, out_hw: tuple[int, int] = (720, 1280)) -> int:
    """MACs of one forward pass producing an ``out_hw`` image (default 1280x720).

    The input is ``ceil(out / scale)`` per axis (427x240 at x3). Counts Conv2d, ConvTranspose2d and
    Linear multiply-accumulates (bias additions and elementwise ops are ignored) of the inference form
    (:meth:`~subpixel.models.base.SRNet.deploy`: re-parameterized branches count once). The pass runs on
    a copy of ``net`` on the ``meta`` device: no memory or time is spent on real tensors.
    """
    h, w = (math.ceil(n / net.scale) for n in out_hw)
    probe = copy.deepcopy(net.deploy()).to("meta")
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, inputs, output)

    for module in probe.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.register_forward_hook(hook)
    with torch.no_grad():
        probe(torch.empty(1, 3, h, w, device="meta"))
    return total
