"""Synthetic training clips for video SR, made from still images by a simulated camera move.

A clip is ``T`` HR frames sampled from one still with a smooth random camera motion: a
sub-pixel translation with constant acceleration, a slow zoom and a slow rotation, each frame a
known affine map rendered by bicubic ``grid_sample`` inside the still (the crop never reaches
the still's border). Every HR frame is quantized to uint8 and its LR frame is MATLAB-bicubic
``imresize(hr, 1/scale)`` of that uint8 frame, itself uint8, exactly as the evaluation degrades
video frames.

What this leaves out of real video: independent object motion and the occlusions and
disocclusions it causes (the whole frame moves rigidly, so a single global flow explains it),
parallax, motion blur, sensor noise, compression artefacts, lighting and exposure changes, and
the slight softening that resampling the still at sub-pixel offsets adds to some frames.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from subpixel.data.pairs import refuse_repeats
from subpixel.errors import SubpixelError
from subpixel.eval.datasets import dataset_images
from subpixel.eval.protocol import load_hr
from subpixel.ops.resize import imresize

__all__ = ["Motion", "Clip", "random_motion", "clip_affines", "render_frames", "make_clip", "exact_flow",
           "motion_extent", "roomy_side", "ClipSampler"]

_SUPPORT = 3  # pixels kept between the sampled area and the still's border (bicubic taps + rounding)


@dataclass(frozen=True)
class Motion:
    """Bounds of the random camera motion (per frame, HR pixels / relative zoom / degrees)."""

    speed: float = 3.0
    accel: float = 0.25
    zoom: float = 0.005
    rotation: float = 0.3


@dataclass
class Clip:
    """Aligned uint8 frames: ``hr`` ``(T, 3, S, S)``, ``lr`` ``(T, 3, S/scale, S/scale)``, and
    ``affines`` ``(T, 2, 3)``: HR frame pixel ``(x, y)`` shows still pixel ``A @ (x, y, 1)``."""

    hr: torch.Tensor
    lr: torch.Tensor
    affines: torch.Tensor


def _disk(g: torch.Generator, radius: float) -> torch.Tensor:
    r = radius * math.sqrt(torch.rand((), generator=g).item())
    a = 2 * math.pi * torch.rand((), generator=g).item()
    return torch.tensor([r * math.cos(a), r * math.sin(a)], dtype=torch.float64)


def random_motion(frames: int, motion: Motion, g: torch.Generator) -> torch.Tensor:
    """Per-frame linear parts and offsets ``(T, 2, 3)`` relative to the clip's centre point."""
    velocity, accel = _disk(g, motion.speed), _disk(g, motion.accel)
    start = torch.rand(2, generator=g, dtype=torch.float64)  # sub-pixel phase of the first frame
    zoom_rate = (2 * torch.rand((), generator=g).item() - 1) * motion.zoom
    spin = math.radians((2 * torch.rand((), generator=g).item() - 1) * motion.rotation)
    out = torch.empty(frames, 2, 3, dtype=torch.float64)
    for t in range(frames):
        z, a = math.exp(zoom_rate * t), spin * t
        out[t, :, :2] = z * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        out[t, :, 2] = start + velocity * t + 0.5 * accel * t * t
    return out


def _pixels(size: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel positions ``(size, size, 2)`` as (x, y) of a ``size`` square."""
    r = torch.arange(size, dtype=torch.float64, device=device)
    return torch.stack(torch.meshgrid(r, r, indexing="xy"), dim=-1)


def render_frames(still: torch.Tensor, affines: torch.Tensor, size: int) -> torch.Tensor:
    """Sample ``size``-square uint8 frames from a uint8 ``(3, H, W)`` still at absolute affines.

    The sampling grid is built in float64 on the still's device (no host round trip).
    """
    _, h, w = still.shape
    affines = affines.to(still.device, torch.float64)
    pts = torch.einsum("tij,yxj->tyxi", affines[:, :, :2], _pixels(size, still.device)) \
        + affines[:, None, None, :, 2]
    grid = torch.stack([(2 * pts[..., 0] + 1) / w - 1, (2 * pts[..., 1] + 1) / h - 1], dim=-1)
    src = still.float()[None].expand(len(affines), -1, -1, -1)
    out = F.grid_sample(src, grid.float(), mode="bicubic", padding_mode="border", align_corners=False)
    return torch.floor(out.clamp(0, 255) + 0.5).to(torch.uint8)


def clip_affines(hw: tuple[int, int], frames: int, size: int, motion: Motion, g: torch.Generator) -> torch.Tensor:
    """Absolute affines ``(T, 2, 3)`` of a random ``size``-square camera move inside an ``(H, W)`` still.

    Raises ValueError when the motion drawn does not fit inside the still.
    """
    h, w = hw
    rel = random_motion(frames, motion, g)
    c_crop = torch.full((2,), (size - 1) / 2, dtype=torch.float64)
    last = size - 1.0
    corners = torch.tensor([[0.0, 0.0], [last, 0.0], [0.0, last], [last, last]], dtype=torch.float64) \
        - c_crop  # (x, y) of the crop's corners, relative to its centre
    pts = torch.einsum("tij,cj->tci", rel[:, :, :2], corners) + rel[:, None, :, 2]
    lo, hi = pts.amin(dim=(0, 1)), pts.amax(dim=(0, 1))
    room = [(int(math.ceil(_SUPPORT - lo[k])), int(math.floor(dim - 1 - _SUPPORT - hi[k]))) for k, dim in
            enumerate((w, h))]
    if any(a > b for a, b in room):
        raise ValueError(f"a {w}x{h} still is too small for a {size}px crop under this motion")
    centre = torch.tensor([torch.randint(a, b + 1, (), generator=g).item() for a, b in room], dtype=torch.float64)
    affines = rel.clone()  # still = L (p - c_crop) + offset + centre, folded into (L, b) acting on p
    affines[:, :, 2] = rel[:, :, 2] + centre - torch.einsum("tij,j->ti", rel[:, :, :2], c_crop)
    return affines


def motion_extent(frames: int, size: int, motion: Motion) -> float:
    """The widest span along x or y (HR pixels) that the sampled points of any ``frames``-long clip of a
    ``size`` square can cover under ``motion``: an upper bound over every move :func:`random_motion` can draw.

    At frame ``t`` a crop corner lies at most ``exp(zoom t) (size-1)/2 (|cos a| + |sin a|)``, ``|a| <= rotation t``,
    from the crop's centre along an axis, and the centre moves at most ``speed |t-u| + accel |t^2-u^2| / 2``
    between frames ``t`` and ``u``; the span is bounded by the largest sum over pairs of frames.
    """
    half = (size - 1) / 2

    def reach(t: int) -> float:
        turn = min(math.radians(motion.rotation) * t, math.pi / 4)  # |cos a| + |sin a| peaks at 45 degrees
        return math.exp(motion.zoom * t) * half * (math.cos(turn) + math.sin(turn))

    return max(reach(t) + reach(u) + motion.speed * abs(t - u) + 0.5 * motion.accel * abs(t * t - u * u)
               for t in range(frames) for u in range(frames))


def roomy_side(frames: int, size: int, motion: Motion) -> int:
    """The smallest still side that holds every clip :func:`clip_affines` can draw (it never raises there).

    A span ``E`` leaves the crop centre an interval of length ``side - 1 - 2 * support - E``, which holds
    an integer position whatever the sub-pixel phase once it is at least 1 (a hair is added for rounding).
    """
    return math.ceil(motion_extent(frames, size, motion) + 2 * _SUPPORT + 2 + 1e-6)


def make_clip(still: torch.Tensor, frames: int, size: int, scale: int, motion: Motion,
              g: torch.Generator) -> Clip:
    """One random clip from a uint8 ``(3, H, W)`` still; ``size`` (HR side) must divide by ``scale``.

    Raises ValueError when the motion drawn does not fit inside the still.
    """
    if size % scale:
        raise ValueError(f"HR crop size {size} is not a multiple of the scale {scale}")
    affines = clip_affines((still.shape[1], still.shape[2]), frames, size, motion, g)
    hr = render_frames(still, affines, size)
    lr = imresize(hr, scale=1.0 / scale)
    return Clip(hr, lr, affines)


def exact_flow(affines: torch.Tensor, lr_size: int, scale: int) -> torch.Tensor:
    """The true LR flow ``(..., T-1, 2, lr_size, lr_size)`` of clips' affines ``(..., T, 2, 3)``, from each
    frame to its predecessor.

    In FNet's convention (:func:`subpixel.ops.flow.warp`): LR pixel ``p`` of frame ``t`` shows
    what frame ``t-1`` shows at ``p + flow``. Computed from the clip's affines at the HR positions
    of the LR pixel centres (``scale * p + (scale - 1) / 2``), in LR pixels.
    """
    full = torch.zeros(*affines.shape[:-2], 3, 3, dtype=torch.float64)
    full[..., :2, :], full[..., 2, 2] = affines.double().cpu(), 1.0
    centres = torch.arange(lr_size, dtype=torch.float64) * scale + (scale - 1) / 2
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    to_prev = torch.linalg.inv(full[..., :-1, :, :]) @ full[..., 1:, :, :]  # frame t pixel -> frame t-1 pixel
    moved = torch.einsum("...ij,hwj->...hwi", to_prev, pts)[..., :2]
    return ((moved - pts[..., :2]) / scale).movedim(-1, -3).float()


def _list_stills(sources: list[Path]) -> list[Path]:
    """The stills of folders (as :func:`~subpixel.eval.datasets.dataset_images` lists them: hidden files
    skipped, in plain name order as ever; an empty folder is an error) and files, in order; one listed twice
    is an error."""
    refuse_repeats(sources, "training data")
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += dataset_images(src, natural=False)
        elif src.is_file():
            files.append(src)
        else:
            raise SubpixelError(f"training data not found: {src}")
    return files


class ClipSampler:
    """Deterministic batches of synthetic clips from folders (or files) of stills.

    Stills whose shorter side is under ``size + 6`` are skipped with a warning (listed in ``skipped``);
    the rest are decoded as evaluation decodes HR images (:func:`~subpixel.eval.protocol.load_hr`: grey
    replicated to RGB, 16-bit rounded to 8 bits) once and kept as uint8 on ``device``, where clips are
    rendered and downscaled (the random draws stay on the CPU). At least one still must hold every
    camera move ``motion`` can draw (side :func:`roomy_side`), or construction fails; a smaller
    still is used for the moves that fit it (see :meth:`_draw`). ``batch(step, n)`` depends only on
    ``(seed, step, n)``, so a resumed training run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, sources: Sequence[str | Path], frames: int, size: int, scale: int,
                 motion: Motion | None = None, seed: int = 0, device: str | torch.device = "cpu") -> None:
        if size % scale:
            raise SubpixelError(f"HR crop size {size} is not a multiple of the scale {scale}")
        self.frames, self.size, self.scale = frames, size, scale
        self.motion = motion or Motion()
        self.seed = seed
        self.device = torch.device(device)
        self.stills: list[torch.Tensor] = []
        self.paths: list[Path] = []  # the stills used, for the model card's data fingerprint
        self.skipped: list[Path] = []  # stills too small for any crop
        roomy = roomy_side(frames, size, self.motion)
        self._roomy: list[int] = []  # indices of the stills that hold every camera move
        for path in _list_stills([Path(s) for s in sources]):
            try:
                with Image.open(path) as im:
                    side = min(im.size)
            except OSError as err:
                raise SubpixelError(f"cannot read {path}: {err}") from None
            if side < size + 2 * _SUPPORT:
                self.skipped.append(path)
                continue
            if side >= roomy:
                self._roomy.append(len(self.stills))
            arr = load_hr(path)
            self.stills.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().to(self.device))
            self.paths.append(path)
        if self.skipped:
            warnings.warn(f"{len(self.skipped)} stills have a side under {size + 2 * _SUPPORT} pixels (too small "
                          f"for {size}px HR crops) and are not used: "
                          f"{', '.join(f'{p.parent.name}/{p.name}' for p in self.skipped[:5])}"
                          f"{', ...' if len(self.skipped) > 5 else ''}", stacklevel=2)
        if not self.stills:
            raise SubpixelError(f"no still in {', '.join(map(str, sources))} is large enough for {size}px HR crops "
                                f"(patch {size // scale} LR pixels x{scale})")
        if not self._roomy:
            raise SubpixelError(f"stills are too small for {size}px HR crops with this much motion (the largest "
                                f"camera move needs a side of {roomy} pixels, the largest still has "
                                f"{max(min(s.shape[1:]) for s in self.stills)}); reduce the crop size, the clip "
                                "length or the motion")

    def _draw(self, g: torch.Generator, attempts: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """A random still and the affines of a camera move that fits in it.

        A move that does not fit the still drawn is redrawn with a new still; after ``attempts`` misses
        the still is drawn among those that hold every move (there is one: see :meth:`__init__`), so a
        draw always succeeds, and every draw that succeeded before this fallback existed is unchanged.
        """
        for _ in range(attempts):
            still = self.stills[int(torch.randint(len(self.stills), (), generator=g))]
            try:
                return still, clip_affines((still.shape[1], still.shape[2]), self.frames, self.size, self.motion, g)
            except ValueError:
                continue
        still = self.stills[self._roomy[int(torch.randint(len(self._roomy), (), generator=g))]]
        return still, clip_affines((still.shape[1], still.shape[2]), self.frames, self.size, self.motion, g)

    def batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)`` uint8 ``(n, T, 3, h, w)`` and ``(n, T, 3, H, W)`` on ``device`` for training step ``step``."""
        lr, hr, _ = self.batch_with_affines(step, n)
        return lr, hr

    def batch_with_affines(self, step: int, n: int, part: tuple[int, int] = (0, 1)
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`batch` and the clips' camera moves ``(n, T, 2, 3)``, float64 on the CPU (for :func:`exact_flow`).

        The random draws come first (on the CPU); the camera moves go to ``device`` in one
        asynchronous copy, where the frames are rendered and all ``n * T`` downscaled in one call.
        ``part=(k, parts)``: only the ``k``-th of ``parts`` equal slices of that batch (one rank's share
        in multi-process training: together the ranks train on the single-process batch).
        """
        k, parts = part
        if not 0 <= k < parts or n % parts:
            raise ValueError(f"cannot take part {k} of {parts} of a batch of {n}")
        seed = int(np.random.SeedSequence([self.seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1)
        g = torch.Generator().manual_seed(seed)
        share = n // parts
        stills, affines = zip(*[self._draw(g) for _ in range(n)][k * share:(k + 1) * share])
        n = share
        cpu_moves = moves = torch.stack(affines)
        if self.device.type == "cuda":  # one asynchronous copy (pageable copies would wait for the GPU)
            moves = moves.pin_memory().to(self.device, non_blocking=True)
        hr = torch.stack([render_frames(still, move, self.size) for still, move in zip(stills, moves)])
        lr = imresize(hr.flatten(0, 1), scale=1.0 / self.scale).unflatten(0, (n, self.frames))
        return lr, hr, cpu_moves
