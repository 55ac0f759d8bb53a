"""The training loop: in-memory patch stream, AMP, EMA, clipping, validation, checkpoints and exact resume.

Exact resume: the checkpoint after step ``n`` holds the model, optimizer, grad scaler, EMA,
every global RNG and each rank's crop-stream generator; the learning rate is a pure function
of the step. Continuing from it gives bit-identical weights to a run that never stopped
(same device, thread count and world size; on CUDA, cuDNN autotuning may pick other kernels in
a new process, so equality there is to float rounding).
"""

from __future__ import annotations

import gc
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from subpixel.data.pairs import fingerprint, load_pairs, split_images
from subpixel.data.patches import PatchSampler
from subpixel.engine.device import cpu_has_native_bf16
from subpixel.errors import SubpixelError, first_line
from subpixel.models.base import SRNet
from subpixel.models.registry import build
from subpixel.models.weights import state_dict_on_cpu
from subpixel.train.budget import IterationBudget, resumed_total
from subpixel.train.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    checkpoint_path,
    load_checkpoint,
    prune,
    save_atomic,
)
from subpixel.train.config import (
    Config,
    ConfigError,
    TrainConfig,
    config_to_dict,
    parse_config,
    resolve_data_folder,
    schedule_problem,
    write_recipe,
)
from subpixel.train.control import RunControl, check_finite, check_resume_point, existing_checkpoint
from subpixel.train.distributed import DistInfo, all_gather_cpu, any_rank, barrier, distributed
from subpixel.train.ema import EMA
from subpixel.train.export import export_best
from subpixel.train.losses import build_loss
from subpixel.train.monitor import THROUGHPUT_FILE, ScalarLog, StepTimer, Throughput, record_session
from subpixel.train.optim import build_optimizer, learning_rate
from subpixel.train.provenance import environment
from subpixel.train.rng import capture_rng, restore_rng, seed_everything
from subpixel.train.validate import check_val_images, evaluate_pairs
from subpixel.train.warm_start import warm_start, warn_if_init_changed

__all__ = ["AMP_DTYPES", "Trainer", "TrainResult", "train", "THROUGHPUT_FILE", "amp_dtype"]

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# recipe keys that may change between a checkpoint and its resumption
_RESUMABLE_CHANGES = {"train.iters", "train.val_every", "train.ckpt_every", "train.keep_last", "train.log_every",
                      "notes"}


def amp_dtype(amp: str, device: torch.device, key: str = "amp", warn: bool = True) -> torch.dtype | None:
    """The autocast dtype of recipe setting ``amp`` on ``device`` (None: off); fp16 needs CUDA, and bf16
    on a CPU without native bf16 warns (``warn``) that it is emulated."""
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"{key} fp16 needs CUDA; use bf16 or off on {device.type}")
    if amp == "bf16" and device.type == "cpu" and warn and not cpu_has_native_bf16():
        warnings.warn(f"{key} bf16 on a CPU without AVX512-BF16/AMX is emulated and can be many times "
                      "slower than amp: off", stacklevel=3)
    return AMP_DTYPES[amp]


@dataclass
class TrainResult:
    """What a training session ends with."""

    net: SRNet  # the validated/exported weights: the EMA when enabled
    iteration: int
    best: dict[str, float] | None  # {"iteration", "psnr", "ssim"} of the best validation
    throughput: Throughput | None


def _stream_seed(seed: int, rank: int) -> int:
    """A distinct crop-stream seed per rank."""
    return (seed * 0x9E3779B1 + 0x632BE5AB * (rank + 1)) % 2**63


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and key != "args":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


class Trainer:
    """One rank's training state, built from a validated recipe.

    ``resuming``: :meth:`resume` follows, whose checkpoint holds the weights and their provenance, so
    ``model.init`` is not read (it may have changed or gone since).
    """

    def __init__(self, cfg: Config, run_dir: Path, info: DistInfo, *, quiet: bool = False,
                 resuming: bool = False) -> None:
        self.cfg, self.run_dir, self.info, self.quiet = cfg, Path(run_dir), info, quiet
        d, m, t = cfg.data, cfg.model, cfg.train
        dev = info.device
        if d.batch % info.world:
            raise ConfigError(f"data.batch {d.batch} does not split evenly over {info.world} processes")
        self.amp_dtype = amp_dtype(t.amp, dev, "train.amp", warn=info.is_main)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch shapes: autotuned convolutions

        self.loss_fn = build_loss(cfg.loss.name, cfg.loss.args, cfg.loss.channels)
        seed_everything(cfg.seed)
        try:
            self.net = build(m.name, m.scale, **m.args).to(dev)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.args do not fit {m.name!r}: {first_line(err)}") from None
        except SubpixelError as err:
            raise ConfigError(f"model: {err}") from None
        init = warm_start(self.net, m.init, arch=m.name) if m.init and not resuming else None
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise SubpixelError(f"architecture {m.name!r} has no trainable parameters")
        self.model: nn.Module = self.net
        if info.world > 1:
            self.model = DistributedDataParallel(self.net, device_ids=[dev] if dev.type == "cuda" else None)
        self.ema = EMA(self.net, t.ema) if t.ema > 0 else None
        self.optimizer = build_optimizer(params, cfg.optim)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=t.amp == "fp16")

        folders = [resolve_data_folder(f) for f in d.train]
        split = split_images(folders, d.val_count, d.val_names)
        check_val_images(split.val, m.scale)  # every rank: a rank that raised alone would leave the others waiting
        self.held_out = bool(split.val)  # known on every rank; only rank 0 holds the images
        self.val_pairs = [(p.lr.to(dev), p.hr.to(dev)) for p in load_pairs(split.val, m.scale)] \
            if info.is_main else []
        self.sampler = PatchSampler(load_pairs(split.train, m.scale), m.scale, d.patch, d.batch // info.world,
                                    augment=d.augment, device=dev, seed=_stream_seed(cfg.seed, info.rank))
        if self.sampler.skipped and info.is_main:
            skipped = self.sampler.skipped
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            warnings.warn(f"{len(skipped)} training images are smaller than data.patch={d.patch} "
                          f"LR pixels and are not used: {', '.join(skipped[:5])}{more}", stacklevel=2)
        self.meta: dict[str, Any] = {}
        if info.is_main:
            self.meta = {"data": {"folders": list(d.train), "train_images": self.sampler.num_images,
                                  "val_images": [f"{p.parent.name}/{p.name}" for p in split.val],
                                  "sha256": fingerprint(split.train + split.val, split.digests)},
                         "seed": cfg.seed, **environment(dev, info.world)}
            if init is not None:
                self.meta["init"] = init
        self.iteration = 0
        self.best: dict[str, float] | None = None
        self.validated = False  # whether the weights at self.iteration were validated
        self._wall_before = 0.0
        self._clock = time.perf_counter()
        self._postfix: dict[str, str] = {}  # the progress bar's

    def drop_ddp(self) -> None:
        """Free the ``DistributedDataParallel`` wrapper now, while the process group lives (it sits in reference
        cycles, so only the garbage collector frees it). Freed after the group, it would end the group in its
        own destructor, holding the GIL while joining gloo's threads, one of which may need the GIL to free the
        last collective's tensors: a deadlock (pytorch/pytorch#56297), seen when Ctrl-C stops a DDP run."""
        if self.model is not self.net:
            self.model = self.net
            gc.collect()

    @property
    def eval_net(self) -> SRNet:
        """The weights validation and export use: the EMA when enabled."""
        return self.ema.net if self.ema is not None else self.net

    def _wall_seconds(self) -> float:
        return self._wall_before + time.perf_counter() - self._clock

    def resume(self, path: Path, fixed_iters: bool = False) -> None:
        """Restore the full training state of checkpoint ``path``.

        A total iterations a ``--budget`` fitted (recorded in the checkpoint) replaces the recipe's
        ``train.iters``, unless ``fixed_iters`` (``--max-iters``); a new budget refits it from there.
        """
        ckpt = load_checkpoint(path)
        self.cfg.train.iters = resumed_total(ckpt["meta"], self.cfg.train.iters, path, fixed_iters, "train.iters",
                                             say=self.info.is_main and not self.quiet)
        # the checkpoint's recipe read anew, so keys added since it was written compare as their defaults
        written = parse_config(ckpt["config"])
        old, new = _flatten(config_to_dict(written)), _flatten(config_to_dict(self.cfg))
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        before = ckpt["meta"].get("data", {}).get("sha256")  # the same file on every rank
        movable = _RESUMABLE_CHANGES | ({"data.train"} if before is not None else set())  # checked by content
        blocking = [k for k in changed if k not in movable]
        if blocking:
            raise ConfigError(f"the recipe (with any --amp override) differs from the checkpoint {path.name} in "
                              f"{', '.join(blocking)}; restore those values or train into another --out folder")
        check_resume_point(path, ckpt["iteration"], self.cfg.train.iters, "train.iters")
        if any_rank(self.info.is_main and before is not None and before != self.meta["data"]["sha256"],
                    self.info):  # rank 0 knows
            raise ConfigError(f"the training images differ from those of checkpoint {path.name} (files added, "
                              "removed, changed or renamed, folders included: the fingerprint covers each image's "
                              "folder and file name and its bytes); restore them or train into another --out folder")
        if "data.train" in changed and self.info.is_main:
            warnings.warn(f"data.train changed from {old['data.train']} to {new['data.train']}; the images are "
                          "the same (SHA-256), so the run continues", stacklevel=2)
        if "train.iters" in changed and self.info.is_main:
            warnings.warn(f"train.iters changed from {old['train.iters']} to {new['train.iters']}: "
                          "the learning-rate schedule differs from here on", stacklevel=2)
        self.net.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.net.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"])
        states = ckpt["sampler"]
        if len(states) != self.info.world:
            why = f"checkpoint was written by {len(states)} processes, resuming with {self.info.world}"
        elif not self.sampler.set_state(states[self.info.rank]):
            why = f"checkpoint's crop streams were drawn on another device type than {self.info.device.type}"
        else:
            why = ""
        if why:
            if self.info.is_main:
                warnings.warn(f"{why}: the crop streams restart from new seeds", stacklevel=2)
            self.sampler.reseed(_stream_seed(self.cfg.seed + ckpt["iteration"], self.info.rank))
        self.iteration = ckpt["iteration"]
        self.validated = self._validates_after(self.iteration, written.train)  # the loop's rule when it was written
        self.best = ckpt["best"]
        self._wall_before = ckpt["wall_seconds"]
        if self.info.is_main:
            self._keep_provenance(ckpt["meta"])

    def _keep_provenance(self, meta: dict[str, Any]) -> None:
        """Carry the checkpoint's record of the weights the run started from and of the budget that set
        ``train.iters`` (this session may run without ``--budget``; a new fit replaces it)."""
        for key in ("init", "budget"):
            if key in meta:
                self.meta[key] = meta[key]
        if self.cfg.model.init:
            warn_if_init_changed(self.cfg.model.init, meta.get("init"))

    def _step(self, lr_img: torch.Tensor, hr_img: torch.Tensor) -> torch.Tensor:
        t = self.cfg.train
        rate = learning_rate(self.iteration, t.iters, self.cfg.optim.lr, self.cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        with torch.autocast(self.info.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            sr = self.model(lr_img)
        loss = self.loss_fn(sr.float(), hr_img)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        if self.ema is not None:
            self.ema.update(self.net, self.iteration)
        return loss.detach()

    def _validates_after(self, step: int, t: TrainConfig) -> bool:
        """Whether the loop validates the weights after ``step`` under the settings ``t`` (at ``train.iters``,
        and every ``val_every``), given held-out images."""
        return self.held_out and (step == t.iters or bool(t.val_every and step % t.val_every == 0))

    def validate(self) -> tuple[float, float]:
        """Y-PSNR/SSIM of :attr:`eval_net` on the held-out images (rank 0)."""
        return evaluate_pairs(self.eval_net, self.val_pairs, self.cfg.model.scale, self.info.device)

    def _validate_and_keep_best(self, log: ScalarLog, bar: tqdm) -> None:
        psnr, ssim = self.validate()
        log.scalar("val/psnr_y", psnr, self.iteration)
        log.scalar("val/ssim_y", ssim, self.iteration)
        improved = self.best is None or psnr > self.best["psnr"]
        if improved:
            self.best = {"iteration": self.iteration, "psnr": psnr, "ssim": ssim}
            save_atomic({"iteration": self.iteration, "psnr": psnr, "ssim": ssim,
                         "weights": state_dict_on_cpu(self.eval_net), "config": config_to_dict(self.cfg),
                         "meta": self.meta, "wall_seconds": self._wall_seconds()},
                        self.run_dir / CHECKPOINT_DIR / BEST)
            self._postfix["best"] = f"{psnr:.2f}dB"
            bar.set_postfix(self._postfix, refresh=False)
        if not self.quiet:
            note = " (best)" if improved else ""
            bar.write(f"iter {self.iteration}: val Y-PSNR {psnr:.3f} dB, SSIM {ssim:.4f}{note}")

    def drop_stale_best(self) -> None:
        """Forget a ``best.pt`` validated after the point this run starts from (a run killed after its last
        checkpoint, or an earlier run in the same folder): its weights are not on this run's path."""
        best_file = self.run_dir / CHECKPOINT_DIR / BEST
        if best_file.is_file() and load_checkpoint(best_file)["iteration"] > self.iteration:
            best_file.unlink()
            self.best = None

    def save(self) -> None:
        """Write the training-state checkpoint (collective: every rank must call it; rank 0 writes); diverged
        (non-finite) weights stop the run instead."""
        check_finite(self.net, self.iteration)
        streams = all_gather_cpu(self.sampler.get_state(), self.info)
        if not self.info.is_main:
            return
        state = {
            "iteration": self.iteration, "config": config_to_dict(self.cfg), "meta": self.meta,
            "model": state_dict_on_cpu(self.net),
            "ema": state_dict_on_cpu(self.ema.net) if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": capture_rng(), "sampler": streams, "best": self.best, "wall_seconds": self._wall_seconds(),
        }
        save_atomic(state, checkpoint_path(self.run_dir, self.iteration))
        prune(self.run_dir, self.cfg.train.keep_last, self.cfg.train.ckpt_every)

    def fit(self, until: int | None = None, time_limit: float | None = None,
            budget: IterationBudget | None = None) -> TrainResult:
        """Train to ``train.iters`` and report speed.

        Stops early, with a checkpoint, after step ``until`` or at the first logging step after
        ``time_limit`` seconds of this call (so a run fits a fixed-length job and resumes later).
        ``budget`` resets ``train.iters`` from the measured speed so the run ends within its seconds.
        Ctrl-C (on any rank under ``torchrun``) ends the current step on every rank, checkpoints it, records
        the session's speed and raises :class:`Interrupted` (a ``KeyboardInterrupt``) once the user was told.
        """
        t, main = self.cfg.train, self.info.is_main
        control = RunControl(self.info, budget, time_limit)
        first = self.iteration
        stop = t.iters if until is None else min(until, t.iters)
        timer = StepTimer(self.info.device)
        log = ScalarLog(self.run_dir / "tb" if main else None, start=self.iteration)
        bar = tqdm(total=t.iters, initial=self.iteration, disable=self.quiet or not main, unit="it",
                   dynamic_ncols=True, desc=f"{self.cfg.model.name} x{self.cfg.model.scale}")
        loss_sum = torch.zeros((), device=self.info.device)
        losses = 0
        interrupted = False
        self._clock = time.perf_counter()
        try:
            if self.iteration == t.iters and self.held_out and not self.validated:
                # train.iters lowered on resume to where the run stopped: validated (and checkpointed) as a run
                # reaching it would be, so its best weights and export match
                if main:
                    self._validate_and_keep_best(log, bar)
                self.validated = True
                self.save()
            with control.session(self.iteration):
                while self.iteration < stop:
                    control.vote()
                    timer.begin()
                    batch = self.sampler.sample()
                    timer.data_ready()
                    loss_sum += self._step(*batch)
                    timer.end()
                    losses += 1
                    bar.update()
                    it = self.iteration
                    total = control.refit(it, t.iters, self.meta, self.run_dir, bar, "train.iters", say=not self.quiet)
                    if total is not None:
                        assert budget is not None
                        stop = self._set_total(total, until, budget)
                    if it % t.log_every == 0 or it == stop:
                        loss, losses = loss_sum.item() / losses, 0
                        loss_sum.zero_()
                        self._log(log, bar, loss, timer.window())
                        check_finite(self.net, it)
                        if it < stop and control.out_of_time():
                            stop = it
                            if main and not self.quiet:
                                bar.write(f"time limit reached at iteration {it}: checkpointing; "
                                          "continue with --resume", file=sys.stderr)
                    self.validated = self._validates_after(it, t)
                    if main and self.validated:
                        self._validate_and_keep_best(log, bar)
                        control.paused()
                    # Ctrl-C on any rank (every rank stops after this same step): this step is complete, so its
                    # checkpoint resumes exactly
                    interrupted = control.interrupted()
                    if it == stop or interrupted or (t.ckpt_every and it % t.ckpt_every == 0):
                        self.save()
                        control.paused()
                    if interrupted:  # no rank leaves before rank 0 has written the checkpoint
                        barrier(self.info)
                        break
        finally:
            self._wall_before = self._wall_seconds()
            self._clock = time.perf_counter()
            bar.close()
            log.close()
        speed = timer.summary()
        if main and speed is not None:
            self._report(speed, first, say=not interrupted)  # an interrupted session's speed counts too
        if interrupted:
            control.raise_interrupted(self.iteration, self.run_dir, say=not self.quiet)
        return TrainResult(self.eval_net, self.iteration, self.best, speed)

    def _set_total(self, total: int, until: int | None, budget: IterationBudget) -> int:
        """Apply a budget's new ``train.iters`` (which :meth:`RunControl.refit` recorded) to the recipe and its
        file; returns the new stopping step.

        A total too short for the schedule (not above ``schedule.warmup`` or a milestone) is kept, with a
        warning: the budget's deadline wins over the schedule running its course.
        """
        problem = schedule_problem(self.cfg.schedule, total)
        if problem and (len(budget.fits) == 1 or not schedule_problem(self.cfg.schedule, self.cfg.train.iters)):
            warnings.warn(f"iteration budget: {problem}", stacklevel=3)  # on its first fit, or when newly short
        self.cfg.train.iters = total
        write_recipe(self.run_dir, config_to_dict(self.cfg))
        return total if until is None else min(until, total)

    def _log(self, log: ScalarLog, bar: tqdm, loss: float, speed: tuple[float, float] | None) -> None:
        it = self.iteration
        log.scalar("train/loss", loss, it)
        log.scalar("train/lr", self.optimizer.param_groups[0]["lr"], it)
        postfix = self._postfix = {"loss": f"{loss:.4g}"}
        if speed is not None:
            log.scalar("perf/iters_per_s", speed[0], it)
            log.scalar("perf/data_wait_share", speed[1], it)
            postfix["data"] = f"{100 * speed[1]:.1f}%"
        if self.best is not None:
            postfix["best"] = f"{self.best['psnr']:.2f}dB"
        bar.set_postfix(postfix, refresh=False)

    def _report(self, speed: Throughput, first: int, say: bool = True) -> None:
        """Add this session's speed to the run's throughput file and, when ``say``, print it."""
        d = self.cfg.data
        record = {**speed.to_dict(), "from_iteration": first, "to_iteration": self.iteration, "batch": d.batch,
                  "patch": d.patch, "device": self.meta.get("device"), "world_size": self.info.world}
        record_session(self.run_dir / THROUGHPUT_FILE, record)
        if say and not self.quiet:
            tqdm.write(f"throughput: {speed.iters_per_s:.1f} it/s, waiting for data "
                       f"{100 * speed.data_wait_share:.2f}% of step time ({speed.iterations} steps measured)")


def train(cfg: Config, run_dir: Path, *, device: str = "auto", resume: bool = False, quiet: bool = False,
          until: int | None = None, time_limit: float | None = None, export: Path | None = None,
          budget: IterationBudget | None = None, max_iters: int | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (single process, or one rank of a ``torchrun`` job).

    ``resume`` continues from the run's last checkpoint when there is one; without it an
    existing checkpoint is an error. ``until`` (a step) and ``time_limit`` (seconds of training)
    stop early with a checkpoint; ``budget`` fits ``train.iters`` to a wall-clock budget
    (:mod:`subpixel.train.budget`; a fit too short for ``schedule.warmup`` or a milestone warns and
    keeps the deadline; a resumed run continues with the total an earlier fit recorded in its checkpoint).
    ``max_iters`` replaces ``train.iters`` (and such a total). ``export`` writes the best weights and a
    model card there once the run has reached ``train.iters`` (rank 0). A ``train.iters`` not above
    ``schedule.warmup`` and every milestone warns here (``subpixel train`` refuses such a recipe as
    written; see :func:`schedule_problem`).
    """
    run_dir = Path(run_dir)
    if max_iters is not None:
        cfg.train.iters = max_iters
    problem = schedule_problem(cfg.schedule, cfg.train.iters) if budget is None else None
    if problem:  # a short trial run (``--max-iters``) or a total an earlier budget fitted: allowed, but said
        warnings.warn(problem, stacklevel=2)
    with distributed(device) as info:
        last = existing_checkpoint(run_dir, resume)
        trainer = Trainer(cfg, run_dir, info, quiet=quiet, resuming=last is not None)
        try:
            if last is not None:
                trainer.resume(last, fixed_iters=max_iters is not None)
            if info.is_main:
                trainer.drop_stale_best()
                run_dir.mkdir(parents=True, exist_ok=True)
                write_recipe(run_dir, config_to_dict(cfg))
                if not quiet and trainer.iteration >= cfg.train.iters:
                    tqdm.write(f"{run_dir} is already at train.iters ({cfg.train.iters}); nothing to train"
                               f"{', exporting' if export is not None else ''}")
                elif not quiet:
                    tqdm.write(f"{'resuming from ' + last.name if last else 'training'} into {run_dir}: "
                               f"{trainer.sampler.num_images} training images, {len(trainer.val_pairs)} held out, "
                               f"{trainer.net.num_parameters():,} parameters on {info.device}"
                               f"{f' x {info.world} processes' if info.world > 1 else ''}")
            result = trainer.fit(until, time_limit, budget)
            barrier(info)
        finally:
            trainer.drop_ddp()  # before the process group ends, also when training stopped with an exception
        if export is not None and info.is_main and result.iteration >= cfg.train.iters:
            export_best(run_dir, export, notes=cfg.notes)
    return result
