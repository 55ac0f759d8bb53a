"""Step timing (how long each step waits for its batch) and TensorBoard scalars."""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from subpixel.io.atomic import write_atomic

__all__ = ["THROUGHPUT_FILE", "StepTimer", "Throughput", "ScalarLog", "read_sessions", "record_session",
           "overall_throughput"]

THROUGHPUT_FILE = "throughput.json"  # in a run directory: every session's speed (record_session)


@dataclass(frozen=True)
class Throughput:
    """Training speed over the measured steps of one session."""

    iterations: int
    iters_per_s: float
    data_wait_share: float  # time producing the batch / whole step time
    data_ms_per_iter: float
    step_ms_per_iter: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class StepTimer:
    """Times batch production and the whole step; CUDA events on a GPU (no host sync per step), else wall clock.

    The first ``skip`` steps of a session (allocator and kernel warm-up) are not counted.
    """

    def __init__(self, device: torch.device, skip: int = 1) -> None:
        self.cuda = device.type == "cuda"
        self.skip = skip
        self._marks: list[list] = []
        self._current: list = []
        self._window = [0.0, 0.0, 0]  # data seconds, step seconds, steps since the last window
        self._total = [0.0, 0.0, 0]

    def _mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._current.append(event)
        else:
            self._current.append(time.perf_counter())

    def begin(self) -> None:
        """A step starts: its batch is about to be produced."""
        self._current = []
        self._mark()

    def data_ready(self) -> None:
        """The batch is ready."""
        self._mark()

    def end(self) -> None:
        """The optimizer step is done."""
        self._mark()
        if self.skip > 0:
            self.skip -= 1
        else:
            self._marks.append(self._current)

    def _resolve(self) -> None:
        if self._marks and self.cuda:
            self._marks[-1][-1].synchronize()
        for start, ready, end in self._marks:
            if self.cuda:
                data, step = start.elapsed_time(ready) / 1e3, start.elapsed_time(end) / 1e3
            else:
                data, step = ready - start, end - start
            for acc in (self._window, self._total):
                acc[0] += data
                acc[1] += step
                acc[2] += 1
        self._marks = []

    def window(self) -> tuple[float, float] | None:
        """``(iterations/s, data-wait share)`` since the previous call, or None if nothing was measured."""
        self._resolve()
        data, step, n = self._window
        self._window = [0.0, 0.0, 0]
        return (n / step, data / step) if n and step > 0 else None

    def summary(self) -> Throughput | None:
        """Totals over every measured step of the session."""
        self._resolve()
        data, step, n = self._total
        if not n or step <= 0:
            return None
        return Throughput(n, n / step, data / step, 1e3 * data / n, 1e3 * step / n)


def overall_throughput(sessions: list[dict]) -> dict[str, float | int]:
    """Speed over all ``sessions`` (records of :func:`record_session`), weighted by their measured steps."""
    steps = sum(s["iterations"] for s in sessions)
    step_s = sum(s["iterations"] * s["step_ms_per_iter"] for s in sessions) / 1e3
    data_s = sum(s["iterations"] * s["data_ms_per_iter"] for s in sessions) / 1e3
    return {"sessions": len(sessions), "iterations_measured": steps, "iters_per_s": steps / step_s,
            "data_wait_share": data_s / step_s, "devices": sorted({str(s.get("device")) for s in sessions})}


def _is_session(record: object) -> bool:
    """Whether ``record`` holds the measured steps and times :func:`overall_throughput` reads."""
    if not isinstance(record, dict):
        return False
    values = [record.get(k) for k in ("iterations", "step_ms_per_iter", "data_ms_per_iter")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return False
    steps, step_ms, data_ms = values
    return steps > 0 and step_ms > 0 and data_ms >= 0


def read_sessions(path: Path) -> list[dict]:
    """The session records in throughput file ``path`` (none if it is missing).

    A file written before runs kept every session holds one bare record: it counts as one session. A file
    that is not a throughput record (unreadable, not JSON, another file written over it) warns and counts
    as none; the next session's record replaces it.
    """
    if not path.is_file():
        return []
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        content = None
    sessions = content["sessions"] if isinstance(content, dict) and "sessions" in content else [content]
    if not (isinstance(sessions, list) and sessions and all(_is_session(s) for s in sessions)):
        warnings.warn(f"{path} is not a record of training speed (another file written over it?): the speed "
                      "of the sessions it held is left out", stacklevel=2)
        return []
    return sessions


def record_session(path: Path, record: dict) -> dict:
    """Append one training session's speed ``record`` to the JSON file ``path``; returns its new content.

    The file holds every session of a run (a chunked run has several) and their ``overall`` speed.
    """
    sessions = read_sessions(path)
    sessions.append(record)
    content = {"overall": overall_throughput(sessions), "sessions": sessions}
    write_atomic(path, json.dumps(content, indent=2) + "\n")
    return content


class ScalarLog:
    """TensorBoard scalars under ``folder`` (``None``: log nothing, as on ranks other than 0).

    Without the ``tensorboard`` package a warning says so and nothing is logged. ``start``: the step
    this session begins at (0: a fresh run); TensorBoard hides what earlier sessions logged after it (a run
    killed after its last checkpoint, or before its first), so the curves do not overlap.
    """

    def __init__(self, folder: Path | None, start: int = 0) -> None:
        self.writer = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("TensorBoard logging is off: install the 'tensorboard' package "
                          "(pip install 'subpixel[train]')", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start + 1)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record ``value`` under ``tag`` at iteration ``step``."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
