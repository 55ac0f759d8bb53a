"""Built-in interpolation "models": MATLAB-compatible bicubic and Lanczos-3."""

from __future__ import annotations

import torch

from subpixel.models.base import SRNet
from subpixel.models.registry import register
from subpixel.ops.resize import imresize

__all__ = ["Interpolation", "Bicubic", "Lanczos"]


class Interpolation(SRNet):
    """A fixed resampling kernel, no parameters: what ``isinstance`` tells apart from a learned network."""

    kernel = "bicubic"
    receptive_field = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize_exact(x)

    def resize_exact(self, x: torch.Tensor) -> torch.Tensor:
        """Resize keeping ``x``'s dtype; integer images round after each pass, as MATLAB does."""
        return imresize(x, scale=self.scale, kernel=self.kernel)


@register("bicubic", scales=None, interpolation=True)
class Bicubic(Interpolation):
    """MATLAB imresize bicubic (the field's baseline)."""

    kernel = "bicubic"


@register("lanczos", scales=None, interpolation=True)
class Lanczos(Interpolation):
    """MATLAB imresize Lanczos-3."""

    kernel = "lanczos3"
    receptive_field = 4
