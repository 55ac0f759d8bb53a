"""Benchmark outputs: JSON, a markdown table and a quality-vs-time plot (Pareto front)."""

from __future__ import annotations

import io
import itertools
import math
import re
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from subpixel.bench.quality import QUALITY_SCALE, QUALITY_SETS, QualityFigure
from subpixel.bench.runner import BenchResult, SpeedRow
from subpixel.commands.options import json_text
from subpixel.errors import SubpixelError
from subpixel.io.atomic import write_atomic

__all__ = ["write_reports", "speed_table", "quality_table", "plot_pareto", "plot_left_out", "noisy_notes",
           "report_stem"]

_SPEED_COLUMNS = ("Model", "Kind", "Engine", "Device", "Prec.", "Job", "Batch", "Timed", "fps", "out MP/s",
                  "p50 ms", "p95 ms", "h2h fps", "CPU/wall", "Peak MB", "Params", "GMACs", "Weights")
TIMED = {"tensors": "device tensors", "host-uint8": "host uint8 (= h2h)"}
P95_MIN_SAMPLES = 20  # below this, p95 is shown as the maximum of the samples
NOISY_P95_P50 = 1.5


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _sig(value: float | None, digits: int = 3) -> str:
    """``value`` with at least ``digits`` significant digits (all of its integer part), e.g. 0.0123, 1.23, 1,234."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:,.{max(digits - 1 - math.floor(math.log10(abs(value))), 0)}f}"


def _p95_cell(r: SpeedRow) -> str:
    if r.samples is None or r.samples >= P95_MIN_SAMPLES:
        return _num(r.p95_ms)
    return "–" if r.max_ms is None else f"{r.max_ms:,.1f} (max of {r.samples})"


def _speed_cells(r: SpeedRow) -> list[str]:
    return [r.name, r.kind, r.engine, r.device, r.precision, r.job, str(r.batch), TIMED.get(r.timed, r.timed),
            _num(r.fps, 2), _sig(r.out_mps), _num(r.p50_ms), _p95_cell(r), _num(r.h2h_fps, 2),
            _num(r.cpu_per_wall, 2), _num(r.peak_mem_mb, 0), "-" if r.params is None else f"{r.params:,}",
            _sig(r.gmacs), r.weights]


def noisy_notes(rows: list[SpeedRow]) -> list[str]:
    """A note for each row whose p95 is over :data:`NOISY_P95_P50` times its p50."""
    return [f"timings noisy: {r.name} [{r.engine}] {r.job}: p95/p50 = {r.p95_ms / r.p50_ms:.2f} "
            f"(over {NOISY_P95_P50}; {r.samples if r.samples is not None else '?'} samples)"
            for r in rows if r.p50_ms > 0 and r.p95_ms / r.p50_ms > NOISY_P95_P50]


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def speed_table(rows: list[SpeedRow]) -> str:
    """The speed measurements as a markdown table."""
    text = _table(_SPEED_COLUMNS, [_speed_cells(r) for r in rows])
    few = sorted({r.samples for r in rows if r.samples is not None and r.samples < P95_MIN_SAMPLES})
    if few:
        text += (f"\n\np95 from fewer than {P95_MIN_SAMPLES} latency samples is shown as the maximum of the "
                 f"n samples (\"max of n\"; n = {', '.join(map(str, few))}).")
    return text


def quality_table(figures: list[QualityFigure]) -> str:
    """x4 Y-PSNR per model and set, and measured seconds per image; cited figures say so and are
    numbered against their sources, and those of other scales or sets are listed below the table."""
    shown = [q for q in figures if _in_quality_table(q)]
    sources = sorted({q.source for q in shown if q.origin == "cited"})
    by_name: dict[str, dict[str, list[str]]] = {}
    times: dict[str, dict[str, str]] = {}
    for q in shown:
        mark = "" if q.origin == "measured" else f" (cited [{sources.index(q.source) + 1}])"
        by_name.setdefault(q.name, {}).setdefault(q.dataset, []).append(f"{q.psnr_y:.2f}{mark}")
        if q.seconds_per_image is not None:
            times.setdefault(q.name, {})[q.dataset] = f"{q.seconds_per_image:.3f}"
    rows = [[name, *("; ".join(cells.get(d, ["-"])) for d in QUALITY_SETS),
             *(times.get(name, {}).get(d, "-") for d in QUALITY_SETS)] for name, cells in by_name.items()]
    text = _table(["Model", *(f"{d} x{QUALITY_SCALE}" for d in QUALITY_SETS),
                   *(f"{d} s/image" for d in QUALITY_SETS)], rows)
    if sources:
        text += "\n\n" + "\n".join(f"[{i}] {s}" for i, s in enumerate(sources, 1))
    left_out = [q for q in figures if not _in_quality_table(q)]  # cited: measured ones are all in the table
    if left_out:
        listed = "; ".join(f"{q.name} {q.dataset} x{q.scale} {q.psnr_y:.2f} ({q.source})" for q in left_out)
        text += f"\n\nCited figures not in the table (x{QUALITY_SCALE} on {', '.join(QUALITY_SETS)} only): {listed}"
    return text


def _in_quality_table(q: QualityFigure) -> bool:
    return q.scale == QUALITY_SCALE and q.dataset in QUALITY_SETS


def report_stem(result: BenchResult) -> str:
    """``bench_<device>_<YYYYmmdd-HHMMSS>``; the device is ``cpu`` or ``cuda-<gpu name>``."""
    env = result.environment
    device = env["device"].split(":")[0] + (f"-{env['gpu']}" if env.get("gpu") else "")
    stamp = datetime.fromisoformat(result.date).strftime("%Y%m%d-%H%M%S")
    return "bench_" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") + "_" + stamp


def _markdown(result: BenchResult, plot_name: str | None) -> str:
    env, s = result.environment, result.settings
    gpu = f", GPU {env['gpu']} (CUDA {env.get('cuda')})" if env.get("gpu") else ""
    host_memory = "" if s["memory"] == s["host_peer_memory"] else f" (host peers: {s['host_peer_memory']})"
    capability = f", {env['cpu_capability']}" if env.get("cpu_capability") else ""
    parts = [
        f"# subpixel bench: {env['device']}, {result.date}",
        f"Command: `{result.command}`",
        f"Code: {_code(env)}.",
        f"Environment: torch {env['torch']}, onnxruntime {env['onnxruntime']}, opencv {env['opencv'] or '-'}, "
        f"Python {env['python']}; CPU {env['cpu']}{capability} ({env['cpu_count']} usable logical), "
        f"{env['threads']} threads{gpu}. Load average (1, 5, 15 min) at the start: "
        f"{_load(env.get('load_average_start'))}; at the end: {_load(env.get('load_average_end'))}.",
        "## Speed",
        f"{s['throughput'][0].upper()}{s['throughput'][1:]}. Peak memory: {s['memory']}{host_memory}. "
        f"GMACs: {s['macs']}. CPU/wall: process CPU time over wall time of the timed calls. "
        f"Iterations {s['iters']}, warm-up {s['warmup']}: {_warmup_text(s)}.",
        speed_table(result.rows) if result.rows else "Nothing was timed.",
    ]
    if result.quality:
        parts += ["## Quality", f"{s['quality']}.", quality_table(result.quality)]
    if plot_name:
        parts.append(f"![quality against host-to-host time per frame]({plot_name})")
    if result.notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in result.notes)]
    return "\n\n".join(parts) + "\n"


def _code(env: dict) -> str:
    version = f"subpixel {env.get('subpixel') or '-'}"
    if not env.get("git_commit"):
        return f"{version}, git commit unknown (not run from a git checkout)"
    state = "with uncommitted changes (dirty)" if env.get("git_dirty") else "clean"
    return f"{version}, git commit {env['git_commit']}, {state}"


def _load(values: list[float] | None) -> str:
    return "unknown" if not values else ", ".join(f"{v:.2f}" for v in values)


def _warmup_text(settings: dict) -> str:
    if "warmup_method" in settings:
        return settings["warmup_method"]
    warmup = settings["warmup"]
    return (f"one untimed cold call measures memory and counts as the first warm-up call, then {max(warmup - 1, 0)} "
            "more untimed calls (--warmup 0 still makes the cold call)")


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both time (lower) and quality (higher), by increasing time."""
    front: list[tuple[float, float]] = []
    for t, q in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or q > front[-1][1]:
            front.append((t, q))
    return front


def _plot_times(result: BenchResult) -> tuple[str, dict[str, float], dict[str, SpeedRow]] | str:
    """The job the plot shows, host-to-host ms per frame of each model there (its fastest engine by h2h fps) and
    the row it comes from; or a note saying why there is nothing to plot."""
    requested = [j for j in result.settings["jobs"] if j.endswith(f"x{QUALITY_SCALE}")]
    jobs = [r.job for r in result.rows if r.job in requested]
    if not requested:
        return f"plot skipped: no x{QUALITY_SCALE} job was asked for (--jobs)"
    if not jobs:
        return f"plot skipped: every item at {', '.join(requested)} was skipped (see the notes)"
    if not result.quality:
        return "plot skipped: no quality figures (use --quality and/or --cite)"
    job = jobs[0]
    ms: dict[str, float] = {}
    rows: dict[str, SpeedRow] = {}
    for r in result.rows:
        if r.job == job and r.h2h_fps and r.h2h_fps > 0 and 1e3 / r.h2h_fps < ms.get(r.name, float("inf")):
            ms[r.name], rows[r.name] = 1e3 / r.h2h_fps, r
    return job, ms, rows


def plot_left_out(result: BenchResult) -> list[str]:
    """Notes on the x4 quality figures of the table's sets that the plot cannot show: their model has no
    host-to-host time at the plotted job (e.g. a cited model that was not timed)."""
    times = _plot_times(result)
    if isinstance(times, str):
        return []
    job, ms, _ = times
    return [f"{q.name}: {q.origin} {q.dataset} x{q.scale} figure ({q.psnr_y:.2f}) not plotted: {q.name} has no "
            f"host-to-host time at {job} in this run" for q in result.quality
            if _in_quality_table(q) and q.name not in ms]


def _time_axis_label(job: str, rows: list[SpeedRow]) -> str:
    """What the x axis shows: host-to-host time per frame, and at which batch size and device each kind ran."""
    kinds = sorted({(r.device, r.batch, r.timed) for r in rows})
    where = "; ".join(("host peers" if timed == "host-uint8" else "ours/engine peers") + f": {device}, "
                      f"per frame at batch {batch}" for device, batch, timed in kinds)
    return f"host-to-host ms per frame (uint8 in, uint8 out), {job}\n{where}"


def plot_pareto(result: BenchResult, path: Path | BinaryIO) -> str | None:
    """Plot x4 quality against host-to-host ms per frame (uint8 in, uint8 out: 1000 / h2h fps of each model's
    fastest engine at the first x4 job, so that our models and host peers are timed alike) as PNG.

    Returns a note instead of plotting when matplotlib, a timed x4 job or a quality figure for a
    model timed there is missing. Cited figures are hollow markers and stay off the Pareto front,
    which joins measured figures only.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'subpixel[bench]')"
    times = _plot_times(result)
    if isinstance(times, str):
        return times
    job, ms, rows = times
    if not any(q.name in ms and q.scale == QUALITY_SCALE for q in result.quality):
        return f"plot skipped: no model timed at {job} has an x{QUALITY_SCALE} quality figure and a host-to-host time"
    fig, axes = plt.subplots(1, len(QUALITY_SETS), figsize=(6 * len(QUALITY_SETS), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], QUALITY_SETS):
        figures = [q for q in result.quality if q.dataset == dataset and q.scale == QUALITY_SCALE and q.name in ms]
        measured = {q.name: q for q in figures if q.origin == "measured"}
        shown = list(measured.values()) + [q for q in figures if q.origin == "cited" and q.name not in measured]
        ax.set_title(dataset)
        if not shown:
            ax.text(0.5, 0.5, "no quality figures", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for q in shown:
            cited = q.origin == "cited"
            ax.scatter(ms[q.name], q.psnr_y, s=40, marker="o", edgecolors="C0",
                       facecolors="none" if cited else "C0", zorder=3)
            ax.annotate(q.name, (ms[q.name], q.psnr_y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = _pareto([(ms[q.name], q.psnr_y) for q in measured.values()])
        if front:
            ax.step(*zip(*front), where="post", color="C1", lw=1, label="Pareto front (measured only)")
        ax.scatter([], [], marker="o", color="C0", label="measured quality")
        ax.scatter([], [], marker="o", facecolors="none", edgecolors="C0", label="cited quality")
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel(_time_axis_label(job, [rows[q.name] for q in shown]), fontsize=8)
        ax.set_ylabel(f"{dataset} x{QUALITY_SCALE} Y-PSNR (dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return None


def _unused_stem(out_dir: Path, stem: str) -> str:
    """``stem``, else ``stem-2``, ``stem-3`` ...: the first that no file in ``out_dir`` has (never overwrite)."""
    candidates = itertools.chain([stem], (f"{stem}-{n}" for n in itertools.count(2)))
    return next(c for c in candidates if not any(out_dir.glob(f"{c}.*")))


def write_reports(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` (when plottable) under ``out_dir``, each atomically.

    The stem is :func:`report_stem`, with a ``-2``, ``-3`` ... suffix when an earlier report has it.
    A failed write is a :class:`SubpixelError`.
    """
    try:
        return _write_reports(result, out_dir)
    except OSError as err:
        raise SubpixelError(f"cannot write the reports to {out_dir}: {err}") from None


def _write_reports(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = io.BytesIO()
    note = plot_pareto(result, plot)  # rendered first, so the name is picked just before the files are written
    result.notes += noisy_notes(result.rows)
    result.notes += ([] if note is None else [note]) + plot_left_out(result)
    stem = _unused_stem(out_dir, report_stem(result))
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md"}
    if note is None:
        paths["plot"] = out_dir / f"{stem}.png"
        write_atomic(paths["plot"], plot.getvalue())
    write_atomic(paths["markdown"], _markdown(result, paths["plot"].name if "plot" in paths else None).encode())
    doc = result.to_dict() | {"files": {k: str(v) for k, v in paths.items()}}
    write_atomic(paths["json"], json_text(doc))
    return paths
