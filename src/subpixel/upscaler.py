"""The user-facing model object: ``subpixel.load(...).upscale(image)``."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from subpixel.engine.device import resolve_device
from subpixel.engine.torch_engine import TorchEngine
from subpixel.io.image import luma, pil_to_array, u16_to_u8
from subpixel.io.image_meta import apply_cmyk_profile, exif_with_size, matching_icc
from subpixel.models.base import SRNet
from subpixel.models.interp import Interpolation
from subpixel.ops.pixels import quantize
from subpixel.ops.resize import imresize
from subpixel.ops.tiling import MIN_TILE, TileInfo, tile_size_for_budget, tiled_forward, tiled_imresize

__all__ = ["Upscaler", "CPU_TILE_BUDGET", "check_tile"]

CPU_TILE_BUDGET = 768 * 2**20  # bytes of activations per tile on the CPU
_CARRIED_INFO = ("icc_profile", "exif", "xmp", "dpi")  # PIL ``info`` entries an upscaled image keeps
Progress = Callable[[int, int], None]


def _check_array(arr: np.ndarray) -> None:
    """Refuse what :meth:`Upscaler.upscale` cannot take, whatever the model."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an (H, W) or (H, W, 1|3|4) image, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
        raise ValueError(f"unsupported image dtype {arr.dtype}: use uint8, uint16 or float16/32/64 in [0, 1]")


def check_tile(tile: Any) -> int | None:
    """``tile`` as an int: ``None`` (from the memory budget), 0 (no tiling) or a side of at least ``MIN_TILE``;
    anything else (``True``, ``16.0``, ``4``) raises :class:`ValueError`."""
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or not (tile == 0 or tile >= MIN_TILE):
        raise ValueError(f"tile must be None, 0 (no tiling) or a whole number >= {MIN_TILE}, got {tile!r}")
    return int(tile)


def _check_outscale(outscale: Any) -> None:
    """Refuse an ``outscale`` that is not a positive finite number (``None``: the model's scale)."""
    if outscale is not None and (isinstance(outscale, bool) or not isinstance(outscale, numbers.Real)
                                 or not 0 < outscale < math.inf):
        raise ValueError(f"outscale must be a positive number, got {outscale!r}")


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (a big-endian ``>u2`` array becomes ``uint16``)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _to_chw_float(arr: np.ndarray) -> tuple[torch.Tensor, np.dtype]:
    """``(H, W[, C])`` uint8/uint16/float array -> ``(1, C, H, W)`` float32 in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    dtype = arr.dtype
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32, copy=True)).permute(2, 0, 1)[None]
    if dtype == np.uint8:
        t /= 255.0
    elif dtype == np.uint16:
        t /= 65535.0
    return t, dtype


def _from_chw_float(t: torch.Tensor, dtype: np.dtype, channels: int) -> np.ndarray:
    """``(1, C, H, W)`` float -> ``(H, W, channels)`` of ``dtype``, clamped to its range (float: [0, 1]);
    consumes ``t`` (in-place ops)."""
    if channels == 1 and t.shape[1] != 1:
        t = t.mean(dim=1, keepdim=True)
    if dtype == np.uint8 or dtype == np.uint16:
        t = quantize(t, torch.uint8 if dtype == np.uint8 else torch.uint16, inplace=True)
    else:
        t = t.clamp_(0, 1)
    arr = t[0].permute(1, 2, 0).contiguous().numpy()
    return arr.astype(dtype, copy=False)


class Upscaler:
    """A loaded model bound to a runtime; ``upscale`` accepts NumPy arrays, PIL images or tensors.

    Arrays keep their dtype (uint8, uint16 or float, returned clamped to [0, 1]; a non-native byte order such
    as big-endian ``>u2`` comes back in the native one) and channel count:
    grayscale is run as RGB and averaged back. RGBA whose alpha is one value throughout (opaque, say)
    has its colour upscaled as RGB and that alpha reproduced exactly, without running the model on it;
    any other alpha is upscaled by the model on its own (sharper edges than bicubic), clamped to the
    valid range, with the colour premultiplied by it, so transparent pixels never bleed colour into edges.
    """

    def __init__(self, net: SRNet, name: str, card: dict[str, Any] | None = None, engine: Any = None,
                 device: str | torch.device = "auto", precision: str = "fp32") -> None:
        self.net = net
        self.name = name
        self.card = card or {}
        self.engine = engine if engine is not None else TorchEngine(net, resolve_device(str(device)), precision)
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
    def upscale(self, image: Any, tile: int | None = None, progress: Progress | None = None,
                outscale: float | None = None) -> Any:
        """Upscale ``image``: an ndarray ``(H, W[, C])``, a PIL image, or a tensor ``([N,] 3, H, W)``.

        Tensors are float in [0, 1] (returned unclamped, in their dtype) or uint8 (returned uint8).
        PIL images keep their ``info``'s ICC profile where it fits the output's colours (CMYK with a CMYK
        profile is converted to sRGB through it, and drops it, as :func:`~subpixel.io.image.read_image` does),
        EXIF (orientation included: the pixels are not turned), XMP and dpi (pass them on to ``save``), and
        their depth: 16-bit grayscale comes back 16-bit, 32-bit integer grayscale comes back 'I' (its values
        clipped to 16 bits, as :func:`~subpixel.io.image.read_image` reads it), 'F' (float in [0, 1]) comes back
        'F' clamped to [0, 1], '1' comes back 'L', grayscale with alpha or a transparent value 'LA' (BT.601 luma;
        8-bit: PIL has no 16-bit 'LA'), other modes RGB or RGBA.
        ``tile``: LR tile side, ``None`` (picked from the memory budget), ``0`` (no tiling) or at least
        ``MIN_TILE``. ``outscale``: the output's size relative to the input when it is not the model's scale
        (``2.5``: a 1000x800 image comes back 2500x2000): the model's output is resized to it by MATLAB's
        bicubic (antialiased when shrinking; alpha premultiplied); an interpolation model resizes the input
        to it at once with its own kernel. Arrays are resized in tiles too (``tile`` LR pixels; the untiled
        pixels). Returns the same kind of object as given.
        """
        _check_outscale(outscale)
        tile = check_tile(tile)
        if isinstance(image, Image.Image):
            pixels, hint = _from_pil(image)
            out = _to_pil(self._upscale_to(pixels, tile, progress, outscale), image.mode, hint)
            info = {k: image.info[k] for k in _CARRIED_INFO if k in image.info}
            info["icc_profile"] = matching_icc(info.get("icc_profile"), len(out.getbands()))
            if isinstance(info.get("exif"), bytes):  # its pixel dimensions: the output's, as the CLI writes them
                info["exif"] = exif_with_size(info["exif"], out.width, out.height)
            out.info.update({k: v for k, v in info.items() if v is not None})
            return out
        if isinstance(image, torch.Tensor):
            if image.dim() not in (3, 4) or image.shape[-3] != 3:
                raise ValueError(f"expected a (3, H, W) or (N, 3, H, W) tensor, got shape {tuple(image.shape)}")
            if not (image.is_floating_point() or image.dtype == torch.uint8):
                raise ValueError(f"unsupported tensor dtype {image.dtype}: use uint8 or float in [0, 1]")
            batched = image.dim() == 4
            x = image if batched else image[None]
            x = x.float() / 255.0 if image.dtype == torch.uint8 else x.float()
            size = self._resize_to(x.shape[-2:], outscale)
            if size is not None and isinstance(self.net, Interpolation):  # one resampling, not two
                out = imresize(x, size=size, kernel=self.net.kernel)
                self._one_call(x.shape[-2:], progress)
            else:
                out = self.upscale_tensor(x, tile, progress)
                out = out if size is None else imresize(out, size=size)
            if image.dtype == torch.uint8:
                out = quantize(out, inplace=True)
            out = out.to(image.dtype)
            return out if batched else out[0]
        if isinstance(image, np.ndarray):
            return self._upscale_to(image, tile, progress, outscale)
        raise TypeError(f"cannot upscale an object of type {type(image).__name__}")

    def output_size(self, height: int, width: int, outscale: float | None = None) -> tuple[int, int]:
        """``(height, width)`` of what :meth:`upscale` returns for an input of that size."""
        _check_outscale(outscale)
        return _out_size((height, width), self.scale if outscale is None else outscale)

    def upscale_tensor(self, x: torch.Tensor, tile: int | None = None, progress: Progress | None = None
                       ) -> torch.Tensor:
        """``(N, 3, H, W)`` float in [0, 1] -> ``(N, 3, sH, sW)`` float32 (not clamped).

        ``tile``: LR tile side (``None``: from a memory budget; ``0``: one whole-image call). An image within
        one tile runs in one call; if that runs out of memory it is tiled at half its longer side, and so on
        (:func:`~subpixel.ops.tiling.tiled_forward`).
        """
        tile = check_tile(tile)
        h, w = x.shape[-2:]
        if h == 0 or w == 0:
            raise ValueError("cannot upscale an empty image")
        if x.shape[0] == 0:  # an empty batch: ONNX Runtime refuses what torch would return
            return x.new_zeros(0, 3, h * self.scale, w * self.scale, dtype=torch.float32)
        tile = self._auto_tile(x.shape[0]) if tile is None else tile
        if tile <= 0:  # one whole-image call, as asked: no tiling, not even on running out of memory
            out = self.engine(x)
            self.last_tile_info = TileInfo(tile=max(h, w), tiles_run=1)
            if progress is not None:
                progress(1, 1)
            return out.to(x.device)
        pad = max(self.net.receptive_field, 4)  # an image within one tile is one tile: one engine call
        out, self.last_tile_info = tiled_forward(self.engine, x, self.scale, min(tile, max(h, w)), pad,
                                                 progress=progress)
        return out

    # -- internals ----------------------------------------------------------------------------
    def _auto_tile(self, batch: int = 1) -> int:
        """LR tile side for ``batch`` images per engine call within the memory budget."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * 0.4)
        else:
            budget = CPU_TILE_BUDGET
        return tile_size_for_budget(budget // max(batch, 1), self.net.widest_activation(), self.scale,
                                    live_maps=self.net.live_maps)

    def _resize_to(self, hw: Any, outscale: float | None) -> tuple[int, int] | None:
        """The size ``outscale`` asks for an input of size ``hw``; ``None`` when it is the model's own output."""
        if outscale is None:
            return None
        size = _out_size(hw, outscale)
        return None if size == _out_size(hw, self.scale) else size

    def _one_call(self, hw: Any, progress: Progress | None) -> None:
        """Record (and report) an image done in one untiled call."""
        self.last_tile_info = TileInfo(tile=max(hw), tiles_run=1)
        if progress is not None:
            progress(1, 1)

    def _upscale_array(self, arr: np.ndarray, tile: int | None, progress: Progress | None) -> np.ndarray:
        _check_array(arr)
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        if channels == 4 and arr.size and (arr[..., 3] == arr[0, 0, 3]).all():
            return self._upscale_constant_alpha(arr, tile, progress)
        if isinstance(self.net, Interpolation) and channels in (1, 3) and not np.issubdtype(arr.dtype, np.floating):
            return self._interpolate_exact(arr, tile, progress)
        x, dtype = _to_chw_float(arr)
        if channels == 4:
            rgb, alpha = x[:, :3] * x[:, 3:], x[:, 3:]
            out_rgb = self.upscale_tensor(rgb, tile, _pass_progress(progress, 0, 2))
            out_a = self.upscale_tensor(alpha.expand(-1, 3, -1, -1), tile, _pass_progress(progress, 1, 2))
            out_a = out_a.mean(dim=1, keepdim=True).clamp(0, 1)
            safe = torch.where(out_a > 1e-6, out_a, torch.ones_like(out_a))
            out = torch.cat([torch.where(out_a > 1e-6, out_rgb / safe, torch.zeros_like(out_rgb)), out_a], 1)
        else:
            out = self.upscale_tensor(x.expand(-1, 3, -1, -1) if channels == 1 else x, tile, progress)
        result = _from_chw_float(out, dtype, channels)
        return result[:, :, 0] if arr.ndim == 2 else result

    def _upscale_to(self, arr: np.ndarray, tile: int | None, progress: Progress | None,
                    outscale: float | None) -> np.ndarray:
        """An array upscaled by the model, then resized to ``outscale`` (unless that is the model's own scale);
        an interpolation model resizes to ``outscale`` at once with its kernel (one resampling, not two)."""
        arr = _native(arr)
        size = self._resize_to(arr.shape[:2], outscale)
        if size is None or not isinstance(self.net, Interpolation):
            out = self._upscale_array(arr, tile, progress)
            return out if size is None else self._resized(out, size, None if tile is None else tile * self.scale)[0]
        _check_array(arr)
        if size == arr.shape[:2]:  # nothing to resample
            self._one_call(size, progress)
            return arr.clip(0, 1) if np.issubdtype(arr.dtype, np.floating) else arr.copy()
        out, self.last_tile_info = self._resized(arr, size, tile, self.net.kernel, progress)
        return out

    def _resized(self, out: np.ndarray, size: tuple[int, int], tile: int | None, kernel: str = "bicubic",
                 progress: Progress | None = None) -> tuple[np.ndarray, TileInfo]:
        """``out`` resized to ``size`` by MATLAB's ``imresize`` with ``kernel`` (float clamped to [0, 1]) in tiles of
        ``tile`` of its pixels (``None``: from the CPU budget, 0: whole), with the untiled pixels."""
        floating = np.issubdtype(out.dtype, np.floating)
        constant = out.ndim == 3 and out.shape[2] == 4 and bool((out[..., 3] == out[0, 0, 3]).all())
        if tile is None:
            channels = 1 if out.ndim == 2 else out.shape[2]
            tile = self._exact_tile(channels, max(size[0] / out.shape[0], size[1] / out.shape[1]))
        if out.ndim == 2 or out.shape[2] != 4 or constant:
            colour = out[..., :3] if constant else out  # a constant alpha is copied exactly, not resampled
            resized, info = _tiled_resize(colour, size, kernel, tile, progress)  # integers round as MATLAB's do
            resized = resized.clip(0, 1) if floating else resized
            if constant:
                resized = np.concatenate([resized, _constant_alpha(out, size)], axis=2)
            return resized, info
        top = 1.0 if floating else float(np.iinfo(out.dtype).max)
        f = out.astype(np.float64) / top
        f[..., :3] *= f[..., 3:]  # premultiplied: transparent pixels lend no colour to the edges
        f, info = _tiled_resize(f, size, kernel, tile, progress)
        f = f.clip(0, 1)
        alpha = f[..., 3:]
        f[..., :3] = np.where(alpha > 1e-6, f[..., :3] / np.maximum(alpha, 1e-6), 0).clip(0, 1)
        return (f.astype(out.dtype) if floating else np.floor(f * top + 0.5).astype(out.dtype)), info

    def _upscale_constant_alpha(self, arr: np.ndarray, tile: int | None, progress: Progress | None) -> np.ndarray:
        """RGBA with one alpha value: the colour upscaled as RGB, the alpha copied exactly."""
        rgb = self._upscale_array(np.ascontiguousarray(arr[..., :3]), tile, progress)
        return np.concatenate([rgb, _constant_alpha(arr, rgb.shape[:2])], axis=2)

    def _interpolate_exact(self, arr: np.ndarray, tile: int | None, progress: Progress | None) -> np.ndarray:
        """Integer images through MATLAB's own integer path (rounding after each 1-D pass).

        Tiled as the networks are (``tile``: LR side, ``None`` from the CPU budget, 0 none), with the
        same pixels: each tile uses the whole image's kernel taps.
        """
        h, w = arr.shape[:2]
        tile = self._exact_tile(1 if arr.ndim == 2 else arr.shape[2], self.scale) if tile is None else tile
        out, self.last_tile_info = _tiled_resize(arr, (h * self.scale, w * self.scale), self.net.kernel, tile,
                                                 progress)
        return out

    @staticmethod
    def _exact_tile(channels: int, scale: float) -> int:
        """Input tile side for a resize by ``scale`` within the CPU budget (float64 passes and temporaries)."""
        per_pixel = 32 * channels * (scale + 1) ** 2
        return max(MIN_TILE, math.isqrt(int(CPU_TILE_BUDGET // per_pixel)))


def _out_size(hw: Any, outscale: float) -> tuple[int, int]:
    """``(h, w)`` times ``outscale``, rounded half up (at least one pixel)."""
    return tuple(max(1, math.floor(n * outscale + 0.5)) for n in hw)  # type: ignore[return-value]


def _constant_alpha(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """An ``(H, W, 1)`` plane of the alpha value of ``arr`` (RGBA, one alpha throughout; float clamped to [0, 1])."""
    value = arr[0, 0, 3].clip(0, 1) if np.issubdtype(arr.dtype, np.floating) else arr[0, 0, 3]
    return np.full((*hw, 1), value, arr.dtype)


def _tiled_resize(arr: np.ndarray, size: tuple[int, int], kernel: str, tile: int, progress: Progress | None
                  ) -> tuple[np.ndarray, TileInfo]:
    """:func:`~subpixel.ops.tiling.tiled_imresize` of an ``(H, W[, C])`` array (``tile`` 0: in one piece)."""
    t = torch.from_numpy(np.require(arr, requirements=["C", "W"]))  # a copy if read-only (e.g. from PIL)
    t = t[None] if arr.ndim == 2 else t.permute(2, 0, 1)
    out, info = tiled_imresize(t, size, kernel, tile if tile > 0 else max(arr.shape[:2]), progress)
    out = out[0] if arr.ndim == 2 else out.permute(1, 2, 0)
    return out.contiguous().numpy(), info


def _pass_progress(progress: Progress | None, index: int, count: int) -> Progress | None:
    """``progress`` for pass ``index`` of ``count`` alike: one running total over all of them."""
    if progress is None:
        return None
    return lambda done, total: progress(index * total + done, count * total)


def _from_pil(img: Image.Image) -> tuple[np.ndarray, str]:
    """``(H, W[, C])`` pixels of a PIL image at its own depth ('F' as float32) and the mode hint of
    :func:`~subpixel.io.image.pil_to_array` ('F' for 'F')."""
    if img.mode == "F":
        return np.array(img, dtype=np.float32), "F"
    name = getattr(img, "filename", None)  # bytes when opened by a bytes path
    pixels, hint = pil_to_array(apply_cmyk_profile(img, Path(os.fsdecode(name) if name else "<PIL image>")))
    return (pixels[..., 0] if pixels.shape[2] == 1 else pixels), hint


def _to_pil(arr: np.ndarray, mode: str, hint: str) -> Image.Image:
    """The upscaled pixels as a PIL image of the input's kind (32-bit integer grayscale back to 'I', grey with
    alpha, RGBA pixels, back to 8-bit 'LA' by BT.601 luma)."""
    if hint == "LA":
        if arr.dtype == np.uint16:
            arr = u16_to_u8(arr)
        return Image.fromarray(np.concatenate([luma(arr[..., :3]), arr[..., 3:]], axis=2))
    if mode == "I":
        return Image.fromarray(arr.astype(np.int32))
    return Image.fromarray(arr)
