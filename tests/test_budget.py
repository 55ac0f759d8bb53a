"""Iteration budgets: fit the total to the measured speed, shrink on a slowdown, grow back, follow a leader."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from subpixel.train.budget import BUDGET_FILE, IterationBudget


class Clock:
    """A fake clock advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(budget: IterationBudget, clock: Clock, total: int, step_seconds, steps: int) -> int:
    """Feed ``steps`` steps of ``step_seconds(i)`` seconds each; returns the final total."""
    budget.start(0)
    for i in range(1, steps + 1):
        clock.now += step_seconds(i)
        new = budget.update(i, total)
        if new is not None:
            total = new
        if i >= total:
            break
    return total


def test_total_fits_the_measured_speed() -> None:
    clock = Clock()
    budget = IterationBudget(100.0, warmup=5, window=10, margin=0.9, clock=clock)
    total = _run(budget, clock, 10_000, lambda i: 0.5, 1000)  # 2 it/s over 100 s: 200 iterations fit
    assert 170 <= total <= 200
    first = budget.fits[0]
    assert first[0] == 30 and first[1] == 30 + int(2 * (100 - 15) * 0.9)  # fitted after 5 + 10 s
    assert budget.record()["total"] == total


def test_a_slowdown_shrinks_the_total_and_a_passing_one_grows_it_back() -> None:
    clock = Clock()
    budget = IterationBudget(100.0, warmup=5, window=10, recheck=10, margin=1.0, clock=clock)
    slow = _run(budget, clock, 10_000, lambda i: 0.5 if i <= 60 else 1.0, 1000)  # half speed after 30 s
    assert len(budget.fits) >= 2 and budget.fits[-1][1] < budget.fits[0][1]
    assert slow <= 60 + 70  # 70 s left at 1 it/s
    clock = Clock()
    steady = IterationBudget(100.0, warmup=5, window=10, recheck=10, clock=clock)
    _run(steady, clock, 10_000, lambda i: 0.5, 1000)
    assert len(steady.fits) == 1  # on time: no refits
    clock = Clock()
    dip = IterationBudget(1000.0, warmup=5, window=10, recheck=10, margin=1.0, clock=clock)
    # 2 it/s, a quarter of that for 30 iterations (another job), then 2 it/s again
    total = _run(dip, clock, 100_000, lambda i: 2.0 if 100 < i <= 130 else 0.5, 100_000)
    totals = [t for _, t in dip.fits]
    assert min(totals) < totals[0] and totals[-1] > min(totals)
    assert 0.8 * 2 * (1000 - 60) <= total <= 2 * 1000  # the dip costs its own time, not the whole budget


def test_a_follower_takes_the_leaders_latest_total(tmp_path: Path) -> None:
    leader = IterationBudget(60.0, clock=Clock())
    leader.fits.append([10, 500])
    leader.write(tmp_path)
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["total"] == 500
    clock = Clock()
    follower = IterationBudget(60.0, follow=tmp_path, clock=clock)
    follower.start(0)
    assert follower.update(1, 1000) == 500
    clock.now += 1
    assert follower.update(2, 500) is None  # not due yet, and unchanged anyway
    leader.fits.append([50, 450])
    leader.write(tmp_path)
    clock.now += 10
    assert follower.update(20, 500) == 450
    assert follower.record()["follows"] == tmp_path.name and follower.record()["total"] == 450
    clock.now += 10
    assert follower.update(460, 450) == 461  # already past the leader's total: stop after this step


def test_a_follower_trains_on_before_the_leader_has_fitted(tmp_path: Path) -> None:
    follower = IterationBudget(60.0, follow=tmp_path / "leader", clock=Clock())
    follower.start(0)
    assert follower.update(1, 1000) is None and follower.fits == []


def test_a_follower_whose_leader_has_no_total_in_time_fits_itself_until_it_appears(tmp_path: Path) -> None:
    clock = Clock()
    follower = IterationBudget(100.0, warmup=5, window=10, margin=0.9, follow=tmp_path / "leader", clock=clock)
    follower.start(0)
    total = 10_000

    def steps(first: int, last: int) -> None:
        nonlocal total
        for i in range(first, last + 1):
            clock.now += 0.5  # 2 it/s
            total = follower.update(i, total) or total

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps(1, 29)  # the own fit is not due yet (5 s warm-up + 10 s window): no warning, no fit
    assert follower.fits == [] and total == 10_000
    with pytest.warns(UserWarning, match=f"following .*leader: no {BUDGET_FILE} there after the warm-up"):
        steps(30, 30)
    assert follower.fits == [[30, 30 + int(2 * (100 - 15) * 0.9)]]  # as it would fit without --follow
    assert total == follower.fits[0][1] and follower.record()["own_fit"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        steps(31, 40)
    assert total == follower.fits[0][1]  # on time: no refit
    leader = IterationBudget(100.0, clock=Clock())  # the leader fits late: the follower takes its total from then on
    leader.fits.append([50, 170])
    (tmp_path / "leader").mkdir()
    leader.write(tmp_path / "leader")
    steps(41, 60)
    assert total == 170 and follower.fits[-1][1] == 170 and "own_fit" not in follower.record()


def test_a_paused_gap_is_not_read_as_a_slowdown() -> None:
    def run(pause: bool) -> IterationBudget:
        clock = Clock()
        budget = IterationBudget(100.0, warmup=5, window=10, recheck=10, margin=1.0, clock=clock)
        budget.start(0)
        total = 10_000
        for i in range(1, 400):
            clock.now += 0.5
            if i == 40:  # a 15 s validation after step 40
                clock.now += 15
                if pause:
                    budget.pause()
                continue
            new = budget.update(i, total)
            total = new if new is not None else total
            if i >= total:
                break
        return budget

    # 2 it/s, fitted to 200 at 15 s; the 15 s gap costs 30 iterations of the deadline, so about 170 still fit
    paused = run(pause=True)
    assert paused.record()["total"] in range(165, 171) and all(165 <= t <= 180 for _, t in paused.fits[1:])
    fits = run(pause=False).fits  # the gap, read as slow steps, shrinks the total far more, until a recheck
    assert min(t for _, t in fits) < 150 and len(fits) > 2  # (the speed is read over two rechecks: less deep)


def test_a_load_that_comes_and_goes_between_rechecks_does_not_make_the_total_flap() -> None:
    clock = Clock()
    budget = IterationBudget(1000.0, warmup=5, window=10, recheck=10, clock=clock)
    # 20 s at 4 it/s, 20 s at 1 it/s, over and over (tests on the machine's other core, in bursts)
    total = _run(budget, clock, 100_000, lambda i: 0.25 if (clock.now // 20) % 2 == 0 else 1.0, 100_000)
    assert len(budget.fits) <= 6 and budget.fits[-1][0] < total / 5, budget.fits  # settles once the horizon fills
    clock = Clock()  # a short budget: the speed is still read over two rechecks, so one slow recheck halves the dip
    short = IterationBudget(150.0, warmup=10, window=10, recheck=10, clock=clock)
    _run(short, clock, 100_000, lambda i: 1.1 if 50 <= clock.now < 60 else 0.3, 100_000)
    assert min(t for _, t in short.fits) > 300, short.fits  # read over one recheck: 258
    assert 0.8 * 2500 <= total <= 2500  # 100 iterations every 40 s: 2.5 it/s on average


def test_frequent_pauses_do_not_keep_a_short_budget_from_fitting() -> None:
    clock = Clock()
    budget = IterationBudget(30.0, warmup=3, window=4, recheck=4, margin=1.0, clock=clock)
    budget.start(0)
    total = 100_000
    for i in range(1, 10_000):
        clock.now += 0.01  # a step
        new = budget.update(i, total)
        total = new if new is not None else total
        if i % 10 == 0:  # a checkpoint every 10 steps, taking as long as the 10 steps
            clock.now += 0.1
            budget.pause()
        if i >= total:
            break
    assert budget.fits and total < 100_000 and clock.now <= 30.5  # ended within the budget
