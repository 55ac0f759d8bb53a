"""``subpixel upscale``: files, folders and globs in; upscaled images out, atomically."""

from __future__ import annotations

import glob
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
from tqdm import tqdm

from subpixel.commands.options import emit_json, output_options, runtime_options, tile_option
from subpixel.errors import SubpixelError
from subpixel.io.image import (
    DEFAULT_MAX_PIXELS,
    OutputExistsError,
    check_output_size,
    is_image_path,
    read_image,
    write_image,
)
from subpixel.models.loader import load
from subpixel.models.weights import is_weights_path
from subpixel.ops.tiling import is_oom_error
from subpixel.upscaler import Upscaler

FORMAT_EXT = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tiff", "tif": ".tiff",
              "bmp": ".bmp"}


@dataclass
class Job:
    """One input file, the sub-folder it sits in under a folder input, and where its output goes."""

    src: Path
    dst: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    subfolder: Path = Path()


def expand_inputs(inputs: tuple[str, ...], recursive: bool,
                  others: list[Path] | None = None) -> tuple[list[Job], list[Job], bool, list[Path]]:
    """Jobs for the files of paths, folders and globs; missing ones become failed jobs.

    Returns (jobs, failures, many, empty) where ``many`` says the output must be a folder and ``empty``
    lists the folders without images. A file found under a folder input keeps its sub-folder (``-r``),
    which its output mirrors under ``-o``. Files in folder inputs that are not images by their name
    (GIF, HEIC, no extension...; hidden files aside) are appended to ``others`` when given.
    """
    jobs: list[Job] = []
    failed: list[Job] = []
    empty: list[Path] = []
    many = False
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            many = True
            pattern = "**/*" if recursive else "*"
            files = [f for f in sorted(p.glob(pattern)) if f.is_file()]
            found = [Job(f, subfolder=f.parent.relative_to(p)) for f in files if is_image_path(f)]
            if others is not None:
                others += [f for f in files if not is_image_path(f) and not f.name.startswith(".")]
            jobs += found
            empty += [] if found else [p]
        elif p.is_file():
            jobs.append(Job(p))
        elif glob.has_magic(item):
            many = True
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive) if Path(m).is_file())
            if not matches:
                failed.append(Job(p, error="no files match this pattern"))
            jobs += [Job(m) for m in matches]
        else:
            failed.append(Job(p, error="no such file or folder"))
    unique: dict[Path, Job] = {}
    for job in jobs:  # a file named twice (a path and its folder, say) runs once
        unique.setdefault(job.src.resolve(), job)
    distinct = set(unique) | {job.src.resolve() for job in failed}  # a.png ./a.png is one input
    return list(unique.values()), failed, many or len(distinct) > 1, empty


def output_path(job: Job, out: Path | None, many: bool, suffix: str, fmt: str | None) -> Path:
    """Where ``job``'s result goes: ``-o`` file, ``-o`` folder (mirroring sub-folders), or beside the input."""
    src = job.src
    ext = FORMAT_EXT[fmt] if fmt else src.suffix.lower()
    if out is not None and not many and not out.is_dir() and out.suffix:
        if fmt and FORMAT_EXT.get(out.suffix.lower().lstrip(".")) != FORMAT_EXT[fmt]:
            raise SubpixelError(f"--format {fmt} contradicts the output name {out}")
        return out
    folder = out / job.subfolder if out is not None else src.parent
    return folder / f"{src.stem}{suffix}{ext}"


def check_not_own_input(jobs: list[Job]) -> None:
    """Refuse, before any work, an output replacing its own input. Run before
    :func:`drop_outputs_of_others`: an input that is also another input's output would be left out and
    then overwritten, whatever the order of the arguments."""
    for job in jobs:
        assert job.dst is not None
        if job.dst.resolve() == job.src.resolve():
            raise SubpixelError(f"{job.src}: the output would replace the input; choose another -o or --suffix")


def drop_outputs_of_others(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(kept, dropped): an input that is another input's output in this run (say an earlier run's
    ``photo_x2.png`` beside ``photo.png``) is left out, so rerunning over a folder redoes its outputs
    (with --overwrite) instead of upscaling them again."""
    outputs = {job.dst.resolve(): job for job in jobs if job.dst is not None}
    dropped = [job for job in jobs if outputs.get(job.src.resolve(), job) is not job]
    return [job for job in jobs if job not in dropped], dropped


def check_distinct(jobs: list[Job]) -> None:
    """Refuse, before any work, two inputs writing one output."""
    seen: dict[Path, Path] = {}
    for job in jobs:
        assert job.dst is not None
        dst = job.dst.resolve()
        if dst in seen:
            raise SubpixelError(f"{seen[dst]} and {job.src} would both be written to {job.dst}; rename one, or "
                                "keep each extension (no --format); folder inputs with -r and -o keep sub-folders")
        seen[dst] = job.src


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Upscaling factor [default: a weights file's own scale, else 4].")
@click.option("-m", "--model", default="auto", show_default=True,
              help="Model name or .safetensors path; auto = best shipped model for the scale.")
@click.option("-o", "--output", "output_arg", type=click.Path(path_type=str),  # str: keeps a trailing slash
              help="Output file (one input) or folder (several inputs, or a name ending in /).")
@click.option("--outscale", type=click.FloatRange(min=0, min_open=True, max=16), default=None,
              help="Output size relative to the input, when not the model's scale (1.5, 3.5): the model's output "
              "is resized by MATLAB bicubic. The model's scale: -s, else its smallest shipped one >= this, else "
              "its largest.")
@click.option("--suffix", default=None, help="Appended to output names [default: _x<scale>, or _x<outscale>].")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMAT_EXT)), help="Output format [default: input's].")
@tile_option
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True, help="Leave out inputs whose output exists (continue a batch).")
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--max-pixels", type=click.IntRange(min=0), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse larger inputs (decompression-bomb guard); 0 = no limit.")
@runtime_options
@output_options
def upscale(inputs: tuple[str, ...], scale: int | None, model: str, output_arg: str | None, outscale: float | None,
            suffix: str | None,
            fmt: str | None, tile: int | None, overwrite: bool, skip_existing: bool, recursive: bool, quality: int,
            max_pixels: int, device: str, precision: str, engine: str, quiet: bool, as_json: bool) -> None:
    """Upscale images (files, folders, globs) by --scale."""
    output = Path(output_arg) if output_arg is not None else None
    folder_out = output_arg is not None and output_arg.endswith(("/", os.sep))  # -o out/: a folder, whatever its name
    not_images: list[Path] = []
    jobs, jobs_failed, many, empty = expand_inputs(inputs, recursive, not_images)
    if empty and not jobs and not jobs_failed:
        raise SubpixelError(f"no images found in {', '.join(map(str, empty))}")
    if empty and not (quiet or as_json):
        click.echo(f"warning: no images found in {', '.join(map(str, empty))}", err=True)
    if not_images and not (quiet or as_json):
        kinds = sorted({f.suffix.lower() or "(no extension)" for f in not_images})
        click.echo(f"note: left out {len(not_images)} file(s) in the input folders that are not supported images "
                   f"({', '.join(kinds)}); name a file directly to see why", err=True)
    if (many and not folder_out and output is not None and not output.exists()
            and output.suffix.lower().lstrip(".") in FORMAT_EXT):
        raise SubpixelError(f"several inputs need an output folder, not the file name {output}")
    if outscale is not None and scale is None and not is_weights_path(model):
        scale = _scale_for(model, outscale)
    upscaler = load(model, scale=scale, device=device, precision=precision, engine=engine)
    scale = upscaler.scale
    suffix = f"_x{scale if outscale is None else f'{outscale:g}'}" if suffix is None else suffix
    if output is not None and output.exists() and not output.is_dir() and (many or folder_out):
        raise SubpixelError(f"-o {output_arg} names a folder, but {output} is a file" if folder_out else
                            f"{output} is a file; with several inputs -o must be a folder")
    for job in jobs:
        job.dst = output_path(job, output, many or folder_out, suffix, fmt)
    check_not_own_input(jobs)
    jobs, skipped = drop_outputs_of_others(jobs)
    check_distinct(jobs)
    jobs, kept = _existing_outputs(jobs, overwrite, skip_existing)
    if skipped and not (quiet or as_json):
        click.echo(f"note: left out {len(skipped)} input(s) that this run writes as outputs "
                   f"(e.g. {skipped[0].src}); --overwrite redoes them", err=True)
    for folder in sorted({j.dst.parent for j in jobs if j.dst is not None}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SubpixelError(f"cannot create the output folder {folder}: {err.strerror or err}") from None
        if not _writable(folder):  # before any work, not after each image's
            raise SubpixelError(f"cannot write into the output folder {folder} (read-only or not permitted)")
    bar = tqdm(jobs, unit="img", disable=quiet or as_json or len(jobs) < 2, dynamic_ncols=True)
    tiles = _TileBar() if len(jobs) == 1 and not (quiet or as_json) else None
    for job in bar:
        bar.set_postfix_str(job.src.name)
        _run_job(job, upscaler, tile, overwrite, quality, max_pixels or None, tiles, outscale)
    if tiles is not None:
        tiles.close()
    jobs_failed += [j for j in jobs if j.error]
    done = [j for j in jobs if not j.error]
    if as_json:
        failed = {"error": f"{len(jobs_failed)} of {len(jobs_failed) + len(done)} inputs failed"} if jobs_failed else {}
        emit_json({**failed, "model": upscaler.name, "scale": scale, "outscale": outscale,
                   "engine": upscaler.engine.name, "device": str(upscaler.device),
                   "precision": getattr(upscaler.engine, "precision", "fp32"),
                   "outputs": [{"input": str(j.src), "output": str(j.dst), "seconds": round(j.seconds, 3), **j.extra}
                               for j in done],
                   "failures": [{"input": str(j.src), "error": j.error} for j in jobs_failed],
                   "skipped_outputs_of_other_inputs": [str(j.src) for j in skipped],
                   "skipped_existing_outputs": [str(j.dst) for j in kept],
                   "empty_folders": [str(p) for p in empty],
                   "not_images": [str(p) for p in not_images]})
    elif not quiet:
        for j in done:
            resized = "" if outscale is None else f" resized to x{outscale:g}"
            click.echo(f"wrote {j.dst} ({upscaler.name} x{scale}{resized}, {j.seconds:.2f} s)")
        if kept:
            click.echo(f"note: kept {len(kept)} existing output(s) (--skip-existing)", err=True)
        if upscaler.name == "bicubic" and model == "auto":
            click.echo(f"note: no trained x{scale} model ships yet; used bicubic", err=True)
    for j in jobs_failed:
        msg = j.error if j.error and str(j.src) in j.error else f"{j.src}: {j.error}"
        click.echo(f"error: {msg}", err=True)
    if jobs_failed:
        raise SystemExit(1)


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _scale_for(model: str, outscale: float) -> int:
    """The model scale for ``--outscale`` without ``-s``: the smallest one it ships at least as large
    (shrinking a model's output loses less than enlarging it), else its largest; any whole one >= 2 for
    interpolation and ``auto`` without models at that scale."""
    from subpixel.models.loader import available_scales, shipped_models

    wanted = max(2, math.ceil(outscale - 1e-9))
    have = sorted({m.scale for m in shipped_models()}) if model.lower() == "auto" else available_scales(model.lower())
    if not have:  # interpolation (any scale), or an unknown name (load says so)
        return wanted
    return next((s for s in have if s >= wanted), have[-1])


def _existing_outputs(jobs: list[Job], overwrite: bool, skip_existing: bool) -> tuple[list[Job], list[Job]]:
    """Jobs to run and jobs left out because their output exists (``--skip-existing``); existing outputs
    without either flag are refused before any work."""
    if overwrite and skip_existing:
        raise click.UsageError("choose one of --overwrite and --skip-existing")
    existing = [j for j in jobs if j.dst is not None and j.dst.exists()]
    if not existing or overwrite:
        return jobs, []
    if skip_existing:
        return [j for j in jobs if j not in existing], existing
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    raise OutputExistsError(f"output {existing[0].dst}{more} exist{'s' * (not more)} "
                            "(use --overwrite, or --skip-existing to continue a batch)")


class _TileBar:
    """Tile progress of one image (a run of one image has no batch bar), shown from its second tile on."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if total < 2:
            return
        if self.bar is None or self.bar.total != total:  # first tile, or the tile was halved and restarted
            self.close()
            self.bar = tqdm(total=total, unit="tile", dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_job(job: Job, upscaler: Upscaler, tile: int | None, overwrite: bool, quality: int,
             max_pixels: int | None, progress: Callable[[int, int], None] | None = None,
             outscale: float | None = None) -> None:
    """Upscale one file into ``job``; what goes wrong with this image (not the run) becomes ``job.error``."""
    assert job.dst is not None
    start = time.perf_counter()
    try:
        image = read_image(job.src, max_pixels=max_pixels)
        height, width = upscaler.output_size(image.height, image.width, outscale)
        check_output_size(job.dst, width, height, alpha=image.pixels.shape[2] == 4)
        result = upscaler.upscale(image.pixels, tile=tile, progress=progress, outscale=outscale)
        write_image(job.dst, result, like=image, quality=quality, overwrite=overwrite)
        info = upscaler.last_tile_info
        job.extra = {"size": [int(result.shape[1]), int(result.shape[0])],
                     "tile": info.tile if info and info.tiles_run > 1 else None}  # None: one whole-image call
    except (SubpixelError, OSError, MemoryError, RuntimeError) as err:
        if is_oom_error(err):  # torch's, or ONNX Runtime's (an OutOfMemory SubpixelError)
            hint = ("drop --tile 0 to let tiles halve" if tile == 0 else
                    "tiles were halved down to 16 pixels first; free memory or use another --device")
            job.error = f"{job.src}: out of memory ({hint}), or pass --max-pixels to refuse images this large"
        elif isinstance(err, (SubpixelError, OSError)):
            job.error = str(err) if isinstance(err, SubpixelError) else f"{type(err).__name__}: {err}"
        else:
            raise
    job.seconds = time.perf_counter() - start
