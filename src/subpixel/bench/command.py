"""``subpixel bench``: speed (and optionally quality) of our models and of peers, written to files."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
import torch
from click.core import ParameterSource

from subpixel.commands.options import device_option, emit_json
from subpixel.engine import ENGINES
from subpixel.engine.device import PRECISIONS, resolve_device
from subpixel.errors import SubpixelError
from subpixel.models.loader import not_a_model
from subpixel.models.weights import is_weights_path

DEFAULT_ENGINES = {"cuda": ("torch", "torch-cudagraph"), "cpu": ("torch", "onnx")}


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _names(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """``--models``/``--peers`` entries: ``default`` when not given, none for 'none'; names (not
    ``.safetensors`` files) lower-cased, as ``subpixel.load`` takes them."""
    if value is None:
        return default
    if value.strip().lower() == "none":
        return ()
    return tuple(v if is_weights_path(v) else v.lower() for v in _split(value))


def _command_line(ctx: click.Context) -> str:
    """The options given on the command line, as one shell-quoted string."""
    parts = ["subpixel", "bench"]
    for param in ctx.command.params:
        if param.name is None or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        flag = max(param.opts, key=len)
        value = ctx.params[param.name]
        parts += [flag] if isinstance(param, click.Option) and param.is_flag else [flag, str(value)]
    return shlex.join(parts)


def _check_out(out: Path) -> None:
    """Refuse, before anything is timed, an ``--out`` that cannot become a writable folder (it is made only
    when the reports are written)."""
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is not a folder" if not existing.is_dir() else "is not writable"
        raise SubpixelError(f"--out {out}: cannot write the reports there ({existing} {why})")


@click.command()
@click.option("--models", help="Comma-separated architectures or .safetensors files "
                               "[default: espcn,sesr-m5,sesr-m11,sesr-xl,sprint-s,sprint]; 'none' for none.")
@click.option("--peers", help="Comma-separated peers: bicubic, rlfn, rlfn-plain, opencv-espcn, opencv-fsrcnn, "
                              "opencv-lapsrn, span-ncnn [default: all]; 'none' for none.")
@click.option("--engines", help="Comma-separated: auto, torch, torch-compile, torch-cudagraph, onnx "
                                "[default: torch,onnx on CPU; torch,torch-cudagraph on CUDA].")
@device_option
@click.option("--precision", type=click.Choice(list(PRECISIONS)), help="[default: fp16 on CUDA, else fp32]")
@click.option("--jobs", help="Comma-separated WIDTHxHEIGHTxSCALE; 'standard' = 960x540x4,1280x720x3,1920x1080x2 "
                             "[default: standard; 160x90x4 with --quick].")
@click.option("--batch", type=click.IntRange(min=1),
              help="Frames per call for throughput [default: 8 on CUDA, else 1].")
@click.option("--iters", type=click.IntRange(min=1), help="Timed calls [default: 50 on CUDA, 5 on CPU, 3 quick].")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed calls first [default: 10 on CUDA, else 1].")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch, ONNX Runtime, OpenCV and ncnn [default: torch's].")
@click.option("--quick", is_flag=True, help="Smoke run: one small job (160x90x4), 3 iterations.")
@click.option("--quality", is_flag=True, help="Also measure x4 Y-PSNR on Set5 and Urban100 (models with weights).")
@click.option("--cite", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON of cited quality figures with sources (e.g. benchmarks/cited.json); marked 'cited'.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding Set5/ and Urban100/ [default: shared/data/benchmarks].")
@click.option("--peers-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Peer weights (OpenCV .pb files) [default: shared/peers beside shared/data].")
@click.option("-o", "--out", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("benchmarks/results"), show_default=True,
              help="Folder for the JSON, markdown and PNG results.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or notes; the table only.")
@click.option("--json", "as_json", is_flag=True, help="Print the results JSON instead of the table.")
@click.pass_context
def bench(ctx: click.Context, models: str | None, peers: str | None, engines: str | None, device: str,
          precision: str | None, jobs: str | None, batch: int | None, iters: int | None, warmup: int | None,
          threads: int | None, quick: bool, quality: bool, cite: Path | None, data_dir: Path | None,
          peers_dir: Path | None, out: Path, quiet: bool, as_json: bool) -> None:
    """Measure throughput, latency, memory and complexity of models and peers at ~4K-output jobs.

    Our models with shipped weights use them; others (and RLFN) run with random weights, which
    time the same. Results go to --out as bench_<device>_<date>.{json,md,png}.
    """
    from subpixel.bench.jobs import QUICK_JOB, STANDARD_JOBS, parse_jobs
    from subpixel.bench.peers import PEERS, default_peers_dir
    from subpixel.bench.report import speed_table, write_reports
    from subpixel.bench.runner import DEFAULT_MODELS, BenchConfig, run_bench
    from subpixel.models.registry import architectures

    _check_out(out)
    dev = resolve_device(device)
    known = architectures()
    model_list = _names(models, tuple(m for m in DEFAULT_MODELS if m in known))
    for m in model_list:
        if not is_weights_path(m) and m not in known:
            raise SubpixelError(not_a_model(Path(m), m))  # an .onnx file, another file, a typo
    peer_list = _names(peers, PEERS)
    for p in peer_list:
        if p not in PEERS:
            raise click.BadParameter(f"unknown peer {p!r}; choose from {', '.join(PEERS)}", param_hint="--peers")
    if not model_list and not peer_list:
        raise click.UsageError("nothing to measure: --models none and --peers none")
    engine_list = _split(engines) if engines is not None else DEFAULT_ENGINES.get(dev.type, ("torch",))
    if not engine_list:
        raise click.UsageError(f"no engines given in --engines {engines!r}; choose from {', '.join(ENGINES)}")
    for e in engine_list:
        if e not in ENGINES:
            raise click.BadParameter(f"unknown engine {e!r}; choose from {', '.join(ENGINES)}", param_hint="--engines")
    try:
        job_list = parse_jobs(jobs) if jobs else (QUICK_JOB,) if quick else STANDARD_JOBS
    except SubpixelError as err:  # a bad spec: a usage error, as every other option value
        raise click.BadParameter(str(err), param_hint="--jobs") from None
    default_iters, default_warmup = (3, 1) if quick else (50, 10) if dev.type == "cuda" else (5, 1)
    cfg = BenchConfig(
        models=model_list, peers=peer_list, engines=engine_list, device=dev,
        precision=precision or ("fp16" if dev.type == "cuda" else "fp32"),
        jobs=job_list,
        batch=batch or (8 if dev.type == "cuda" else 1), iters=iters or default_iters,
        warmup=default_warmup if warmup is None else warmup, threads=threads or torch.get_num_threads(),
        peers_dir=peers_dir or default_peers_dir(), data_dir=data_dir, quality=quality, cited=cite,
    )
    echo = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    result = run_bench(cfg, _command_line(ctx), echo=echo)
    if not result.rows and not any(q.origin == "measured" for q in result.quality):
        why = "" if quiet or as_json else " (see the notes above)"
        # the notes reach stderr only without --quiet: the JSON error carries them
        raise SubpixelError(f"nothing was measured: every item was skipped{why}; no report written",
                            details={"notes": result.notes} if as_json else None)
    paths = write_reports(result, out)
    if as_json:
        emit_json(result.to_dict() | {"files": {k: str(v) for k, v in paths.items()}})
        return
    click.echo(speed_table(result.rows) if result.rows else "nothing was timed")
    if quiet:
        return
    for note in result.notes:
        click.echo(f"note: {note}")
    for kind, path in paths.items():
        click.echo(f"wrote {kind}: {path}")
