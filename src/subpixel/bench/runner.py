"""Run the benchmark: every model and engine-peer x engine x job, then the host peers, then quality."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from subpixel.bench.environment import environment, load_average
from subpixel.bench.jobs import Job
from subpixel.bench.measure import HOST_PEER_MEMORY, MEMORY_METHOD, Speed, measure_engine, measure_host
from subpixel.bench.peers import ENGINE_PEERS, HOST_PEERS, PeerUpscaler, host_peer
from subpixel.bench.quality import QUALITY_SCALE, QualityFigure, add_cited, load_cited, measure_quality
from subpixel.engine import Engine, make_engine
from subpixel.errors import SubpixelError
from subpixel.models.base import PerFrame, SRNet
from subpixel.models.complexity import count_macs, count_params
from subpixel.models.interp import Interpolation
from subpixel.models.registry import architectures, build
from subpixel.models.weights import find_shipped, is_weights_path, load_net, read_card

__all__ = ["BenchConfig", "SpeedRow", "BenchResult", "run_bench", "DEFAULT_MODELS"]

# our single-image architectures, in the order they are reported (those not registered are left out)
DEFAULT_MODELS = ("espcn", "sesr-m5", "sesr-m11", "sesr-xl", "sprint-s", "sprint")
THROUGHPUT = ("rows timed on tensors (ours and engine peers): fps and out MP/s at the batch size, and batch-1 "
              "p50/p95, on float32 tensors already on the device (uint8 conversions and host copies excluded); "
              "h2h fps: uint8 frames from and to host memory at the batch size, conversions included (pinned "
              "memory, overlapped copies on CUDA). Rows timed host-uint8 (host peers: OpenCV, SPAN): every "
              "figure times the whole uint8 RGB call on the CPU at batch 1, so their fps is already host to host "
              "and h2h fps repeats it; compare them with the h2h fps of the other rows")
WARMUP = ("before the timed calls, one untimed cold call at the batch size measures peak memory and counts as the "
          "first warm-up call, then warm-up - 1 more untimed calls (with --warmup 0 the cold call is still made); "
          "at batch > 1, warm-up untimed batch-1 calls precede the latency samples")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how (see ``subpixel bench --help``)."""

    models: tuple[str, ...]
    peers: tuple[str, ...]
    engines: tuple[str, ...]
    device: torch.device
    precision: str
    jobs: tuple[Job, ...]
    batch: int
    iters: int
    warmup: int
    threads: int
    peers_dir: Path
    data_dir: Path | None = None
    quality: bool = False
    cited: Path | None = None


@dataclass(kw_only=True)
class SpeedRow(Speed):
    """One (model or peer) x engine x job measurement: the :class:`Speed` figures and what was measured."""

    name: str
    kind: str  # "ours" or "peer"
    engine: str
    device: str
    precision: str
    job: str
    params: int | None
    gmacs: float | None  # per output frame of the job
    weights: str  # shipped, file, random (speed only), none (interpolation), bundled (peer's own)


@dataclass
class BenchResult:
    """Everything a benchmark run produced; ``to_dict`` is the JSON written to disk."""

    command: str
    date: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[SpeedRow] = field(default_factory=list)
    quality: list[QualityFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "date": self.date, "environment": self.environment,
                "settings": self.settings, "rows": [asdict(r) for r in self.rows],
                "quality": [q.to_dict() for q in self.quality], "notes": self.notes}


def _network(name: str, scale: int) -> tuple[SRNet, str]:
    """``name``'s network at ``scale`` and where its weights come from."""
    if is_weights_path(name):
        net, _ = load_net(Path(name))
        if net.scale != scale:
            raise SubpixelError(f"{Path(name).name} is a x{net.scale} model")
        return net.deploy(), "file"
    net = build(name, scale)
    if isinstance(net, Interpolation):
        return net, "none"
    shipped = find_shipped(name, scale)
    if shipped is not None:
        return load_net(shipped.weights, shipped.card)[0].deploy(), "shipped"
    return net.deploy(), "random"


def _display_names(names: tuple[str, ...]) -> dict[str, str]:
    """Each model's or peer's label: a weights file's stem, or the path as given where that stem is another
    entry's label too (two runs' exports of one file name, a file named like a built-in model)."""
    stems = {name: Path(name).stem if is_weights_path(name) else name for name in names}
    counts = Counter(stems.values())
    return {name: stem if counts[stem] == 1 else name for name, stem in stems.items()}


def _check_weights(models: tuple[str, ...]) -> None:
    """Refuse, before anything is timed, a ``.safetensors`` entry that cannot load (missing, no card, bad tensors)."""
    for name in models:
        if is_weights_path(name):
            if not Path(name).is_file():
                raise SubpixelError(f"weights file not found: {name}")
            load_net(Path(name))


def _has_quality_weights(name: str) -> bool:
    if is_weights_path(name):
        return int(read_card(Path(name))["scale"]) == QUALITY_SCALE
    spec = architectures().get(name)
    if spec is not None and spec.interpolation:
        return True
    return find_shipped(name, QUALITY_SCALE) is not None


def _recurrent(net: SRNet) -> bool:
    """Whether a frame in steady use costs other work than :meth:`SRNet.forward` (a recurrent video network)."""
    return type(net).per_frame_forward is not SRNet.per_frame_forward


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _row(name: str, kind: str, engine: str, device: str, precision: str, job: Job, speed: Speed,
         params: int | None, gmacs: float | None, weights: str) -> SpeedRow:
    return SpeedRow(**asdict(speed), name=name, kind=kind, engine=engine, device=device, precision=precision,
                    job=job.name, params=params, gmacs=gmacs, weights=weights)


class _Runner:
    def __init__(self, cfg: BenchConfig, echo: Callable[[str], None]) -> None:
        self.cfg, self.echo = cfg, echo
        self.labels = _display_names((*cfg.models, *cfg.peers))
        self.rows: list[SpeedRow] = []
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.echo(f"note: {text}")

    def network(self, name: str, kind: str) -> None:
        cfg, label = self.cfg, self.labels[name]
        engines = ("torch",) if name == "bicubic" else cfg.engines
        for job in cfg.jobs:
            for requested in engines:
                try:
                    net, weights = _network(name, job.scale)  # fresh per engine: engines move and convert it
                except SubpixelError as err:
                    self.note(f"{label}: {job.name} skipped: {err}")
                    break
                params = None if isinstance(net, Interpolation) else count_params(net)
                gmacs = None if params is None else count_macs(net, (job.height * job.scale,
                                                                     job.width * job.scale)) / 1e9
                if _recurrent(net) and requested == "onnx":
                    self.note(f"{label} [onnx] {job.name} skipped: recurrent; the onnx export holds only the first "
                              "frame's path, not the per-frame work (flow network and warp) timed and counted here")
                    continue
                self.echo(f"{label} [{requested}] {job.name} ...")
                try:
                    engine = self.engine(name, job, requested, net)
                    speed = measure_engine(engine, cfg.device, job, cfg.batch, cfg.iters, cfg.warmup)
                except (SubpixelError, RuntimeError) as err:  # e.g. CUDA out of memory, a compiler failure
                    self.note(f"{label} [{requested}] {job.name} skipped: {str(err).splitlines()[0]}")
                    _free(cfg.device)
                    continue
                shown = engine.name if requested == engine.name else f"{requested}:{engine.name}"
                self.rows.append(_row(label, kind, shown, str(cfg.device), engine.precision, job, speed, params,
                                      gmacs, weights))
                del engine, net
                _free(cfg.device)

    def engine(self, name: str, job: Job, requested: str, net: SRNet) -> Engine:
        """The ``requested`` engine for ``net``. ``auto`` picks by running engines (on the CPU), which would make
        the measured "cold" first call warm: it stands for the engine it picks, built anew on a fresh network.
        A recurrent network runs its steady-state frame (:class:`~subpixel.models.base.PerFrame`); ``auto`` is
        torch for it."""
        cfg = self.cfg
        if _recurrent(net):  # timed on what its MACs count: a later frame of a sequence, on torch
            return make_engine(PerFrame(net), "torch" if requested == "auto" else requested, cfg.device,
                               cfg.precision, threads=cfg.threads)
        engine = make_engine(net, requested, cfg.device, cfg.precision, threads=cfg.threads)
        if requested != "auto":
            return engine
        picked = engine.name
        del engine  # freed before the fresh one is measured
        return make_engine(_network(name, job.scale)[0], picked, cfg.device, cfg.precision, threads=cfg.threads)

    def host(self, name: str) -> None:
        peer = host_peer(name, self.cfg.peers_dir, self.cfg.threads)
        if isinstance(peer, str):
            self.note(f"{name}: skipped: {peer}")
            return
        for job in self.cfg.jobs:
            if job.scale not in peer.scales:
                have = ", ".join(f"x{s}" for s in peer.scales)
                self.note(f"{name}: {job.name} skipped: no x{job.scale} model (has {have})")
                continue
            self.echo(f"{name} [{peer.engine}] {job.name} ...")
            try:
                speed = measure_host(peer.load(job.scale), job, self.cfg.iters, self.cfg.warmup)
            except SubpixelError as err:
                self.note(f"{name}: {job.name} skipped: {err}")
                continue
            self.rows.append(_row(name, "peer", peer.engine, "cpu", "fp32", job, speed, None, None, "bundled"))

    def quality(self) -> list[QualityFigure]:
        from subpixel.models.loader import load

        candidates = []
        for name in [*self.cfg.models, *(p for p in self.cfg.peers if p in ENGINE_PEERS)]:
            try:
                usable = _has_quality_weights(name)
            except SubpixelError as err:  # e.g. its card went away during the run
                self.note(f"{self.labels[name]}: quality not measured: {err}")
                continue
            if usable:
                candidates.append((self.labels[name], lambda name=name: load(name, QUALITY_SCALE,
                                                                                device=self.cfg.device,
                                                                                engine="torch")))
            else:
                self.note(f"{self.labels[name]}: quality not measured: no x{QUALITY_SCALE} weights")
        for name in (p for p in self.cfg.peers if p in HOST_PEERS):
            peer = host_peer(name, self.cfg.peers_dir, self.cfg.threads)
            if isinstance(peer, str):  # the speed phase noted why
                continue
            if QUALITY_SCALE in peer.scales:
                candidates.append((name, lambda peer=peer: PeerUpscaler(peer.name, QUALITY_SCALE,
                                                                         peer.load(QUALITY_SCALE))))
            else:
                have = ", ".join(f"x{s}" for s in peer.scales)
                self.note(f"{name}: quality not measured: no x{QUALITY_SCALE} model (has {have})")
        figures, notes = measure_quality(candidates, self.cfg.data_dir, self.echo)
        for text in notes:
            self.note(text)
        return figures


@contextmanager
def _process_settings(cfg: BenchConfig) -> Iterator[None]:
    """torch threads = ``cfg.threads`` and, on CUDA, cuDNN autotuning (fixed shapes); restored afterwards."""
    threads, autotune = torch.get_num_threads(), torch.backends.cudnn.benchmark
    torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = autotune or cfg.device.type == "cuda"
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = autotune


def run_bench(cfg: BenchConfig, command: str, echo: Callable[[str], None] = lambda _: None) -> BenchResult:
    """Measure everything ``cfg`` asks for; ``command`` is recorded as given."""
    result = BenchResult(command, datetime.now().astimezone().isoformat(timespec="seconds"),
                         environment(cfg.device, cfg.threads), _settings(cfg))
    _check_weights(cfg.models)  # bad weights or cited files fail before anything is timed
    cited = load_cited(cfg.cited) if cfg.cited else []
    runner = _Runner(cfg, echo)
    with _process_settings(cfg):
        for name in cfg.models:
            runner.network(name, "ours")
        for name in cfg.peers:
            if name in ENGINE_PEERS:
                runner.network(name, "peer")
            else:
                runner.host(name)
        if cfg.quality:
            result.quality += runner.quality()
    result.quality, dropped = add_cited(result.quality, cited)
    runner.notes += dropped
    result.rows, result.notes = runner.rows, runner.notes
    result.environment["load_average_end"] = load_average()
    return result


def _settings(cfg: BenchConfig) -> dict[str, Any]:
    return {
        "models": list(cfg.models), "peers": list(cfg.peers), "engines": list(cfg.engines),
        "device": str(cfg.device), "precision": cfg.precision, "jobs": [j.name for j in cfg.jobs],
        "batch": cfg.batch, "iters": cfg.iters, "warmup": cfg.warmup, "threads": cfg.threads,
        "throughput": THROUGHPUT, "memory": MEMORY_METHOD.get(cfg.device.type, "not measured"),
        "host_peer_memory": HOST_PEER_MEMORY, "warmup_method": WARMUP,
        "macs": "multiply-accumulates of convolutions per output frame of the job (subpixel.models.complexity)",
        "quality": f"x{QUALITY_SCALE} Y-PSNR; measured ones by subpixel.eval, cited ones from --cite",
    }
