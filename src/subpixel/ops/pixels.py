"""Float pixels in [0, 1] to integer ones, by one rule everywhere: clamped, scaled to the integer type's
maximum (255 or 65535) and rounded half up, ``floor(clamp(x, 0, 1) * top + 0.5)`` computed in float32.

:func:`quantize` works on tensors on their own device (no host sync); :func:`quantize_np` is its NumPy twin
and gives the same values. Layout is left as it is: callers permute before or after.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import DTypeLike

__all__ = ["quantize", "quantize_np"]

_TOPS = {torch.uint8: 255.0, torch.uint16: 65535.0}


def quantize(x: torch.Tensor, dtype: torch.dtype = torch.uint8, *, inplace: bool = False) -> torch.Tensor:
    """Float ``x`` in [0, 1] -> ``dtype`` (``torch.uint8`` or ``torch.uint16``), same shape and device:
    clamped, scaled to 255/65535 and rounded half up (a value exactly between two levels goes to the upper).

    Computed in float32. ``inplace``: ``x`` (float32) may be overwritten as scratch, so no float copy is
    made. NaN has no defined result.
    """
    top = _TOPS.get(dtype)
    if top is None:
        raise ValueError(f"dtype must be torch.uint8 or torch.uint16, got {dtype}")
    y = x.float()  # no copy when x is float32
    y = y.mul_(top) if inplace or y is not x else y.mul(top)
    # Clamping after the scaling gives the same values as before it; the cast truncates, which is the
    # floor once the values are clamped non-negative.
    return y.add_(0.5).clamp_(0.0, top).to(dtype)


def quantize_np(arr: np.ndarray, dtype: DTypeLike = np.uint8) -> np.ndarray:
    """:func:`quantize` for NumPy arrays: the same values (float32 arithmetic), uint8 or uint16 out.
    ``arr`` is not modified. NaN has no defined result."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    top = np.float32(np.iinfo(dtype).max)
    y = np.asarray(arr, dtype=np.float32) * top
    y += np.float32(0.5)
    return np.clip(y, 0, top, out=y).astype(dtype)
