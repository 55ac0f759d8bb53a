"""Pixel losses on RGB outputs in [0, 1]; add one by putting a factory into :data:`LOSSES`."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from subpixel.errors import SubpixelError

__all__ = ["CharbonnierLoss", "LOSSES", "build_loss"]


class CharbonnierLoss(nn.Module):
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: a smooth L1."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr).square() + self.eps**2).mean()


# name -> factory(**loss.args) returning a module ``(sr, hr) -> scalar``
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "l1": nn.L1Loss,
    "mse": nn.MSELoss,
    "charbonnier": CharbonnierLoss,
}


def build_loss(name: str, args: dict[str, Any]) -> nn.Module:
    """Instantiate loss ``name`` with ``args`` (bad arguments are a user error)."""
    try:
        factory = LOSSES[name]
    except KeyError:
        raise SubpixelError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
    try:
        return factory(**args)
    except TypeError as err:
        raise SubpixelError(f"loss.args for {name!r}: {err}") from None
