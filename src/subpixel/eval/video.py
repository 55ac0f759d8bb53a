"""Video SR evaluation (Vid4 protocol) with a temporal-consistency measure.

Protocol: every frame of every clip (a folder of HR frames in natural order of their names, frame2
before frame10; hidden files and folders skipped; a root holding frames and no folder is one clip) is modcropped, and
degraded as the image protocol does it (BI: MATLAB-bicubic ``imresize(hr, 1/scale)`` of the
uint8 frame, uint8). The SR frame is clamped and rounded to uint8 and scored on BT.601 Y (float)
with ``scale`` pixels shaved: Y-PSNR/SSIM per frame, a clip's figure is its frame mean, and the
set's figures are both the mean of clip means and the mean over all frames.

Temporal consistency is the warping error: optical flow is estimated on the *ground-truth*
frames (OpenCV Farneback, both directions), ``SR_{t-1}`` is warped onto frame ``t`` with the
backward flow and the mean absolute Y difference to ``SR_t`` (0-255 scale) is taken over the
pixels whose flow passes the forward-backward check and lands inside the frame. It is averaged
over frames (``t >= 1``) and over the clips that have one (a one-frame clip has none), and
reported for the ground truth itself: the level of a perfect reconstruction, set by flow errors,
occlusions and lighting changes the check misses.
It is not a lower bound: blur lowers the warping error (bicubic scores below the ground truth),
so read it beside PSNR, and compare models of similar sharpness.
It is not Lai et al. 2018's E_warp (squared RGB error on 0-1 with a motion-boundary test too): do
not compare it with published E_warp tables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from subpixel.errors import SubpixelError
from subpixel.eval.datasets import dataset_images, natural_key, resolve_dataset
from subpixel.eval.metrics import psnr, shave, ssim
from subpixel.eval.protocol import check_size, load_hr, make_lr, modcrop, strict_fp32
from subpixel.io.image import is_image_path
from subpixel.models.frvsr import FRVSR
from subpixel.ops.color import rgb_to_y
from subpixel.ops.pixels import quantize
from subpixel.upscaler import Upscaler
from subpixel.video.recurrent import RecurrentProcessor

__all__ = ["ClipScore", "VideoResult", "evaluate_video", "evaluate_vid4", "format_video_report",
           "farneback_flow", "consistent_mask", "warping_error"]


class _Processor(Protocol):
    def process(self, batch: torch.Tensor) -> torch.Tensor: ...

    def reset(self) -> None: ...


Model = Upscaler | _Processor | Callable[[], _Processor]


@dataclass
class ClipScore:
    """One clip's figures (``warp_error*`` are None when temporal consistency was not measured)."""

    name: str
    frames: int
    psnr: float
    ssim: float
    warp_error: float | None
    warp_error_gt: float | None
    frame_names: list[str] = field(default_factory=list)  # file names, in the order scored
    psnr_frames: list[float] = field(default_factory=list)
    ssim_frames: list[float] = field(default_factory=list)


@dataclass
class VideoResult:
    """A video set's figures: means of clip means, means over all frames, and per-clip scores.

    ``recurrent``: the model ran as a frame processor fed each clip in order, reset per clip (FRVSR),
    not frame by frame.
    """

    dataset: str
    scale: int
    model: str
    clips: list[ClipScore]
    recurrent: bool = False

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.clips)

    @property
    def psnr(self) -> float:
        return float(np.mean([c.psnr for c in self.clips]))

    @property
    def ssim(self) -> float:
        return float(np.mean([c.ssim for c in self.clips]))

    @property
    def psnr_all_frames(self) -> float:
        return float(np.mean([p for c in self.clips for p in c.psnr_frames]))

    @property
    def ssim_all_frames(self) -> float:
        return float(np.mean([q for c in self.clips for q in c.ssim_frames]))

    @property
    def warp_error(self) -> float | None:
        """Mean over the clips that have one (a one-frame clip has none); None when no clip has one."""
        return _mean_measured([c.warp_error for c in self.clips])

    @property
    def warp_error_gt(self) -> float | None:
        """The ground truth's, as :attr:`warp_error`."""
        return _mean_measured([c.warp_error_gt for c in self.clips])

    def to_dict(self) -> dict[str, Any]:
        """The figures, with the protocol: Y channel, ``scale`` px shaved, MATLAB-bicubic LR."""
        out = {**asdict(self), "protocol": "default", "channel": "y", "shave": self.scale,
               "degradation": "bicubic (MATLAB imresize)"}
        for key in ("frames", "psnr", "ssim", "psnr_all_frames", "ssim_all_frames", "warp_error", "warp_error_gt"):
            out[key] = getattr(self, key)
        return out


def _mean_measured(values: list[float | None]) -> float | None:
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if measured else None


# -- temporal consistency ----------------------------------------------------------------------
def has_opencv() -> bool:
    """Whether OpenCV, which the warping error needs, imports (missing, or without its system libraries)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise SubpixelError("the warping error needs OpenCV: pip install 'subpixel[bench]' "
                            "(or evaluate with temporal=False)") from None
    return cv2


def farneback_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` (x, y) with ``src(p) ~ dst(p + flow(p))``, on uint8 grey frames."""
    cv2 = _cv2()
    return cv2.calcOpticalFlowFarneback(src, dst, None, pyr_scale=0.5, levels=5, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def _sample(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``img`` at ``p + flow(p)`` (border replicated)."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistent_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels of frame ``t`` whose flow to ``t-1`` lands inside it and is undone by the flow back.

    ``backward``: flow ``t -> t-1``; ``forward``: flow ``t-1 -> t``. Check of Sundaram et al.:
    ``|b + f(p + b)|^2 <= 0.01 (|b|^2 + |f(p + b)|^2) + 0.5``.
    """
    h, w = backward.shape[:2]
    f_at = _sample(np.ascontiguousarray(forward), backward)
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    x, y = gx + backward[..., 0], gy + backward[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    err = np.sum((backward + f_at) ** 2, axis=-1)
    bound = 0.01 * (np.sum(backward**2, axis=-1) + np.sum(f_at**2, axis=-1)) + 0.5
    return inside & (err <= bound)


def warping_error(prev: np.ndarray, cur: np.ndarray, backward: np.ndarray, mask: np.ndarray,
                  border: int = 0) -> float | None:
    """Mean ``|cur - warp(prev, backward)|`` over ``mask`` with ``border`` pixels shaved (None: empty)."""
    kept = shave(mask, border)
    if not kept.any():
        return None
    diff = np.abs(cur.astype(np.float32) - _sample(prev.astype(np.float32), backward))
    return float(shave(diff, border)[kept].mean())


# -- running models ----------------------------------------------------------------------------
class _Runner:
    """Feeds uint8 ``(H, W, 3)`` LR frames to an upscaler or a processor; ``start()`` begins a clip."""

    def __init__(self, model: Model) -> None:
        if not (isinstance(model, Upscaler) or hasattr(model, "process") or callable(model)):
            raise TypeError(f"cannot evaluate a {type(model).__name__}: need an Upscaler, a frame processor "
                            "or a factory of processors")
        if isinstance(model, Upscaler) and isinstance(model.net, FRVSR):
            model = RecurrentProcessor(model.net, model.device, getattr(model.engine, "precision", "fp32"))
        self.model = model
        self.processor: _Processor | None = None

    @property
    def recurrent(self) -> bool:
        """Whether clips go through a processor in order (reset per clip) rather than frame by frame."""
        return not isinstance(self.model, Upscaler)

    @property
    def name(self) -> str:
        named = self.processor if self.processor is not None else self.model
        return str(getattr(named, "name", None) or type(named).__name__)

    def start(self) -> None:
        if isinstance(self.model, Upscaler):
            return
        if hasattr(self.model, "process"):
            self.processor = self.model  # type: ignore[assignment]
            self.processor.reset()
        else:
            self.processor = self.model()  # type: ignore[operator]

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if isinstance(self.model, Upscaler):
            return self.model.upscale(lr)
        assert self.processor is not None
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            out = self.processor.process(x)
        return quantize(out[0]).permute(1, 2, 0).cpu().numpy()


def _clip_folders(root: Path, clips: list[str] | None) -> list[Path]:
    """The clips named, else the folders under ``root`` (hidden ones skipped), else ``root`` itself
    when it holds frames."""
    if clips:
        folders = [root / c for c in clips]
    else:
        children = [p for p in root.iterdir() if not p.name.startswith(".")]
        folders = sorted((p for p in children if p.is_dir()), key=lambda p: natural_key(p.name))
        if not folders and any(is_image_path(p) for p in children):
            folders = [root]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise SubpixelError(f"clip folders not found: {', '.join(missing)}")
    if not folders:
        raise SubpixelError(f"no clip folders in {root}")
    return folders


def _score_clip(folder: Path, run: Callable[[np.ndarray], np.ndarray], scale: int, temporal: bool,
                bar: tqdm) -> ClipScore:
    names, psnrs, ssims, warp_sr, warp_gt = [], [], [], [], []
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # grey GT, Y of GT, Y of SR
    first: tuple[Path, tuple[int, ...]] | None = None  # the clip's first frame and its shape
    for path in dataset_images(folder):
        hr = load_hr(path)
        first = first or (path, hr.shape)
        _check_same_size(path, hr.shape, *first)
        hr = modcrop(hr, scale)
        check_size(path, hr.shape, scale)
        sr = run(make_lr(hr, scale))
        if sr.shape != hr.shape:
            raise SubpixelError(f"SR frame shape {sr.shape} differs from HR {hr.shape} ({path})")
        names.append(path.name)
        y_hr, y_sr = rgb_to_y(hr), rgb_to_y(sr)
        a, b = shave(y_sr, scale), shave(y_hr, scale)
        psnrs.append(psnr(a, b))
        ssims.append(ssim(a, b))
        grey = np.floor(y_hr + 0.5).astype(np.uint8)
        if temporal and prev is not None:
            backward, forward = farneback_flow(grey, prev[0]), farneback_flow(prev[0], grey)
            mask = consistent_mask(backward, forward)
            for store, before, now in ((warp_sr, prev[2], y_sr), (warp_gt, prev[1], y_hr)):
                err = warping_error(before, now, backward, mask, scale)
                if err is not None:
                    store.append(err)
        prev = (grey, y_hr, y_sr)
        bar.update(1)
    return ClipScore(
        name=Path(os.path.abspath(folder)).name, frames=len(psnrs), psnr=float(np.mean(psnrs)),
        ssim=float(np.mean(ssims)),
        warp_error=float(np.mean(warp_sr)) if temporal and warp_sr else None,
        warp_error_gt=float(np.mean(warp_gt)) if temporal and warp_gt else None,
        frame_names=names, psnr_frames=psnrs, ssim_frames=ssims,
    )


def _check_same_size(path: Path, shape: tuple[int, ...], first: Path, first_shape: tuple[int, ...]) -> None:
    """Every frame of a clip has its first frame's size."""
    if shape[:2] != first_shape[:2]:
        raise SubpixelError(f"{path}: frame size {shape[1]}x{shape[0]} differs from the clip's first frame "
                            f"{first.name} ({first_shape[1]}x{first_shape[0]})")


def evaluate_video(model: Model, root: str | Path, scale: int = 4, clips: list[str] | None = None,
                   temporal: bool = True, name: str | None = None, progress: bool = True) -> VideoResult:
    """Score ``model`` on every frame of the clip folders under ``root`` (see the module docstring).

    ``model``: an :class:`Upscaler` (frame by frame), a frame processor (``process(batch)`` and
    ``reset()``, reset at each clip) or a zero-argument factory returning a fresh processor per
    clip. Frames are fed one at a time, in order, under :func:`~subpixel.eval.protocol.strict_fp32`.
    """
    if isinstance(model, Upscaler) and model.scale != scale:
        raise SubpixelError(f"model is x{model.scale}, evaluation asked for x{scale}")
    if temporal:
        _cv2()
    root = Path(root)
    folders = _clip_folders(root, clips)
    run = _Runner(model)
    total = sum(len(dataset_images(f)) for f in folders)
    scores = []
    with strict_fp32(), tqdm(total=total, desc=f"{root.name} x{scale}", unit="frame", disable=not progress) as bar:
        for folder in folders:
            run.start()
            scores.append(_score_clip(folder, run, scale, temporal, bar))
    return VideoResult(dataset=root.name, scale=scale, model=name or run.name, clips=scores, recurrent=run.recurrent)


def evaluate_vid4(model: Model, root: str | Path | None = None, scale: int = 4, **kwargs: Any) -> VideoResult:
    """:func:`evaluate_video` on Vid4 (calendar, city, foliage, walk); ``root`` defaults to the
    ``video/Vid4`` folder of the shared data."""
    return evaluate_video(model, resolve_dataset("Vid4") if root is None else root, scale, **kwargs)


def _num(v: float | None, digits: int) -> str:
    if v is None:
        return "—"
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def format_video_report(result: VideoResult) -> str:
    """A markdown table of a :class:`VideoResult`."""
    lines = [
        f"**{result.dataset} x{result.scale}: {result.model}** (Y-PSNR/SSIM, {result.scale} px shaved; "
        "warping error: mean |ΔY| (0–255) of consecutive outputs under ground-truth flow, forward-backward "
        "checked, lower is smoother)",
        "",
        "| clip | frames | PSNR (dB) | SSIM | warping error | GT warping error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in result.clips:
        lines.append(f"| {c.name} | {c.frames} | {_num(c.psnr, 2)} | {_num(c.ssim, 4)} | "
                     f"{_num(c.warp_error, 3)} | {_num(c.warp_error_gt, 3)} |")
    lines.append(f"| **mean of clips** | {result.frames} | {_num(result.psnr, 2)} | {_num(result.ssim, 4)} | "
                 f"{_num(result.warp_error, 3)} | {_num(result.warp_error_gt, 3)} |")
    lines.append(f"| **all frames** | {result.frames} | {_num(result.psnr_all_frames, 2)} | "
                 f"{_num(result.ssim_all_frames, 4)} | — | — |")
    measured = sum(c.warp_error is not None for c in result.clips)
    if 0 < measured < len(result.clips):
        lines += ["", f"Warping errors: means over the {measured} of {len(result.clips)} clips that have one "
                      "(one of a single frame, or with no flow-consistent pixel, has none)."]
    lines += ["", "The warping error is not Lai et al. 2018's E_warp (squared RGB error on 0–1, with a motion-boundary "
                  "test): do not compare it with published E_warp tables."]
    return "\n".join(lines) + "\n"
