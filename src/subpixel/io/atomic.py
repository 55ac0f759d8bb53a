"""Atomic file writes: a hidden temporary file beside the target, renamed over it only once complete.

A reader (a player, a follower run, a second process) sees the old file or the new one, never half
of one; an error or Ctrl-C leaves the old file as it was and no temporary file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["replacing", "write_atomic"]

_MAX_NAME_BYTES = 255  # ext4, XFS, Btrfs, APFS, tmpfs; NTFS counts 255 UTF-16 units, never more than bytes


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write; flushed to disk and renamed over ``path`` when the block
    succeeds (so the new file survives a crash), removed when it raises."""
    path = Path(path)
    tmp = path.with_name(_temp_name(path.name))
    try:
        yield tmp
        _sync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _temp_name(name: str) -> str:
    """``.NAME.RANDOM.tmp``, with NAME cut short (by whole characters) where the whole would pass the
    255-byte limit on a file name that most file systems set, so that a long name still writes."""
    token = secrets.token_hex(6)
    while name and len(os.fsencode(f".{name}.{token}.tmp")) > _MAX_NAME_BYTES:
        name = name[:-1]
    return f".{name}.{token}.tmp"


def _sync_file(path: Path) -> None:
    """Flush a written file's data to disk: opened read-only on POSIX (the file may be read-only, e.g. under
    umask 0o222), for writing on Windows, which requires it."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Flush a rename in ``folder`` to disk (POSIX; a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Write ``data`` (bytes, text as UTF-8, or a function writing to the open binary file) to ``path``
    atomically and durably (flushed to disk before the rename). The file gets the permissions of any new
    file (the umask applies)."""
    with replacing(path) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
