"""Validation on whole images with the evaluation protocol (uint8 SR, BT.601 Y, ``scale`` pixels shaved)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.eval.protocol import check_size, score
from subpixel.ops.pixels import quantize

__all__ = ["evaluate_pairs", "to_uint8", "check_val_images"]


def check_val_images(paths: Sequence[Path], scale: int) -> None:
    """Refuse a held-out image too small to score (:func:`~subpixel.eval.protocol.check_size` on its
    size after cropping to a multiple of ``scale``), from the file headers: before any training, not at
    the first validation."""
    for path in paths:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except OSError as err:
            raise SubpixelError(f"cannot read {path}: {err}") from None
        try:
            check_size(path, (h - h % scale, w - w % scale), scale)
        except SubpixelError as err:
            raise SubpixelError(f"held-out validation image {err}") from None


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> uint8, clamped and rounded half up as the evaluation does
    (:func:`~subpixel.ops.pixels.quantize`)."""
    return quantize(x)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def evaluate_pairs(net: nn.Module, pairs: Iterable[tuple[torch.Tensor, ...]], scale: int,
                   device: torch.device | str) -> tuple[float, float]:
    """Mean Y-PSNR and Y-SSIM of ``net`` over ``(lr, hr, ...)`` pairs of uint8 ``(3, H, W)`` tensors.

    Each LR image is upscaled whole in float32; the network's train/eval mode is restored after.
    """
    was_training = net.training
    net.eval()
    results = []
    try:
        for pair in pairs:
            lr, hr = pair[0], pair[1]
            x = lr.to(device=device, dtype=torch.float32)[None] / 255.0
            sr = to_uint8(net(x)[0])
            results.append(score(_hwc(sr), _hwc(hr), scale))
    finally:
        net.train(was_training)
    if not results:
        raise ValueError("evaluate_pairs needs at least one pair")
    psnrs, ssims = zip(*results)
    return float(np.mean(psnrs)), float(np.mean(ssims))
