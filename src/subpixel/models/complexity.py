"""Model complexity: parameter counts and multiply-accumulates (MACs) for a given output size."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

if TYPE_CHECKING:
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
    """MACs of the computation producing one ``out_hw`` image (default 1280x720).

    The input is ``ceil(out / scale)`` per axis (427x240 at x3). Counts Conv2d, ConvTranspose2d and
    Linear multiply-accumulates (bias additions and elementwise ops are ignored) of the inference form
    (:meth:`~subpixel.models.base.SRNet.deploy`: re-parameterized branches count once) in
    :meth:`~subpixel.models.base.SRNet.per_frame_forward`: a recurrent video network's steady-state
    frame (FRVSR's with its flow network), not the cheaper first frame. The pass runs with ``meta`` tensors
    standing in for the input, weights and buffers: no memory or time is spent on real tensors (beyond
    folding a re-parameterizable network's branches), and ``net`` itself is not copied or changed; forward hooks
    already on its layers see the pass too (on meta tensors).
    """
    from subpixel.models.base import PerFrame  # here: base imports this module

    h, w = (math.ceil(n / net.scale) for n in out_hw)
    probe = PerFrame(net.deploy())
    stand_ins = {name: torch.empty_like(t, device="meta")
                 for name, t in [*probe.named_parameters(), *probe.named_buffers()]}
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, inputs, output)

    handles = [module.register_forward_hook(hook) for module in probe.modules()
               if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            functional_call(probe, stand_ins, (torch.empty(1, 3, h, w, device="meta"),))
    finally:
        for handle in handles:
            handle.remove()
    return total
