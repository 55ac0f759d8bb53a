"""The SR literature's evaluation protocols.

``default`` (every network is scored with it): HR modcropped to a multiple of the scale (top-left
kept); LR = MATLAB-bicubic ``imresize`` of the uint8 RGB image (rounded after each 1-D pass); the
SR output clamped and rounded to uint8; PSNR/SSIM on the BT.601 Y channel (float, not rounded)
with ``scale`` pixels shaved from each border; grayscale HR files are used as R=G=B. A set's figure
is the mean over its images. Float32 maths is true fp32 (TF32 off, see :func:`strict_fp32`).

``legacy-y`` (SRCNN-era, for interpolation baselines only): Y of the uint8 image rounded to an
integer (a grayscale file, alpha aside, or a palette of greys used as is), bicubic down and up in
float with the LR never quantized, the result rounded; this is how published bicubic rows were made.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from subpixel.errors import SubpixelError
from subpixel.eval.datasets import dataset_images, resolve_dataset
from subpixel.eval.metrics import SSIM_WINDOW, psnr, shave, ssim
from subpixel.io.image16 import read_16bit_colour
from subpixel.models.interp import Interpolation
from subpixel.ops.color import rgb_to_y
from subpixel.ops.resize import imresize_np
from subpixel.upscaler import Upscaler

__all__ = ["PROTOCOLS", "ImageScore", "SetResult", "modcrop", "make_lr", "load_hr", "check_size", "score",
           "check_protocol", "evaluate", "self_ensemble", "strict_fp32", "image_names"]

PROTOCOLS = ("default", "legacy-y")


@dataclass
class ImageScore:
    """One image's figures."""

    name: str
    psnr: float
    ssim: float
    seconds: float | None = None  # wall time of the model's upscale call (None: not timed)


@dataclass
class SetResult:
    """A set's figures: the means and the per-image scores."""

    dataset: str
    scale: int
    model: str
    protocol: str
    channel: str
    psnr: float
    ssim: float
    images: list[ImageScore] = field(default_factory=list)
    ensemble: bool = False  # x8 geometric self-ensemble

    @property
    def seconds_per_image(self) -> float | None:
        """Mean upscale time per image (LR making and scoring excluded); None when not timed."""
        times = [x.seconds for x in self.images if x.seconds is not None]
        return float(np.mean(times)) if times and len(times) == len(self.images) else None

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds_per_image": self.seconds_per_image}


@contextmanager
def strict_fp32() -> Iterator[None]:
    """True fp32 inside: TF32 off for cuDNN convolutions and CUDA matmuls (both allowed by
    default or by a caller), the previous settings restored on the way out, on an error too.

    torch >= 2.9 has per-backend ``fp32_precision`` settings and refuses the legacy flags once a caller
    has used those, so they are used where they exist; older torch has only the legacy flags."""
    cuda_matmul, cudnn_conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
        saved = cuda_matmul.fp32_precision, cudnn_conv.fp32_precision
        cuda_matmul.fp32_precision = cudnn_conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            cuda_matmul.fp32_precision, cudnn_conv.fp32_precision = saved
        return
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = conv
        torch.set_float32_matmul_precision(matmul)


def image_names(paths: list[Path]) -> list[str]:
    """Each image's name in results: its stem, or its file name where two files share a stem (a.png, a.jpg)."""
    stems = Counter(p.stem for p in paths)
    return [p.stem if stems[p.stem] == 1 else p.name for p in paths]


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def load_hr(path: Path) -> np.ndarray:
    """HR image as uint8 RGB (grayscale replicated to three channels; 16-bit rounded to 8 bits)."""
    return _read_hr(path)[0]


def _read_hr(path: Path) -> tuple[np.ndarray, bool]:
    """:func:`load_hr`'s image, and whether the file is grayscale (see :func:`_is_grey`)."""
    try:
        with Image.open(path) as im:
            if im.mode == "F":
                raise SubpixelError(f"{path}: floating-point images cannot be evaluated")
            wide = read_16bit_colour(im, path)  # convert('RGB') would truncate 16-bit colour to its high byte
            if wide is not None:
                return _round_16_to_8(wide[0][..., :3]), _is_grey(im) or wide[1] == "LA"  # Pillow says RGBA
            if im.mode.startswith("I"):  # 16/32-bit integer grayscale: convert('RGB') would clip it at 255
                grey = _round_16_to_8(np.asarray(im))
                return np.repeat(grey[..., None], 3, axis=2), True
            return np.asarray(im.convert("RGB")), _is_grey(im)
    except OSError as err:
        raise SubpixelError(f"cannot read {path}: {err}") from None


def _round_16_to_8(pixels: np.ndarray) -> np.ndarray:
    """16-bit values (clipped to 0..65535) as the nearest 8-bit ones: round(x * 255 / 65535)."""
    return ((np.clip(pixels.astype(np.int64), 0, 65535) + 128) // 257).astype(np.uint8)


def _is_grey(im: Image.Image) -> bool:
    """Whether a file holds grey levels only: one channel (alpha aside), or a palette of greys (R=G=B)."""
    if im.mode in ("P", "PA"):
        colours = np.asarray(im.getpalette("RGB")).reshape(-1, 3)
        return bool((colours == colours[:, :1]).all())
    return im.mode in ("1", "L", "LA", "La") or im.mode.startswith("I")


def check_size(path: Path, shape: tuple[int, ...], scale: int) -> None:
    """Scoring shaves ``scale`` pixels per border and SSIM needs one whole 11x11 window in what is left."""
    need = 2 * scale + SSIM_WINDOW
    if min(shape[:2]) < need:
        raise SubpixelError(f"{path}: too small to evaluate at x{scale} (each side needs at least {need} pixels "
                            f"after cropping to a multiple of the scale: {scale} shaved per border, SSIM's "
                            f"{SSIM_WINDOW}x{SSIM_WINDOW} window)")


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The field's LR image: MATLAB-bicubic ``imresize(hr, 1/scale)`` of the uint8 image."""
    return imresize_np(hr, scale=1.0 / scale)


def score(sr: np.ndarray, hr: np.ndarray, scale: int, channel: str = "y") -> tuple[float, float]:
    """PSNR/SSIM of uint8 ``sr`` against ``hr`` on Y (default) or RGB, ``scale`` pixels shaved."""
    if sr.shape != hr.shape:
        raise SubpixelError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    if channel == "y":
        a, b = shave(rgb_to_y(sr), scale), shave(rgb_to_y(hr), scale)
    elif channel == "rgb":
        a, b = shave(sr.astype(np.float64), scale), shave(hr.astype(np.float64), scale)
    else:
        raise ValueError(f"channel must be 'y' or 'rgb', not {channel!r}")
    return psnr(a, b), ssim(a, b)


def self_ensemble(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray) -> np.ndarray:
    """x8 geometric self-ensemble: mean of the outputs over flips and 90-degree rotations."""
    acc = None
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(lr, k)
            x = x[:, ::-1] if flip else x
            y = upscale(np.ascontiguousarray(x)).astype(np.float64)
            y = y[:, ::-1] if flip else y
            y = np.rot90(y, -k)
            acc = y if acc is None else acc + y
    assert acc is not None
    return np.floor(np.clip(acc / 8, 0, 255) + 0.5).astype(np.uint8)


def _legacy_y_pair(path: Path, scale: int, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    hr, grey = _read_hr(path)  # grayscale files are their own Y (replicated to RGB by _read_hr)
    y = hr[..., 0].astype(np.float64) if grey else np.floor(rgb_to_y(hr) + 0.5)
    y = modcrop(y, scale)
    check_size(path, y.shape, scale)
    lr = imresize_np(y / 255.0, scale=1.0 / scale)
    sr = imresize_np(lr, scale=float(scale), kernel=kernel)
    return np.floor(np.clip(sr * 255.0, 0, 255) + 0.5), y


def check_protocol(model: Upscaler, protocol: str, channel: str = "y", ensemble: bool = False) -> None:
    """Refuse a protocol :func:`evaluate` cannot apply to ``model`` with these options (before any scoring)."""
    if protocol not in PROTOCOLS:
        raise SubpixelError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol == "legacy-y" and not isinstance(model.net, Interpolation):
        raise SubpixelError("--protocol legacy-y reproduces published interpolation rows; "
                            "networks are scored with the default protocol")
    if protocol == "legacy-y" and (channel != "y" or ensemble):
        raise SubpixelError("--protocol legacy-y is Y-only and has no self-ensemble")


def evaluate(
    model: Upscaler,
    data: str | Path,
    protocol: str = "default",
    channel: str = "y",
    ensemble: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SetResult:
    """Score ``model`` on a benchmark set (a folder of HR images or a standard set name).

    Each image's upscale call is timed (after one untimed warm-up call on the first image). Runs
    under :func:`strict_fp32`.
    """
    check_protocol(model, protocol, channel, ensemble)
    legacy = protocol == "legacy-y"
    folder = resolve_dataset(data)
    s = model.scale
    with strict_fp32():
        scores = _score_images(model, dataset_images(folder), legacy, channel, ensemble, progress)
    return SetResult(
        dataset=Path(os.path.abspath(folder)).name, scale=s, model=model.name, protocol=protocol, channel=channel,
        ensemble=ensemble,
        psnr=float(np.mean([x.psnr for x in scores])), ssim=float(np.mean([x.ssim for x in scores])),
        images=scores,
    )


def _score_images(model: Upscaler, paths: list[Path], legacy: bool, channel: str, ensemble: bool,
                  progress: Callable[[str], None] | None) -> list[ImageScore]:
    """:func:`evaluate`'s per-image scores."""
    s = model.scale
    scores: list[ImageScore] = []
    for path, name in zip(paths, image_names(paths)):
        seconds = None
        if legacy:
            sr, hr_y = _legacy_y_pair(path, s, model.net.kernel)
            a, b = shave(sr, s), shave(hr_y, s)
            p, q = psnr(a, b), ssim(a, b)
        else:
            hr = modcrop(load_hr(path), s)
            check_size(path, hr.shape, s)
            lr = make_lr(hr, s)
            run = (lambda x: self_ensemble(model.upscale, x)) if ensemble else model.upscale
            if not scores:
                run(lr)  # warm-up, untimed: engine choice, compilation, allocator growth
            start = time.perf_counter()
            sr = run(lr)  # a host array: the device is synchronised
            seconds = time.perf_counter() - start
            p, q = score(sr, hr, s, channel)
        scores.append(ImageScore(name, p, q, seconds))
        if progress is not None:
            progress(name)
    return scores
