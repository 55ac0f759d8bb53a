"""The user-facing model object: ``subpixel.load(...).upscale(image)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from subpixel.engine.device import resolve_device
from subpixel.engine.torch_engine import TorchEngine
from subpixel.models.base import SRNet
from subpixel.models.interp import _Interpolation
from subpixel.ops.tiling import TileInfo, tile_size_for_budget, tiled_forward

__all__ = ["Upscaler", "CPU_TILE_BUDGET"]

CPU_TILE_BUDGET = 768 * 2**20  # bytes of activations per tile on the CPU
Progress = Callable[[int, int], None]


def _to_chw_float(arr: np.ndarray) -> tuple[torch.Tensor, np.dtype]:
    """``(H, W[, C])`` uint8/uint16/float array -> ``(1, C, H, W)`` float32 in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1|3|4) image, got shape {arr.shape}")
    dtype = arr.dtype
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32, copy=True)).permute(2, 0, 1)[None]
    if dtype == np.uint8:
        t /= 255.0
    elif dtype == np.uint16:
        t /= 65535.0
    elif not np.issubdtype(dtype, np.floating):
        raise ValueError(f"unsupported image dtype {dtype}")
    return t, dtype


def _from_chw_float(t: torch.Tensor, dtype: np.dtype, channels: int) -> np.ndarray:
    """``(1, C, H, W)`` float -> ``(H, W, channels)`` of ``dtype``; consumes ``t`` (in-place ops)."""
    if channels == 1 and t.shape[1] != 1:
        t = t.mean(dim=1, keepdim=True)
    if dtype == np.uint8 or dtype == np.uint16:
        peak = 255.0 if dtype == np.uint8 else 65535.0
        t = t.clamp_(0, 1).mul_(peak).add_(0.5).floor_().to(torch.uint8 if dtype == np.uint8 else torch.int32)
    arr = t[0].permute(1, 2, 0).contiguous().numpy()
    return arr.astype(dtype, copy=False)


class Upscaler:
    """A loaded model bound to a runtime; ``upscale`` accepts NumPy arrays, PIL images or tensors.

    Arrays keep their dtype (uint8, uint16 or float in [0, 1]) and channel count: grayscale is
    run as RGB and averaged back, RGBA has its colour premultiplied by alpha and the alpha
    upscaled on its own, so transparent pixels never bleed colour into edges.
    """

    def __init__(self, net: SRNet, name: str, card: dict[str, Any] | None = None, engine: Any = None,
                 device: str | torch.device = "auto", precision: str = "fp32") -> None:
        self.net = net
        self.name = name
        self.card = card or {}
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        self.engine = engine if engine is not None else TorchEngine(net, dev, precision)
        self.last_tile_info: TileInfo | None = None

    @property
    def scale(self) -> int:
        return self.net.scale

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def __repr__(self) -> str:
        return f"Upscaler({self.name!r}, x{self.scale}, engine={self.engine.name}, device={self.device})"

    # -- public API ---------------------------------------------------------------------------
    def upscale(self, image: Any, tile: int | None = None, progress: Progress | None = None) -> Any:
        """Upscale ``image`` (ndarray ``(H, W[, C])``, PIL image, or tensor ``([N,] 3, H, W)`` in [0, 1]).

        ``tile``: LR tile side; ``None`` picks one from the memory budget, ``0`` disables tiling.
        Returns the same kind of object as given.
        """
        if isinstance(image, Image.Image):
            return Image.fromarray(self._upscale_array(np.asarray(_pil_to_supported(image)), tile, progress))
        if isinstance(image, torch.Tensor):
            batched = image.dim() == 4
            x = image if batched else image[None]
            out = self.upscale_tensor(x.float(), tile, progress)
            out = out.to(image.dtype if image.is_floating_point() else torch.float32)
            return out if batched else out[0]
        if isinstance(image, np.ndarray):
            return self._upscale_array(image, tile, progress)
        raise TypeError(f"cannot upscale an object of type {type(image).__name__}")

    def upscale_tensor(self, x: torch.Tensor, tile: int | None = None, progress: Progress | None = None
                       ) -> torch.Tensor:
        """``(N, 3, H, W)`` float in [0, 1] -> ``(N, 3, sH, sW)`` float32 (not clamped)."""
        h, w = x.shape[-2:]
        if h == 0 or w == 0:
            raise ValueError("cannot upscale an empty image")
        tile = self._auto_tile() if tile is None else tile
        if tile <= 0 or (h <= tile and w <= tile):
            out = self.engine(x)
            self.last_tile_info = TileInfo(tile=max(h, w), tiles_run=1)
            if progress is not None:
                progress(1, 1)
            return out.to(x.device)
        pad = max(self.net.receptive_field, 4)
        out, self.last_tile_info = tiled_forward(self.engine, x, self.scale, tile, pad, progress=progress)
        return out

    # -- internals ----------------------------------------------------------------------------
    def _auto_tile(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * 0.4)
        else:
            budget = CPU_TILE_BUDGET
        return tile_size_for_budget(budget, self.net.widest_activation(), self.scale)

    def _upscale_array(self, arr: np.ndarray, tile: int | None, progress: Progress | None) -> np.ndarray:
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        if isinstance(self.net, _Interpolation) and channels in (1, 3) and not np.issubdtype(arr.dtype, np.floating):
            return self._interpolate_exact(arr, progress)
        x, dtype = _to_chw_float(arr)
        if channels == 4:
            rgb, alpha = x[:, :3] * x[:, 3:], x[:, 3:]
            out_rgb = self.upscale_tensor(rgb, tile, progress)
            out_a = self.upscale_tensor(alpha.expand(-1, 3, -1, -1), tile).mean(dim=1, keepdim=True).clamp(0, 1)
            safe = torch.where(out_a > 1e-6, out_a, torch.ones_like(out_a))
            out = torch.cat([torch.where(out_a > 1e-6, out_rgb / safe, torch.zeros_like(out_rgb)), out_a], 1)
        else:
            out = self.upscale_tensor(x.expand(-1, 3, -1, -1) if channels == 1 else x, tile, progress)
        result = _from_chw_float(out, dtype, channels)
        return result[:, :, 0] if arr.ndim == 2 else result

    def _interpolate_exact(self, arr: np.ndarray, progress: Progress | None) -> np.ndarray:
        """Integer images through MATLAB's own integer path (rounding after each 1-D pass)."""
        t = torch.from_numpy(np.ascontiguousarray(arr))
        t = t[None] if arr.ndim == 2 else t.permute(2, 0, 1)
        out = torch.stack([self.net.resize_exact(c) for c in t])  # one channel at a time bounds memory
        if progress is not None:
            progress(1, 1)
        out = out[0] if arr.ndim == 2 else out.permute(1, 2, 0)
        return out.contiguous().numpy()


def _pil_to_supported(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB", "RGBA"):
        return img
    return img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
