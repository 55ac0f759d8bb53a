"""Exponential moving average of a network's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen copy of ``net`` tracking ``decay * ema + (1 - decay) * weights``.

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the random initialisation. Buffers are copied as is.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.net = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        """Blend ``net``'s current weights in; ``step`` is the number of optimizer steps taken."""
        weight = 1.0 - min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.net.parameters()), [p.detach() for p in net.parameters()], weight)
        for ema_b, b in zip(self.net.buffers(), net.buffers()):
            ema_b.copy_(b)
