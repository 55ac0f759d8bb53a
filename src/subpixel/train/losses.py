"""Pixel losses on RGB outputs in [0, 1]; add one by putting a factory into :data:`LOSSES`.

``channels="y"`` scores only BT.601 luma, for networks that super-resolve Y and leave chroma to
bicubic (an RGB loss would also charge them for the chroma they cannot change).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from subpixel.errors import SubpixelError, first_line
from subpixel.ops.color import BT601_MATRIX
from subpixel.train.config import ConfigError

__all__ = ["CharbonnierLoss", "LumaLoss", "LOSSES", "build_loss"]


class CharbonnierLoss(nn.Module):
    """Mean of ``sqrt((sr - hr)^2 + eps^2)``: a smooth L1."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr).square() + self.eps**2).mean()


class LumaLoss(nn.Module):
    """``loss`` applied to the BT.601 luma of ``(N, 3, H, W)`` RGB outputs and targets (scaled to [0, 1])."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss
        self.register_buffer("weights", torch.tensor(BT601_MATRIX[0] / 255.0, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        w = self.weights.to(device=sr.device, dtype=sr.dtype)
        return self.loss((sr * w).sum(1, keepdim=True), (hr.to(sr.dtype) * w).sum(1, keepdim=True))


# name -> factory(**loss.args) returning a module ``(sr, hr) -> scalar``
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "l1": nn.L1Loss,
    "mse": nn.MSELoss,
    "charbonnier": CharbonnierLoss,
}


def build_loss(name: str, args: dict[str, Any], channels: str = "rgb") -> nn.Module:
    """Instantiate loss ``name`` with ``args`` on ``channels`` (``rgb`` or ``y``); bad arguments, and arguments
    that make it anything but a finite scalar, are :class:`ConfigError`."""
    try:
        factory = LOSSES[name]
    except KeyError:
        raise SubpixelError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
    if channels not in ("rgb", "y"):
        raise SubpixelError(f"loss channels must be 'rgb' or 'y', not {channels!r}")
    try:
        loss = factory(**args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"loss.args for {name!r}: {err}") from None
    loss = LumaLoss(loss) if channels == "y" else loss
    _check_scalar(loss, name)
    return loss


def _check_scalar(loss: nn.Module, name: str) -> None:
    """Refuse arguments that make ``loss`` anything but a finite scalar (e.g. ``reduction: none``, ``eps: .inf``)."""
    try:
        value = loss(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5))
    except (TypeError, ValueError, RuntimeError) as err:  # arguments the factory stores without checking
        raise ConfigError(f"loss.args for {name!r}: {first_line(err)}") from None
    if value.dim() != 0 or not torch.isfinite(value):
        got = f"shape {tuple(value.shape)}" if value.dim() else f"{value.item()}"
        raise ConfigError(f"loss.args for {name!r}: the loss must be a finite scalar, got {got}")
