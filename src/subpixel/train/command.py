"""``subpixel train``: train a model from a YAML recipe (one process, or every rank under ``torchrun``)."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import click

from subpixel.cli import rank0
from subpixel.commands.options import device_option, emit_json
from subpixel.errors import SubpixelError
from subpixel.io.atomic import write_atomic
from subpixel.models.weights import is_weights_path
from subpixel.train.budget import BUDGET_FILE, IterationBudget
from subpixel.train.config import ConfigError, load_config, read_recipe, schedule_problem


@click.command()
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (checkpoints, TensorBoard logs, throughput.json) [default: runs/<recipe name>].")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint, if it has one.")
@click.option("--max-iters", type=click.IntRange(min=1), default=None, help="Override train.iters of the recipe.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MINUTES",
              help="Stop with a checkpoint after about this many minutes of training (resume with --resume).")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MINUTES",
              help="Set train.iters from the measured speed so the run ends within about this many minutes "
                   "of this command, data loading included (the schedule fits the chunk; subpixel.train.budget).")
@click.option("--follow", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="With --budget: take train.iters from that run's budget.json (an ablation trained for the "
                   "same iterations as the run it is compared with).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="At the end, write the best (EMA) weights and a model card to this .safetensors file.")
@device_option
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default=None,
              help="Override the recipe's mixed precision (e.g. off on a CPU without native bf16); recorded with "
                   "the run, so pass it again with --resume.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summaries.")
@click.option("--json", "as_json", is_flag=True, help="No progress bar; print a JSON summary at the end (where the run "
              "stands, best validation, this session's speed, the weights file written; rank 0 only).")
def train(recipe: Path, out: Path | None, resume: bool, max_iters: int | None, time_limit: float | None,
          budget: float | None, follow: Path | None, export_path: Path | None, device: str, amp: str | None,
          quiet: bool, as_json: bool) -> None:
    """Train a model from RECIPE (YAML).

    Multi-GPU: torchrun --nproc_per_node N --no-python subpixel train RECIPE (data.batch is
    the global batch, split over the processes).
    """
    from subpixel.train.trainer import train as run

    run_dir = out if out is not None else Path("runs") / recipe.stem
    quiet = quiet or as_json
    time_limit = None if time_limit is None else 60 * time_limit  # seconds
    if export_path is not None:
        _check_export_is_not_the_run(export_path, run_dir)
        _check_writable(export_path)
    if follow is not None and budget is None:
        raise click.BadParameter("needs --budget", param_hint="--follow")
    if budget is not None and max_iters is not None:
        raise click.BadParameter("--budget sets the iterations itself", param_hint="--max-iters")
    _check_run_dir(run_dir)
    if follow is not None and not follow.is_dir():  # a leader started at the same time may not have made it yet
        warnings.warn(f"--follow {follow}: no such run folder (yet); without its {BUDGET_FILE} after the warm-up "
                      "this run fits its iterations to its own speed", stacklevel=1)
    fit = None if budget is None else _budget(60 * budget, follow)
    raw = read_recipe(recipe)
    if isinstance(raw, dict) and raw.get("model") == "frvsr":
        raw = raw if amp is None else {**raw, "amp": amp}
        summary = _train_video(raw, run_dir, resume, max_iters, time_limit, fit, export_path, device, quiet)
        if as_json and rank0():
            emit_json({"recipe": str(recipe), **summary})
        return
    cfg = load_config(recipe, raw)
    problem = schedule_problem(cfg.schedule, cfg.train.iters) if budget is None and max_iters is None else None
    # the recipe as run; with --max-iters (a trial) train() only warns, and with --budget the recipe's train.iters
    # is the schedule's length only until the first fit replaces it (a resumed run starts from its last fit)
    if problem:
        raise ConfigError(f"{recipe}: {problem}")
    if amp is not None:
        cfg.train.amp = amp
    result = run(cfg, run_dir, device=device, resume=resume, quiet=quiet, time_limit=time_limit, export=export_path,
                 budget=fit, max_iters=max_iters)
    complete = result.iteration >= cfg.train.iters
    if as_json and rank0():
        emit_json({"recipe": str(recipe), "run_dir": str(run_dir), "iteration": result.iteration,
                   "iters": cfg.train.iters, "complete": complete, "best_validation": result.best,
                   "throughput": result.throughput.to_dict() if result.throughput else None,
                   "export": str(export_path) if export_path is not None and complete else None})
    elif export_path is not None and not quiet and complete and export_path.is_file():
        click.echo(f"wrote {export_path}")


def _check_writable(path: Path) -> None:
    """Refuse an export path that cannot be written before any training (its folder is made if missing)."""
    if not is_weights_path(path):
        raise click.BadParameter("must end in .safetensors", param_hint="--export")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.BadParameter(f"cannot create {path.parent}: {err.strerror or err}", param_hint="--export") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{path} is not writable", param_hint="--export")


def _check_export_is_not_the_run(path: Path, run_dir: Path) -> None:
    """Refuse an export whose weights or model card (the ``.json`` beside them) would overwrite what the run
    folder itself holds: ``recipe.yaml``, ``throughput.json``, ``budget.json``, FRVSR's ``log.jsonl``, and the
    ``checkpoints/`` and ``tb/`` folders (an FRVSR run's own ``<name>_x<scale>.safetensors`` may be named)."""
    from subpixel.models.weights import card_path
    from subpixel.train.checkpoint import CHECKPOINT_DIR
    from subpixel.train.monitor import THROUGHPUT_FILE

    run = run_dir.resolve()
    for target, what in ((path, "weights"), (card_path(path), "model card")):
        where = target.resolve()
        if where.parent == run and where.name in ("recipe.yaml", THROUGHPUT_FILE, BUDGET_FILE, "log.jsonl"):
            clash = f"would overwrite the run's own {where.name}"
        elif folder := next((f for f in (CHECKPOINT_DIR, "tb") if where.is_relative_to(run / f)), None):
            clash = f"would go into the run's own {folder}/ folder"
        else:
            continue
        raise SubpixelError(f"--export {path}: its {what} {target} {clash} (choose another name or folder)")


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that cannot be made or written, before any data is loaded (nothing is created:
    a recipe refused later leaves no empty folder)."""
    existing = next((p for p in (run_dir, *run_dir.parents) if p.exists()), None)  # a relative path ends at "."
    if existing is None:  # the working folder was removed: left to the run's own error
        return
    if not existing.is_dir():
        what = "is not a folder" if existing == run_dir else f"cannot be made: {existing} is not a folder"
        raise SubpixelError(f"run folder {run_dir} {what} (choose another --out)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SubpixelError(f"run folder {run_dir} cannot be written: {existing} is not writable "
                            "(choose another --out)")


def _budget(seconds: float, follow: Path | None) -> IterationBudget:
    """A budget whose warm-up and measuring window fit short chunks too (a tenth of the budget at most each)."""
    short = min(1.0, seconds / 150)  # the defaults (15 s warm-up, 20 s windows) from 2.5 minutes up
    return IterationBudget(seconds, warmup=15 * short, window=20 * short, recheck=20 * short, follow=follow,
                           origin=time.perf_counter())


def _train_video(raw: dict, run_dir: Path, resume: bool, max_iters: int | None, time_limit: float | None,
                 budget: IterationBudget | None, export_path: Path | None, device: str, quiet: bool
                 ) -> dict[str, Any]:
    """FRVSR recipes (``model: frvsr``) go to the clip trainer (:mod:`subpixel.train.frvsr`); returns a summary."""
    from subpixel.models.weights import card_path
    from subpixel.train.checkpoint import checkpoint_iteration, latest_checkpoint
    from subpixel.train.frvsr import FRVSRConfig, train_frvsr
    from subpixel.train.monitor import THROUGHPUT_FILE, read_sessions

    if max_iters is not None:
        raw = {**raw, "iters": max_iters}
    if device != "auto":
        raw = {**raw, "device": device}
    cfg = FRVSRConfig.from_dict(raw)
    weights = train_frvsr(cfg, run_dir, resume=resume, progress=not quiet, time_limit=time_limit, budget=budget,
                          fixed_iters=max_iters is not None)
    last = latest_checkpoint(run_dir)
    sessions = read_sessions(run_dir / THROUGHPUT_FILE)
    summary = {"run_dir": str(run_dir), "iteration": checkpoint_iteration(last) if last else 0, "iters": cfg.iters,
               "complete": weights is not None, "best_validation": None,  # FRVSR validates on Vid4 at the end only
               "throughput": sessions[-1] if sessions else None, "export": None}
    if weights is None:
        return summary
    if export_path is not None and export_path.resolve() != weights.resolve():
        export_path.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((weights, export_path), (card_path(weights), card_path(export_path))):  # as save_weights
            write_atomic(dst, src.read_bytes())
    if not quiet:
        click.echo(f"wrote {export_path or weights}")
    return {**summary, "export": str(export_path or weights)}
