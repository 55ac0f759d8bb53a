"""Fit a run's iteration count to a wall-clock budget (a GPU chunk of fixed length) from its measured speed.

The learning-rate schedules are functions of ``step / total``, so a run whose ``total`` is set
early (during warmup) decays fully by the end of the chunk instead of stopping half-way. The
fits are written to ``budget.json`` in the run folder; a second run (an ablation) can follow
another run's total so that both train for the same iterations.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from subpixel.io.atomic import write_atomic

__all__ = ["IterationBudget", "BUDGET_FILE", "fitted_total", "resumed_total"]

BUDGET_FILE = "budget.json"


@dataclass
class IterationBudget:
    """Chooses ``total`` iterations so that training ends within ``seconds`` of :meth:`start`.

    After ``warmup`` seconds (autotuning, allocator growth, other jobs starting) the speed is measured over
    ``window`` seconds and the total set to end ``margin`` of the remaining time from now. Every ``recheck``
    seconds the recent speed (over the last ``smooth`` of the budget, at least two rechecks, so that a load that
    comes and goes does not make the total flap) is compared with the deadline: the total shrinks if the run
    would overrun, and grows back when a fit at both the recent speed and the mean speed of all measured steps
    exceeds it by more than ``grow`` (a slowdown that passed, e.g. another job on the machine); :meth:`pause`
    keeps the time a validation or checkpoint takes out of those measurements (recurring pauses count as an
    overhead per step instead). With ``follow`` (another run folder) the total is that run's latest fitted total
    instead; while that run has not written one, the own measurement runs on, and if it is still missing when
    the own fit would be made (after ``warmup`` and ``window``) the run warns and fits itself until it appears,
    so the deadline holds (a leader started at the same time may not have fitted yet). ``origin``: the clock
    reading the budget counts from (a command's start, so data loading counts too; default: :meth:`start`).
    ``clock`` is injectable for tests.
    """

    seconds: float
    warmup: float = 15.0
    window: float = 20.0
    margin: float = 0.93
    recheck: float = 20.0
    grow: float = 0.1
    smooth: float = 0.1
    follow: Path | None = None
    origin: float | None = None
    clock: Any = time.perf_counter
    fits: list[list[int]] = field(default_factory=list)  # [iteration, total] per change
    _t0: float = field(default=0.0, init=False, repr=False)  # the deadline is _t0 + seconds
    _started: float = field(default=0.0, init=False, repr=False)
    _marks: list[list[float]] = field(default_factory=list, init=False, repr=False)  # [iteration, time], oldest first
    _measured: list[float] = field(default_factory=lambda: [0.0, 0.0], init=False, repr=False)  # steps, seconds
    _last: float | None = field(default=None, init=False, repr=False)  # the clock at the last update or pause
    _paused: list[float] = field(default_factory=lambda: [0, 0.0], init=False, repr=False)  # pauses, seconds
    _first: int = field(default=0, init=False, repr=False)  # the iteration this call started at
    _polled: float | None = field(default=None, init=False, repr=False)  # the clock at the last read of the leader
    _led: bool = field(default=False, init=False, repr=False)  # the leader's total has been read
    _own: bool = field(default=False, init=False, repr=False)  # following, but the leader had no total in time

    def start(self, iteration: int) -> None:
        """Start the clock at ``iteration`` (the first step of this call), unless ``origin`` was given."""
        self._started = self._last = self.clock()
        self._t0 = self._started if self.origin is None else self.origin
        self._marks, self._first, self._paused = [], iteration, [0, 0.0]
        self._polled = None

    def pause(self) -> None:
        """The time since the last step went to other work (validation, a checkpoint): it is left out of
        the speed measurement, which goes on (so frequent checkpoints do not keep it from ever fitting);
        once pauses recur, their time per step so far is expected of the later steps too."""
        now = self.clock()
        if self._last is not None:
            self._paused = [self._paused[0] + 1, self._paused[1] + now - self._last]  # count, seconds
            for mark in self._marks:
                mark[1] += now - self._last
        self._last = now

    def update(self, iteration: int, total: int) -> int | None:
        """After a step: the new total when it changes, else None."""
        now = self._last = self.clock()
        if self.follow is not None:
            return self._follow(iteration, total, now)
        return self._fit(iteration, total, now)

    def _fit(self, iteration: int, total: int, now: float) -> int | None:
        """The total from this run's own speed."""
        if not self._marks:
            if now - self._started >= self.warmup:
                self._marks = [[iteration, now]]
            return None
        it0, t0 = self._marks[-1]
        elapsed = now - t0
        if elapsed < (self.window if not self.fits else self.recheck) or iteration <= it0:
            return None
        self._measured[0] += iteration - it0
        self._measured[1] += elapsed
        horizon = max(2 * self.recheck, self.smooth * self.seconds)
        while len(self._marks) > 1 and self._marks[1][1] <= now - horizon:  # keep the newest mark before it
            self._marks.pop(0)
        self._marks.append([iteration, now])
        rate = (iteration - self._marks[0][0]) / (now - self._marks[0][1])
        left = self._t0 + self.seconds - now
        # validation/checkpoint seconds per step so far, once they recur (a single pause is no pattern)
        overhead = self._paused[1] / max(1, iteration - self._first) if self._paused[0] >= 2 else 0.0

        def steps(speed: float, share: float = 1.0) -> int:
            return int(left * share / (1 / speed + overhead))

        new = max(iteration + 1, iteration + steps(rate, self.margin))
        if not self.fits or (iteration + steps(rate) < total and new < total):
            return self._set(iteration, new)
        mean = self._measured[0] / self._measured[1]  # growth needs the mean speed too: no flapping on noise
        grown = iteration + steps(min(rate, mean), self.margin)
        return self._set(iteration, grown) if grown > total * (1 + self.grow) else None

    def _follow(self, iteration: int, total: int, now: float) -> int | None:
        assert self.follow is not None
        # the own fit would be made now, and the leader has never given a total: read it once more, then fall back
        due = not (self._led or self._own) and bool(self._marks) and now - self._marks[-1][1] >= self.window
        if due or self._polled is None or now - self._polled >= min(self.recheck, 5.0):
            self._polled = now
            try:
                leader = int(json.loads((self.follow / BUDGET_FILE).read_text())["total"])
            except (OSError, ValueError, KeyError, TypeError):
                leader = None
            if leader is not None:
                self._led, self._own = True, False
                target = max(leader, iteration + 1)  # a follower already past the leader's total ends at once
                return None if target == total else self._set(iteration, target)
            if due:
                self._own = True
                warnings.warn(f"following {self.follow}: no {BUDGET_FILE} there after the warm-up; fitting the "
                              "iterations to this run's own speed until the leader's total appears", stacklevel=3)
        if self._own:
            return self._fit(iteration, total, now)
        if not self._led and not self._marks and now - self._started >= self.warmup:
            self._marks = [[iteration, now]]  # the own measurement starts, should the leader not fit in time
        return None

    def _set(self, iteration: int, total: int) -> int:
        self.fits.append([iteration, total])
        return total

    def record(self) -> dict[str, Any]:
        """What the card and ``budget.json`` keep."""
        rec: dict[str, Any] = {"seconds": self.seconds, "fits": self.fits,
                               "total": self.fits[-1][1] if self.fits else None}
        if self.follow is not None:
            rec["follows"] = self.follow.name
            if self._own and not self._led:  # the leader never gave a total: fitted to this run's own speed
                rec["own_fit"] = True
        return rec

    def write(self, run_dir: Path) -> None:
        """``budget.json`` in ``run_dir`` (atomic: a follower may read it at any time)."""
        path = Path(run_dir) / BUDGET_FILE
        write_atomic(path, json.dumps(self.record()) + "\n")


def fitted_total(meta: dict[str, Any]) -> int | None:
    """The total iterations a budget last fitted, from a checkpoint's ``meta`` (None: none was fitted).

    A resumed run continues with it, not with the recipe's own total (unless ``--max-iters`` sets one).
    """
    total = (meta.get("budget") or {}).get("total")
    return total if isinstance(total, int) else None


def resumed_total(meta: dict[str, Any], total: int, path: Path, fixed_iters: bool, key: str, say: bool) -> int:
    """The total iterations a run resumed from checkpoint ``path`` (its ``meta``) continues with: the total its
    budget last fitted, if it has one and ``fixed_iters`` (``--max-iters``) does not hold the recipe's ``total``
    (recipe key ``key``); when that replaces ``total`` and ``say``, the progress stream says so."""
    fitted = fitted_total(meta)
    if fixed_iters or fitted is None or fitted == total:
        return total
    if say:
        tqdm.write(f"{key} {fitted} (the --budget fit of checkpoint {path.name}), not the recipe's {total}",
                   file=sys.stderr)
    return fitted
