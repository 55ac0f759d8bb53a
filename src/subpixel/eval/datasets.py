"""Benchmark sets: folders of HR images, found by name or path."""

from __future__ import annotations

import os
import re
from pathlib import Path

from subpixel.errors import SubpixelError
from subpixel.io.image import is_image_path

__all__ = ["STANDARD_SETS", "resolve_dataset", "standard_set", "dataset_images", "natural_key",
           "shared_data_root"]

STANDARD_SETS = ("Set5", "Set14", "B100", "Urban100")
_DIGITS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key of a file name: digit runs compare as integers, text case-insensitively
    (``frame2`` before ``frame10``, as ``frame%d`` numbering means); the name itself breaks ties."""
    parts = _DIGITS.split(name)  # text, digits, text, ...: the same kind at the same position
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def shared_data_root() -> Path | None:
    """The ``shared/data`` folder: ``$SUBPIXEL_DATA`` (an error when it is not a folder), else
    ``../shared/data`` beside the cwd or the repository."""
    env = os.environ.get("SUBPIXEL_DATA")
    if env:
        if not Path(env).is_dir():
            raise SubpixelError(f"SUBPIXEL_DATA={env} is not a folder")
        return Path(env)
    for c in (Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[4] / "shared" / "data"):
        if c.is_dir():
            return c
    return None


def standard_set(name: str) -> Path | None:
    """The shared folder of a benchmark set (``Set5``...) or video set (``Vid4``) named exactly ``name``."""
    if not name or Path(name).name != name or name in (".", ".."):
        return None
    root = shared_data_root()
    found = [root / sub / name for sub in ("benchmarks", "video")] if root is not None else []
    return next((cand for cand in found if cand.is_dir()), None)


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A set's folder. A bare name (``Set5``, ``Vid4``) means the shared copy under ``shared/data``
    (``benchmarks/``, ``video/``), else a folder of that name here, else one directly under
    ``shared/data``; a path (``./Set5``, ``/data/mine``) is that folder, without looking at
    ``shared/data`` (nor ``$SUBPIXEL_DATA``)."""
    text = str(name_or_path)
    explicit = text.startswith(".") or any(sep in text for sep in ("/", os.sep))
    if not explicit:
        shared = standard_set(text)
        if shared is not None:
            return shared
    path = Path(name_or_path)
    if path.is_dir():
        return path
    root = None if explicit else shared_data_root()
    if root is not None and (root / text).is_dir():
        return root / text
    hint = "" if explicit or root else " (no shared/data found: set SUBPIXEL_DATA or pass a folder)"
    raise SubpixelError(f"dataset {text!r} not found{hint}")


def dataset_images(folder: Path, natural: bool = True) -> list[Path]:
    """Image files of a set (hidden files and folders skipped), in natural order of their names (see
    :func:`natural_key`), or with ``natural=False`` in plain name order (training data: its fingerprint,
    held-out slice and crop streams depend on the order, so runs and shipped cards keep theirs)."""
    files = sorted((p for p in folder.iterdir() if is_image_path(p) and p.is_file()),  # not a folder "x.png"
                   key=(lambda p: natural_key(p.name)) if natural else (lambda p: p.name))
    if not files:
        raise SubpixelError(f"no images in {folder}")
    return files
