"""Benchmark sets: folders of HR images, found by name or path."""

from __future__ import annotations

import os
from pathlib import Path

from subpixel.errors import SubpixelError

__all__ = ["STANDARD_SETS", "resolve_dataset", "dataset_images", "shared_data_root"]

STANDARD_SETS = ("Set5", "Set14", "B100", "Urban100")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def shared_data_root() -> Path | None:
    """The ``shared/data`` folder: ``$SUBPIXEL_DATA``, else ``../shared/data`` beside the cwd or repo."""
    env = os.environ.get("SUBPIXEL_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[4] / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A folder path as is, or a standard set name (``Set5``...) under ``shared/data/benchmarks``."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    root = shared_data_root()
    if root is not None:
        for sub in ("benchmarks", "video", "."):
            cand = root / sub / str(name_or_path)
            if cand.is_dir():
                return cand
    hint = "" if root else " (no shared/data found: set SUBPIXEL_DATA or pass a folder)"
    raise SubpixelError(f"dataset {name_or_path!r} not found{hint}")


def dataset_images(folder: Path) -> list[Path]:
    """Image files of a set, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise SubpixelError(f"no images in {folder}")
    return files
