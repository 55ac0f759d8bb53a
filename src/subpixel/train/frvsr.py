"""Training FRVSR on synthetic clips (:mod:`subpixel.data.clips`).

Each step draws ``batch`` clips of ``frames`` aligned LR/HR crops, runs the network over the
whole sequence (gradients flow through the recurrence) and minimises

    sr_weight * L1(SR_t, HR_t) averaged over frames  +  flow_weight * flow loss

The flow loss is, with ``flow_loss: warp`` (the default, as in the paper), MSE(warp(LR_{t-1}, flow_t),
LR_t), which trains FNet without flow ground truth; with ``flow_loss: exact`` it is the mean end-point
error of FNet's flow against the true motion the synthetic clips were made with
(:func:`~subpixel.data.clips.exact_flow`). ``sr_weight: 0`` trains FNet alone (the SR network is not
run), e.g. to pre-train it before joint training. Both losses are computed in float32, also when
``amp`` runs the network in bf16/fp16 autocast. ``recurrent: false`` trains the ablation: the same SR
network fed zeros instead of the warped previous estimate, on the same batches for the same
iterations (and so without FNet or its loss). ``ema > 0`` keeps an exponential moving average of
the weights, which is what gets exported.

A run directory holds ``checkpoints/iter_*.pt`` (atomic; read with ``weights_only=True``),
``recipe.yaml``, ``log.jsonl`` (and the same figures as TensorBoard scalars in ``tb/``),
``throughput.json`` (iterations/s and data-wait share per session) and, at the end,
``<name>_x<scale>.safetensors`` with its model card. Batches depend only on ``(seed, iteration)``,
so a resumed run ends with the weights an uninterrupted one would have, and ``torchrun`` ranks can
split each batch and average their gradients into the single-process step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from subpixel.data.clips import ClipSampler, Motion, exact_flow
from subpixel.data.pairs import fingerprint
from subpixel.errors import SubpixelError
from subpixel.eval.datasets import resolve_dataset
from subpixel.io.atomic import write_atomic
from subpixel.models.frvsr import FRVSR, check_flow_args, warp
from subpixel.models.registry import build, check_counts
from subpixel.models.weights import card_path, save_weights
from subpixel.train.budget import IterationBudget, resumed_total
from subpixel.train.checkpoint import checkpoint_path, load_checkpoint, prune, save_atomic
from subpixel.train.config import (
    AmpChoice,
    ScheduleConfig,
    coerce,
    finite_float,
    resolve_data_folder,
    write_recipe,
)
from subpixel.train.control import RunControl, check_finite, check_resume_point, existing_checkpoint
from subpixel.train.distributed import DistInfo, average_gradients, barrier, distributed
from subpixel.train.ema import EMA
from subpixel.train.monitor import (
    THROUGHPUT_FILE,
    ScalarLog,
    StepTimer,
    overall_throughput,
    read_sessions,
    record_session,
)
from subpixel.train.optim import learning_rate
from subpixel.train.provenance import environment
from subpixel.train.trainer import AMP_DTYPES, amp_dtype
from subpixel.train.warm_start import warm_start, warn_if_init_changed

__all__ = ["FRVSRConfig", "train_frvsr", "frvsr_loss"]

# keys that may change between a run and its resumption
_RUNTIME_KEYS = ("iters", "ckpt_every", "keep_last", "log_every", "device", "evaluate")
_CONTAINERS = {"data": list, "arch": dict, "motion": dict}
_ARCH_KEYS = set(inspect.signature(FRVSR.__init__).parameters) - {"self", "scale", "recurrent"}


@dataclass
class FRVSRConfig:
    """An FRVSR recipe. ``patch`` is the LR crop side (HR is ``patch * scale``); ``arch``: FRVSR
    arguments other than ``recurrent`` (channels, blocks, flow_channels, max_flow); ``motion``:
    :class:`~subpixel.data.clips.Motion` fields; ``amp``: ``off``, ``bf16`` or ``fp16`` (CUDA; with a
    gradient scaler) autocast for the network; ``evaluate``: score Vid4 at the end (slow on CPU);
    ``init``: ``.safetensors`` weights to start from, an earlier FRVSR export or, for a recurrent run,
    its ablation's (FNet then starts fresh: zero flow, and the recurrent input enters at zero weight);
    ``flow_loss``: ``warp`` (the paper's: MSE between the current LR frame and the previous one warped
    by FNet's flow) or ``exact`` (end-point error against the clips' true motion,
    :func:`~subpixel.data.clips.exact_flow`); ``sr_weight``: the SR loss's weight, 0 trains FNet alone
    (the SR network is not run), e.g. to pre-train it before joint training.
    ``model: frvsr`` marks a recipe as this trainer's (image recipes have a ``model`` mapping)."""

    data: list[str]
    model: str = "frvsr"
    scale: int = 4
    recurrent: bool = True
    arch: dict[str, Any] = field(default_factory=dict)
    frames: int = 10
    patch: int = 32
    batch: int = 4
    motion: dict[str, float] = field(default_factory=dict)
    iters: int = 50_000
    lr: float = 1e-4
    min_lr: float = 1e-6
    ema: float = 0.0
    flow_weight: float = 1.0
    flow_loss: str = "warp"
    sr_weight: float = 1.0
    amp: str = "off"
    seed: int = 0
    ckpt_every: int = 1000
    keep_last: int = 2
    log_every: int = 100
    device: str = "auto"
    evaluate: bool = False
    init: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FRVSRConfig:
        """Validate a parsed recipe: unknown keys, wrong types and bad values are errors."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SubpixelError(f"unknown FRVSR recipe key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        if "data" not in raw:
            raise SubpixelError("FRVSR recipe lacks 'data' (folders of still images)")
        values = dict(raw)
        for name, value in raw.items():
            default = known[name].default
            expected = _CONTAINERS.get(name, type(default))
            if name == "amp":  # as in image recipes: a bare `off` (YAML false) is "off"
                values[name] = coerce(value, AmpChoice, "FRVSR recipe: amp")
            elif expected is float:
                values[name] = finite_float(value)
                if values[name] is None:
                    raise SubpixelError(f"FRVSR recipe: {name} must be a finite number, got {value!r}")
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise SubpixelError(f"FRVSR recipe: {name} must be {expected.__name__}, got {value!r}")
        if not values["data"] or not all(isinstance(v, str) for v in values["data"]):
            raise SubpixelError(f"FRVSR recipe: data must be a non-empty list of folders, got {values['data']!r}")
        values["motion"] = _motion(values.get("motion", {}))
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Cross-field rules."""
        rules = [(self.model == "frvsr", "model must be frvsr"), (self.scale in (2, 4), "scale must be 2 or 4"),
                 (self.frames >= 2, "frames must be >= 2"),
                 (self.patch >= 8, "patch must be >= 8"), (self.batch >= 1, "batch must be >= 1"),
                 (self.iters >= 1, "iters must be >= 1"), (self.lr > 0, "lr must be > 0"),
                 (0 <= self.seed < 2**64, "seed must be in [0, 2**64)"),
                 (0 <= self.min_lr <= self.lr, "need 0 <= min_lr <= lr"),
                 (0 <= self.ema < 1, "ema must be in [0, 1)"),
                 (self.amp in AMP_DTYPES, "amp must be off, bf16 or fp16"),
                 (self.flow_weight >= 0, "flow_weight must be >= 0"), (self.sr_weight >= 0, "sr_weight must be >= 0"),
                 (self.flow_loss in ("warp", "exact"), "flow_loss must be warp or exact"),
                 (self.sr_weight > 0 or (self.recurrent and self.flow_weight > 0),
                  "sr_weight 0 (FNet alone) needs recurrent: true and flow_weight > 0"),
                 (self.ckpt_every >= 0, "ckpt_every >= 0"),
                 (self.keep_last >= 1, "keep_last must be >= 1"), (self.log_every >= 1, "log_every >= 1"),
                 ("recurrent" not in self.arch, "set recurrent at the top level, not in arch"),
                 (set(self.arch) <= _ARCH_KEYS, f"arch keys must be among {', '.join(sorted(_ARCH_KEYS))}")]
        for ok, why in rules:
            if not ok:
                raise SubpixelError(f"FRVSR recipe: {why}")
        check_counts("frvsr", self.arch, label="FRVSR recipe: arch.")
        check_flow_args(self.arch, label="FRVSR recipe: arch.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _motion(raw: dict[str, Any]) -> dict[str, float]:
    """``motion`` settings as floats: :class:`~subpixel.data.clips.Motion` fields, finite and >= 0."""
    known = [f.name for f in dataclasses.fields(Motion)]
    out = {}
    for key, value in raw.items():
        if key not in known:
            raise SubpixelError(f"FRVSR recipe: unknown motion setting {key!r} (known: {', '.join(known)})")
        number = finite_float(value)
        if number is None or number < 0:
            raise SubpixelError(f"FRVSR recipe: motion.{key} must be a finite number >= 0, got {value!r}")
        out[key] = number
    return out


def frvsr_loss(net: FRVSR, lr: torch.Tensor, hr: torch.Tensor, flow_weight: float, sr_weight: float = 1.0,
               true_flow: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its (detached) parts for float ``(N, T, 3, h, w)`` LR and ``(N, T, 3, H, W)`` HR in [0, 1].

    The flow term is the warp MSE, or with ``true_flow`` (``(N*(T-1), 2, h, w)``, batch-major) the mean
    end-point error; with ``sr_weight`` 0 only FNet runs.
    """
    total, parts, flows = lr.new_zeros(()), {}, None
    if sr_weight > 0:
        sr, flows = net.forward_sequence(lr, return_flows=True)
        sr_loss = F.l1_loss(sr.float(), hr)
        parts["sr_l1"] = sr_loss.detach()
        total = sr_weight * sr_loss
    if net.fnet is None:
        return total, parts
    prev, cur = lr[:, :-1].flatten(0, 1), lr[:, 1:].flatten(0, 1)
    flows = (net.fnet(cur, prev) if flows is None else flows.flatten(0, 1)).float()
    if true_flow is None:
        flow_loss = F.mse_loss(warp(prev, flows), cur)
        parts["flow_mse"] = flow_loss.detach()
    else:
        flow_loss = (flows - true_flow).norm(dim=1).mean()
        parts["flow_epe"] = flow_loss.detach()
    return total + flow_weight * flow_loss, parts


def _loss_text(cfg: FRVSRConfig) -> str:
    sr = f"{cfg.sr_weight:g} x L1 on SR frames" if cfg.sr_weight > 0 else ""
    if not cfg.recurrent:
        return sr
    flow = "MSE flow-warp loss on LR" if cfg.flow_loss == "warp" else "end-point error against the true flow"
    return " + ".join(p for p in (sr, f"{cfg.flow_weight:g} x {flow}") if p)


def _same_recipe(a: dict[str, Any], b: dict[str, Any]) -> bool:
    a = FRVSRConfig(**a).to_dict()  # a checkpoint's recipe, keys added since then at their defaults
    return {k: v for k, v in a.items() if k not in _RUNTIME_KEYS} == \
        {k: v for k, v in b.items() if k not in _RUNTIME_KEYS}


def _card(net: FRVSR, cfg: FRVSRConfig, name: str, throughput: dict[str, Any] | None, meta: dict[str, Any],
          info: DistInfo, stills: int, data_sha: str) -> dict[str, Any]:
    """The model card; ``meta``: the checkpoints' ``wall_seconds`` and provenance (``init``, ``budget``)."""
    arch_args = {**cfg.arch, "recurrent": cfg.recurrent}
    card = {
        "name": name, "architecture": "frvsr", "arch_args": arch_args, "scale": cfg.scale,
        "params": net.num_parameters(),
        "training": {
            "recipe": cfg.to_dict(), "iterations": cfg.iters, "wall_minutes": round(meta["wall_seconds"] / 60, 2),
            "seed": cfg.seed, **environment(info.device, info.world),
            "data": {"folders": list(cfg.data), "stills": stills, "sha256": data_sha,
                     "clips": f"synthetic {cfg.frames}-frame clips from these stills (camera motion only, "
                              "BI degradation)"},
            "loss": _loss_text(cfg),
            "ema": cfg.ema > 0,
            "throughput": throughput,
            **{k: meta[k] for k in ("init", "budget") if k in meta},
        },
        "metrics": {},
    }
    return card


def _record_speed(run_dir: Path, timer: StepTimer, first: int, last: int, cfg: FRVSRConfig,
                  info: DistInfo) -> dict[str, Any] | None:
    """Append this session's speed to the run's throughput file; returns the run's overall speed."""
    speed = timer.summary()
    if speed is None:
        sessions = read_sessions(run_dir / THROUGHPUT_FILE)
        return overall_throughput(sessions) if sessions else None
    record = {**speed.to_dict(), "from_iteration": first, "to_iteration": last, "batch": cfg.batch,
              "frames": cfg.frames, "patch": cfg.patch, "device": str(info.device), "world_size": info.world}
    return record_session(run_dir / THROUGHPUT_FILE, record)["overall"]


def train_frvsr(cfg: FRVSRConfig, run_dir: str | Path, resume: bool = True, progress: bool = True,
                time_limit: float | None = None, budget: IterationBudget | None = None,
                fixed_iters: bool = False) -> Path | None:
    """Train (or resume from the newest checkpoint in ``run_dir``) and export; returns the weights path.

    After ``time_limit`` seconds it stops at the next logging step with a checkpoint and returns None.
    ``budget`` resets ``iters`` from the measured speed (:mod:`subpixel.train.budget`); a resumed run continues
    with the total a budget recorded in its checkpoint, unless ``fixed_iters`` (``--max-iters``). Under
    ``torchrun`` every rank trains on its share of each batch (``batch`` is the global batch) and the
    gradients are averaged, so the job follows the single-process run; rank 0 writes everything and
    the other ranks return None.
    """
    with distributed(cfg.device) as info:
        return _train(cfg, Path(run_dir), info, resume, progress, time_limit, budget, fixed_iters)


def _trim_log(path: Path, start: int) -> None:
    """Keep the records of ``path`` up to iteration ``start``, where this session begins: what a run killed after its
    last checkpoint (or, for a fresh run, before its first) logged beyond it is not this run's history."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int) and record["iteration"] <= start:
            kept.append(line + "\n")
    write_atomic(path, "".join(kept))


def _train(cfg: FRVSRConfig, run_dir: Path, info: DistInfo, resume: bool, progress: bool,
           time_limit: float | None, budget: IterationBudget | None, fixed_iters: bool = False) -> Path | None:
    control = RunControl(info, budget, time_limit)  # the time limit counts data loading too
    device, main = info.device, info.is_main
    if cfg.batch % info.world:
        raise SubpixelError(f"FRVSR recipe: batch {cfg.batch} does not split evenly over {info.world} processes")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: autotuned convolutions
    autocast = amp_dtype(cfg.amp, device, "FRVSR recipe: amp")
    if cfg.evaluate:  # found now, not after training
        resolve_dataset("Vid4")
    torch.manual_seed(cfg.seed)
    net = build("frvsr", cfg.scale, recurrent=cfg.recurrent, **cfg.arch).to(device)
    assert isinstance(net, FRVSR)
    last = existing_checkpoint(run_dir, resume)
    # what the card records beside the weights, kept in every checkpoint: the wall seconds of training and
    # where the weights started (``init``) and the budget that set ``iters``, which a resumed run keeps
    meta: dict[str, Any] = {"wall_seconds": 0.0}
    if cfg.init and last is None:
        meta["init"] = warm_start(net, cfg.init, fresh=("fnet.",), key="FRVSR recipe: init", arch="frvsr")
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ema = EMA(net, cfg.ema) if cfg.ema > 0 else None
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    start = 0
    if last is not None:
        ckpt = load_checkpoint(last)
        if not _same_recipe(ckpt["config"], cfg.to_dict()):
            raise SubpixelError(f"{last} was written by a different recipe; use a new run folder")
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        if ema is not None:
            ema.net.load_state_dict(ckpt["ema"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt["iteration"])
        cfg.iters = resumed_total(ckpt.get("meta", {}), cfg.iters, last, fixed_iters, "iters", say=progress and main)
        check_resume_point(last, start, cfg.iters, "iters")
        meta.update(ckpt.get("meta", {}))
        if cfg.init and main:
            warn_if_init_changed(cfg.init, meta.get("init"), "FRVSR recipe: init")
    sources = [resolve_data_folder(d) for d in cfg.data]
    sampler = ClipSampler(sources, cfg.frames, cfg.patch * cfg.scale, cfg.scale, Motion(**cfg.motion), cfg.seed,
                          device)
    data_sha = fingerprint(sampler.paths)
    if last is not None and ckpt.get("data_sha256", data_sha) != data_sha:
        raise SubpixelError(f"the stills differ from those of {last.name} (files added, removed, changed or renamed, "
                            "folders included: the fingerprint covers each still's folder and file name and its "
                            "bytes); restore them or use a new run folder")
    net.train()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_recipe(run_dir, cfg.to_dict())
        _trim_log(run_dir / "log.jsonl", start)
    barrier(info)
    timer = StepTimer(device)
    schedule = ScheduleConfig("cosine", min_lr=cfg.min_lr)  # no warmup: cosine from lr to min_lr over iters
    wall_before, clock = meta["wall_seconds"], time.perf_counter()
    with (open(run_dir / "log.jsonl", "a") if main else contextlib.nullcontext()) as log, \
            contextlib.closing(ScalarLog(run_dir / "tb" if main else None, start=start)) as board, \
            tqdm(total=cfg.iters, initial=start, desc="frvsr" if cfg.recurrent else "frvsr-norec",
                 disable=not (progress and main)) as bar, control.session(start):
        it = start
        while it < cfg.iters:
            control.vote()
            timer.begin()
            lr_u8, hr_u8, moves = sampler.batch_with_affines(it, cfg.batch, part=(info.rank, info.world))
            lr, hr = lr_u8.float() / 255.0, hr_u8.float() / 255.0
            true_flow = exact_flow(moves, cfg.patch, cfg.scale).flatten(0, 1).to(device) \
                if cfg.flow_loss == "exact" and cfg.recurrent else None
            timer.data_ready()
            for group in opt.param_groups:
                group["lr"] = learning_rate(it, cfg.iters, cfg.lr, schedule)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                loss, parts = frvsr_loss(net, lr, hr, cfg.flow_weight, cfg.sr_weight, true_flow)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            average_gradients(net.parameters(), info)
            scaler.step(opt)
            scaler.update()
            done = it + 1
            if ema is not None:
                ema.update(net, done)
            timer.end()
            bar.update(1)
            total = control.refit(done, cfg.iters, meta, run_dir, bar, "iters", say=progress)
            if total is not None:
                cfg.iters = total
            if main and (done % cfg.log_every == 0 or done == cfg.iters):  # rank 0's share of the batch
                bar.set_postfix(loss=f"{loss.item():.4f}")
                record = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()},
                          "lr": opt.param_groups[0]["lr"]}
                log.write(json.dumps({"iteration": done, **record}) + "\n")
                log.flush()
                for key, value in record.items():
                    board.scalar(f"train/{key}", value, done)
            out_of_time = done % cfg.log_every == 0 and control.out_of_time()
            stopping = control.interrupted()  # this step is complete, so the checkpoint resumes exactly
            saving = (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.iters or out_of_time or stopping
            if saving or done % cfg.log_every == 0:
                check_finite(net, done)
            if main and saving:
                meta["wall_seconds"] = wall_before + time.perf_counter() - clock
                save_atomic({"iteration": done, "model": net.state_dict(), "optim": opt.state_dict(),
                             "ema": ema.net.state_dict() if ema is not None else None,
                             "scaler": scaler.state_dict(), "config": cfg.to_dict(), "data_sha256": data_sha,
                             "meta": meta}, checkpoint_path(run_dir, done))
                prune(run_dir, cfg.keep_last, cfg.ckpt_every)
                control.paused()
            if stopping:  # on every rank after this same step (control.vote agreed on it)
                barrier(info)  # no rank leaves before rank 0 has written the checkpoint
                if main:
                    _record_speed(run_dir, timer, start, done, cfg, info)  # an interrupted session's speed counts too
                control.raise_interrupted(done, run_dir, say=progress)
            if out_of_time and done < cfg.iters:
                if main:
                    _record_speed(run_dir, timer, start, done, cfg, info)
                    if progress:
                        bar.write(f"time limit reached at iteration {done}: checkpointed; continue with --resume",
                                  file=sys.stderr)
                return None
            it = done
    if not main:
        return None
    speed = _record_speed(run_dir, timer, start, cfg.iters, cfg, info)
    net = (ema.net if ema is not None else net).eval()
    name = "frvsr" if cfg.recurrent else "frvsr-norec"
    card = _card(net, cfg, name, speed, meta, info, len(sampler.paths), data_sha)
    weights = run_dir / f"{name}_x{cfg.scale}.safetensors"
    save_weights(net, weights, card)  # before the evaluation: a failure there keeps the trained weights
    if cfg.evaluate:
        from subpixel.eval.video import evaluate_vid4, has_opencv
        from subpixel.video.recurrent import RecurrentProcessor

        result = evaluate_vid4(RecurrentProcessor(net, device), scale=cfg.scale, progress=progress,
                               temporal=has_opencv())  # the warping error only where OpenCV is, as eval --video
        card["metrics"]["Vid4"] = {k: v for k, v in result.to_dict().items() if k != "clips"}
        write_atomic(card_path(weights), json.dumps(card, indent=2) + "\n")
    return weights
