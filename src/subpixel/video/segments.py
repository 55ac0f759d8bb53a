"""Resumable segment bookkeeping.

A job works in a hidden folder beside its output (``.NAME.parts/``). Frames are encoded in
segments of ``segment_frames``; a segment counts as done only once its file is complete and
renamed into place and the manifest (JSON, replaced atomically) lists it. The manifest also holds
the input's identity (path, size, mtime) and the options, so ``--resume`` with another input or
other options is refused instead of producing a mixed file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from subpixel.errors import SubpixelError
from subpixel.io.atomic import write_atomic

__all__ = ["Segment", "Manifest", "WorkDir", "input_identity", "open_workdir"]

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """A finished segment: ``frames`` frames whose pts run from ``start_pts`` to ``end_pts``; ``timing``: how
    their times step (:class:`~subpixel.io.video_decode.FrameTiming`'s fields; empty in older manifests)."""

    index: int
    file: str
    frames: int
    start_pts: int
    end_pts: int
    timing: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """What a work folder holds; ``complete`` once the input's last frame is in a segment."""

    input: dict[str, Any]
    options: dict[str, Any]
    segments: list[Segment] = field(default_factory=list)
    complete: bool = False
    version: int = MANIFEST_VERSION

    @property
    def frames_done(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def last_pts(self) -> int | None:
        return self.segments[-1].end_pts if self.segments else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        if d.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {d.get('version')}")
        d["segments"] = [Segment(**s) for s in d["segments"]]
        return cls(**d)

    def mismatch(self, input_id: dict[str, Any], options: dict[str, Any]) -> str | None:
        """Why this manifest cannot be resumed with ``input_id`` and ``options`` (``None``: it can)."""
        for what, old, new in (("input", self.input, input_id), ("option", self.options, options)):
            for key in sorted(set(old) | set(new)):
                if old.get(key) == new.get(key) or (what == "option" and key in _ADDED_OPTIONS and key not in old):
                    continue
                if what == "option" and key == "model" and _auto_pick_of(old.get(key), new.get(key)):
                    continue
                if what == "input":
                    return _changed_input(key, old, new)
                if key == "weights":
                    return "the model's weights differ from the ones the unfinished job started with"
                return f"option {key} was {old.get(key)!r}, now {new.get(key)!r}"
        return None


# options recorded since a later version: a manifest written before has none, and resumes as it did then
_ADDED_OPTIONS = frozenset({"weights"})


def _auto_pick_of(old: Any, new: Any) -> bool:
    """Whether model ``old`` ("NAME xS ENGINE PRECISION") is what ``new`` ("NAME xS auto PRECISION") picked: a
    manifest written before the auto selection was recorded as such names the engine it happened to pick."""
    if not (isinstance(old, str) and isinstance(new, str)):
        return False
    old_parts, new_parts = old.rsplit(" ", 2), new.rsplit(" ", 2)
    return (len(old_parts) == len(new_parts) == 3 and new_parts[1] == "auto" and old_parts[1] != "auto"
            and old_parts[0] == new_parts[0] and old_parts[2] == new_parts[2])


def _changed_input(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why an input identity (see :func:`input_identity`) differs, in words."""
    if key == "path":
        return f"the unfinished job was for another input ({old.get('path')})"
    if key == "mtime_ns":
        change = f"modified {_local_time(new[key])}, was {_local_time(old[key])}"
    else:
        change = f"{old.get('size')} bytes, now {new.get('size')}"
    return f"the input file changed since the unfinished job started ({change})"


def _local_time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="seconds")


def input_identity(path: Path) -> dict[str, Any]:
    """Path, size and modification time: a changed input must not be resumed."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class WorkDir:
    """The hidden work folder of ``output`` and the manifest kept in it."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.parent / f".{output.name}.parts"
        self.manifest_path = self.path / "manifest.json"

    def segment_path(self, index: int, suffix: str) -> Path:
        return self.path / f"segment_{index:06d}{suffix}"

    def partial_path(self, index: int, suffix: str) -> Path:
        """Where segment ``index`` is written before it is complete."""
        return self.path / f"segment_{index:06d}.partial{suffix}"

    def save(self, manifest: Manifest) -> None:
        """Replace the manifest atomically (write, fsync, rename)."""
        write_atomic(self.manifest_path, manifest.to_json())

    def load(self) -> Manifest:
        try:
            return Manifest.from_json(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise SubpixelError(f"cannot resume: {self.manifest_path} is unreadable ({err}); "
                                "use --overwrite to start again") from None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def open_workdir(output: Path, input_id: dict[str, Any], options: dict[str, Any], resume: bool,
                 overwrite: bool) -> tuple[WorkDir, Manifest]:
    """The job's work folder and manifest: a resumed one (``resume``) or a fresh one.

    An unfinished job is never discarded silently: without ``resume`` it needs ``overwrite``.
    """
    work = WorkDir(output)
    if work.path.exists():
        if resume and work.manifest_path.exists():
            manifest = work.load()
            why = manifest.mismatch(input_id, options)
            if why is not None:
                raise SubpixelError(f"cannot resume {output}: {why}; rerun with the same input and options, "
                                    "or without --resume and with --overwrite to start again")
            return work, manifest
        if not (resume or overwrite):
            raise SubpixelError(f"an unfinished job for {output} is in {work.path}: pass --resume to continue "
                                "it or --overwrite to start again")
        work.remove()
    manifest = Manifest(input=input_id, options=options)
    try:
        work.path.mkdir(parents=True)
        work.save(manifest)
    except OSError as err:  # e.g. a file where a folder should be, no permission, a full disk
        work.remove()
        raise SubpixelError(f"cannot write {output}: {err.strerror or err}") from None
    return work, manifest
