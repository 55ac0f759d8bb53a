"""Where a model came from: code version, library versions and hardware."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import torch

from subpixel.train.config import IN_CHECKOUT, REPO_ROOT

__all__ = ["git_commit", "environment"]


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when the tree has changes), if this package runs from its
    git checkout (an editable install).

    ``SUBPIXEL_GIT_COMMIT``, when set, wins: a copy of the tree on a training machine may carry a
    stale or no ``.git``, so the command that sends it there names the commit it sent.
    """
    given = os.environ.get("SUBPIXEL_GIT_COMMIT")
    if given:
        return given
    if not IN_CHECKOUT:  # an installed package: a git folder above it (a venv inside a checkout) is not its source
        return None
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def environment(device: torch.device, world: int) -> dict[str, Any]:
    """Code and library versions and the training hardware."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"git_commit": git_commit(), "torch": str(torch.__version__), "cuda": torch.version.cuda,
            "device": name, "world_size": world}
