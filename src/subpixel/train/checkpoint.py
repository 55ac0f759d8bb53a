"""Checkpoint files of a run: atomic writes, the last ``K`` kept, the best by validation PSNR.

A run directory holds ``checkpoints/iter_XXXXXXXX.pt`` (full training state; see :func:`prune`) and
``checkpoints/best.pt`` (the validated weights). They are written with :func:`torch.save` and
read with ``torch.load(weights_only=True)``: tensors and plain Python values only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from subpixel.errors import SubpixelError
from subpixel.io.atomic import write_atomic

__all__ = ["CHECKPOINT_DIR", "BEST", "checkpoint_path", "checkpoint_iteration", "list_checkpoints", "latest_checkpoint",
           "save_atomic", "prune", "load_checkpoint"]

CHECKPOINT_DIR = "checkpoints"
BEST = "best.pt"
_PREFIX = "iter_"


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    """Where the checkpoint after ``iteration`` steps lives."""
    return run_dir / CHECKPOINT_DIR / f"{_PREFIX}{iteration:08d}.pt"


def checkpoint_iteration(path: Path) -> int:
    """The step a training-state checkpoint was written after, from its name."""
    return int(path.stem[len(_PREFIX):])


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Training-state checkpoints of a run, oldest first."""
    folder = run_dir / CHECKPOINT_DIR
    found = [p for p in folder.glob(f"{_PREFIX}*.pt") if p.stem[len(_PREFIX):].isdigit()]
    return sorted(found, key=checkpoint_iteration)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest training-state checkpoint, if any."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save(obj, f))


def prune(run_dir: Path, keep: int, every: int) -> None:
    """Keep the newest training-state checkpoint and the ``keep - 1`` newest others written on schedule (after a
    multiple of ``every`` steps); delete the rest. A stop checkpoint (Ctrl-C, a time limit) thus stays only
    while it is the newest, and a run stopped and resumed ends with the files of one that never stopped."""
    found = list_checkpoints(run_dir)
    regular = [p for p in found[:-1] if every and checkpoint_iteration(p) % every == 0]
    kept = set(found[-1:] + regular[max(0, len(regular) - keep + 1):])
    for old in found:
        if old not in kept:
            old.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SubpixelError(f"checkpoint not found: {path}") from None
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise SubpixelError(f"cannot read checkpoint {path}: {err}") from None
