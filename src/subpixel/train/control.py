"""When a training loop stops, for both trainers: the iteration total a budget refits, a time limit, Ctrl-C.

The loop asks after each step (:meth:`RunControl.refit`), on its logging steps
(:meth:`RunControl.out_of_time`, collective under ``torchrun``) and at the end of each step
(:meth:`RunControl.interrupted`: the first Ctrl-C lets the step finish so its checkpoint resumes
exactly; under ``torchrun`` the ranks agree on it every step, so all stop after the same one, whichever
rank got the signal: :meth:`RunControl.vote` at the start of each step). Resume checks and the
divergence check both trainers share live here too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn
from tqdm import tqdm

from subpixel.errors import Interrupted, SubpixelError
from subpixel.train.budget import IterationBudget
from subpixel.train.checkpoint import checkpoint_path, latest_checkpoint
from subpixel.train.config import ConfigError
from subpixel.train.distributed import DistInfo, any_rank, any_rank_later
from subpixel.train.interrupt import deferred_interrupt

__all__ = ["RunControl", "existing_checkpoint", "check_resume_point", "check_finite"]


class RunControl:
    """A training session's stopping rules; ``time_limit`` counts seconds from construction."""

    def __init__(self, info: DistInfo, budget: IterationBudget | None = None,
                 time_limit: float | None = None) -> None:
        if budget is not None and info.world > 1:
            raise SubpixelError("an iteration budget needs a single process (it would differ between ranks)")
        self.info, self.budget, self.time_limit = info, budget, time_limit
        self._started = time.perf_counter()
        self._pending = lambda: False
        self._ballot: Callable[[], bool] | None = None  # this step's vote (under torchrun)

    @contextmanager
    def session(self, iteration: int) -> Iterator[RunControl]:
        """Training from ``iteration``: starts the budget's clock and defers Ctrl-C (on every rank)."""
        if self.budget is not None:
            self.budget.start(iteration)
        with deferred_interrupt(repeat_stops=not _under_torchrun()) as pending:
            self._pending = pending
            try:
                yield self
            finally:
                self._pending, self._ballot = (lambda: False), None

    def refit(self, done: int, total: int, meta: dict[str, Any], run_dir: Path, bar: tqdm, key: str,
              say: bool) -> int | None:
        """After step ``done`` of ``total``: the budget's new total iterations when it changes, else None.

        A new total is recorded as the budget's record in ``meta`` (what checkpoints and the model card keep),
        in the run's ``budget.json`` (for runs that follow this one) and as the progress bar's total; with
        ``say`` the bar says so (recipe key ``key``). The caller sets its recipe's total.
        """
        if self.budget is None:
            return None
        new = self.budget.update(done, total)
        if new is None:
            return None
        meta["budget"] = self.budget.record()
        bar.total = new
        bar.refresh()
        self.budget.write(run_dir)
        if say:
            bar.write(f"iteration budget: {key} set to {new} at iteration {done}")
        return new

    def paused(self) -> None:
        """The time since the last step went to validation or a checkpoint, not training."""
        if self.budget is not None:
            self.budget.pause()

    def out_of_time(self) -> bool:
        """Whether the time limit has passed on any rank (call on the same steps on every rank)."""
        return self.time_limit is not None and any_rank(time.perf_counter() - self._started > self.time_limit,
                                                        self.info)

    def vote(self) -> None:
        """At the start of each step, on every rank (a collective under ``torchrun``): start agreeing, in the
        background while the step runs, on whether Ctrl-C has arrived on any rank (a no-op in one process)."""
        if self.info.world > 1:
            self._ballot = any_rank_later(self._pending(), self.info)

    def interrupted(self) -> bool:
        """At the end of each step: whether to stop for Ctrl-C (checkpoint this step, then raise
        ``KeyboardInterrupt``). In one process, whether it arrived; under ``torchrun``, the outcome of this
        step's :meth:`vote`, the same on every rank, so they all stop after the same step (the one after
        Ctrl-C reached a rank, at most) and its checkpoint holds every rank's state.

        Agreeing on every step keeps the stop prompt (``torchrun`` kills its workers ``--shutdown_timeout``,
        30 s, after forwarding them Ctrl-C) without a blocking exchange per step: one float all-reduced between
        the hosts can take as long as a small model's step (about 0.8 ms measured on a busy 2-core CPU), so it
        runs while the step does.
        """
        if self.info.world == 1:
            return self._pending()
        ballot, self._ballot = self._ballot, None
        return ballot is not None and ballot()

    def raise_interrupted(self, iteration: int, run_dir: Path, say: bool) -> NoReturn:
        """End a session that :meth:`interrupted` stopped, once the checkpoint of step ``iteration`` in ``run_dir`` is
        written and every rank is past it: rank 0 speaks for the job, so the other ranks raise :class:`Interrupted`
        bare. Rank 0 tells how to continue with ``say``, else (``-q``, ``--json``) only says ``interrupted``, and
        raises :class:`Interrupted` with where the run stands as its ``details`` (the CLI's ``--json`` error)."""
        if not self.info.is_main:
            raise Interrupted
        line = f"interrupted: checkpoint at iteration {iteration}; continue with --resume" if say else "interrupted"
        tqdm.write(line, file=sys.stderr)
        raise Interrupted(line, details={"run_dir": str(run_dir), "iteration": iteration,
                                         "checkpoint": str(checkpoint_path(run_dir, iteration))})


def _under_torchrun() -> bool:
    """Whether ``torchrun`` started this process. Its agent forwards the Ctrl-C it gets to its workers, who got
    the terminal's already: that repeat is no second Ctrl-C. A real second one makes the agent terminate the
    workers itself (SIGTERM), as it does when they outlast its ``--shutdown_timeout`` (SIGKILL)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def existing_checkpoint(run_dir: Path, resume: bool) -> Path | None:
    """The run's newest checkpoint; one without ``resume`` is an error (its run would be overwritten)."""
    last = latest_checkpoint(run_dir)
    if last is not None and not resume:
        raise SubpixelError(f"{run_dir} already has checkpoints; pass --resume to continue it or choose another --out")
    return last


def check_resume_point(path: Path, iteration: int, total: int, key: str) -> None:
    """Refuse a checkpoint already past the recipe's total iterations (recipe key ``key``)."""
    if iteration > total:
        raise ConfigError(f"checkpoint {path.name} is at iteration {iteration}, past {key} {total}; "
                            "raise it or train into another --out folder")


def check_finite(net: nn.Module, iteration: int) -> None:
    """Stop a diverged run (non-finite weights after step ``iteration``) before they are checkpointed: the
    checkpoints written so far stay as they were."""
    params = [p.detach() for p in net.parameters()]
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        raise SubpixelError(f"training diverged: the weights are not finite after iteration {iteration} "
                            "(lower the learning rate or clip gradients); the earlier checkpoints are kept")
