"""HR/LR image pairs made exactly as the evaluation protocol makes them, and the training/validation split."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from subpixel.errors import SubpixelError
from subpixel.eval.datasets import dataset_images
from subpixel.eval.protocol import load_hr, make_lr, modcrop

__all__ = ["Pair", "ImageSplit", "load_pair", "load_pairs", "split_images", "fingerprint", "refuse_repeats"]


class Pair(NamedTuple):
    """An aligned pair of uint8 RGB tensors: ``lr`` (3, h, w) and ``hr`` (3, h*scale, w*scale)."""

    lr: torch.Tensor
    hr: torch.Tensor
    name: str = ""


@dataclass(frozen=True)
class ImageSplit:
    """Training and held-out validation files of a set of HR folders; ``digests``: the SHA-256 of each
    file's bytes where :func:`split_images` read them (for :func:`fingerprint`, which then reads no file again)."""

    train: list[Path]
    val: list[Path]
    digests: dict[Path, bytes] = field(default_factory=dict, compare=False, repr=False)


def _chw(arr) -> torch.Tensor:
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def load_pair(path: Path, scale: int) -> Pair:
    """Modcropped HR and its MATLAB-bicubic uint8 LR, as in evaluation (whole image, never a crop)."""
    hr = modcrop(load_hr(path), scale)
    if hr.shape[0] == 0 or hr.shape[1] == 0:
        raise SubpixelError(f"{path} is smaller than the scale x{scale}")
    return Pair(_chw(make_lr(hr, scale)), _chw(hr), f"{path.parent.name}/{path.name}")


def load_pairs(paths: Sequence[Path], scale: int, workers: int | None = None) -> list[Pair]:
    """:func:`load_pair` of every path, in order, decoded and downscaled on a few threads."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: load_pair(p, scale), paths))


def _matches(path: Path, name: str) -> bool:
    return name in (path.name, path.stem, f"{path.parent.name}/{path.name}", f"{path.parent.name}/{path.stem}")


def refuse_repeats(paths: Sequence[Path], key: str) -> None:
    """Refuse a folder or file listed twice in ``paths`` (the same once resolved): its images would count twice."""
    seen: set[Path] = set()
    for path in paths:
        real = Path(path).resolve()
        if real in seen:
            raise SubpixelError(f"{key} lists {real} twice")
        seen.add(real)


def split_images(folders: Sequence[Path], val_count: int = 0, val_names: Sequence[str] = ()) -> ImageSplit:
    """All images of ``folders`` (in folder order, then by name) with a deterministic validation slice.

    ``val_names`` (file name, stem, or ``folder/name``) picks the held-out images; otherwise
    ``val_count`` images evenly spaced over the whole list are held out. A folder listed twice, and
    an image named twice in ``val_names``, are errors. A training file whose bytes are those of a
    held-out file (a duplicate under another name) is left out of training, with a warning.
    """
    refuse_repeats(folders, "data.train")
    files = [p for folder in folders for p in dataset_images(folder, natural=False)]
    if val_names:
        val: list[Path] = []
        for name in val_names:
            hits = [p for p in files if _matches(p, name)]
            if len(hits) != 1:
                why = "matches no training image" if not hits else f"is ambiguous ({len(hits)} images)"
                raise SubpixelError(f"data.val_names: {name!r} {why}")
            if hits[0] in val:
                raise SubpixelError(f"data.val_names: {name!r} names {hits[0].name} again")
            val.append(hits[0])
    else:
        if val_count >= len(files):
            raise SubpixelError(f"data.val_count {val_count} leaves no training images (found {len(files)})")
        val = [files[(2 * i + 1) * len(files) // (2 * val_count)] for i in range(val_count)]
    held = set(val)
    train = [p for p in files if p not in held]
    if not val:
        return ImageSplit(train, val)
    digests = {p: _file_digest(p) for p in files}
    held_content = {digests[p]: p for p in reversed(val)}  # content -> the first held-out file with it
    twins = [(p, held_content[digests[p]]) for p in train if digests[p] in held_content]
    if twins:
        names = ", ".join(f"{_name(p)} (= {_name(q)})" for p, q in twins[:5])
        warnings.warn(f"{len(twins)} training images have the same content as a held-out validation image and are "
                      f"left out of training: {names}{', ...' if len(twins) > 5 else ''}", stacklevel=2)
        dropped = {p for p, _ in twins}
        train = [p for p in train if p not in dropped]
    return ImageSplit(train, val, digests)


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _file_digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def fingerprint(files: Sequence[Path], digests: Mapping[Path, bytes] | None = None) -> str:
    """SHA-256 over the list of ``folder/name`` entries and each file's bytes; ``digests`` (e.g.
    :attr:`ImageSplit.digests`) gives files' SHA-256 already computed, so those are not read again."""
    known = digests or {}
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{_name(path)}\0".encode())
        digest.update(known[path] if path in known else _file_digest(path))
    return digest.hexdigest()
