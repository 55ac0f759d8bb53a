"""``subpixel upscale``: files, folders and globs in; upscaled images out, atomically."""

from __future__ import annotations

import errno
import glob
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
from PIL import ExifTags, Image
from tqdm import tqdm

from subpixel.commands.options import emit_json, output_options, runtime_options, tile_option
from subpixel.errors import Interrupted, SubpixelError
from subpixel.io.image import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    OutputExistsError,
    check_output_size,
    is_image_path,
    read_image,
    write_image,
)
from subpixel.models.loader import load
from subpixel.models.weights import is_weights_path
from subpixel.ops.tiling import MIN_TILE, is_oom_error
from subpixel.upscaler import Upscaler

FORMAT_EXT = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tiff", "tif": ".tiff",
              "bmp": ".bmp"}
SKIPPED_FOLDERS = frozenset({"@eaDir"})  # Synology's thumbnail folders; hidden ('.') folders are left out too
# a full disk, a full quota, a read-only file system: every later output would fail as well, so the batch stops
STOPPING_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS") if hasattr(errno, name))


@dataclass
class Job:
    """One input file, the sub-folder it sits in under a folder input, and where its output goes."""

    src: Path
    dst: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    subfolder: Path = Path()
    stop: str | None = None  # why the batch stops after this job (a full disk...), else None


@dataclass
class Inputs:
    """What :func:`expand_inputs` found: the jobs, the failed inputs, whether the output must be a folder, the
    folders without images, and what was left out (with the reason, for a note)."""

    jobs: list[Job]
    failed: list[Job]
    many: bool
    empty: list[Path]
    not_images: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)  # symlinked sub-folders (not followed) and broken links
    in_output: list[Path] = field(default_factory=list)  # files under -o inside a folder input


def _hidden_below(path: Path, top: Path) -> bool:
    """Whether a folder between ``top`` and ``path`` is hidden ('.thumbnails', '.git') or Synology's '@eaDir'."""
    return any(part.startswith(".") or part in SKIPPED_FOLDERS for part in path.parent.relative_to(top).parts)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.parent.resolve().is_relative_to(folder)


def _linked_folder(path: Path, pattern: str) -> Path | None:
    """The first symlinked folder on the way to ``path`` that a wildcard of ``pattern`` matched (its part of the
    pattern has ``*?[``, or lies at or below ``**``), else None: a folder the pattern names is followed."""
    parts = Path(pattern).parts
    star = parts.index("**") if "**" in parts else len(parts)
    for folder in reversed(path.parents):
        depth = len(folder.parts) - 1  # its part of the pattern, where no ** came before
        if depth >= 0 and (depth >= star or glob.has_magic(parts[depth])) and folder.is_symlink():
            return folder
    return None


def expand_inputs(inputs: tuple[str, ...], recursive: bool, output: Path | None = None) -> Inputs:
    """Jobs for the files of paths, folders and globs; missing ones become failed jobs.

    A file found under a folder input keeps its sub-folder (``-r``), which its output mirrors under ``-o``.
    Files in folder inputs and files a glob matches that are not images by their name (GIF, HEIC, no
    extension...; hidden files aside) go to ``not_images``; a file named directly is always a job (and
    fails as a non-image). Files in hidden folders and '@eaDir' below a folder input are left out, and so
    are, when the ``output`` folder lies inside a folder input, the files under it (earlier outputs, of
    other scales or suffixes). Symlinked sub-folders, below a folder input or matched by a glob's wildcards,
    are not followed (a link to a parent would loop); they and broken links go to ``links``. A file reached
    twice (a path and its folder, a symlink and its target) runs once, under its own (not a symlink's) name
    where it has one.
    """
    found = Inputs([], [], False, [])
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.many = True
            top = p.resolve()
            out = output.resolve() if output is not None else None
            out = out if out is not None and out != top and out.is_relative_to(top) else None
            entries = sorted(p.glob("**/*" if recursive else "*"))
            entries = [f for f in entries if not _hidden_below(f, p)]
            found.links += [f for f in entries if f.is_symlink() and (not f.exists() or (recursive and f.is_dir()))]
            files = [f for f in entries if f.is_file()]
            found.in_output += [f for f in files if _inside(f, out)]
            files = [f for f in files if not _inside(f, out)]
            jobs = [Job(f, subfolder=f.parent.relative_to(p)) for f in files if is_image_path(f)]
            found.not_images += [f for f in files if not is_image_path(f) and not f.name.startswith(".")]
            found.jobs += jobs
            found.empty += [] if jobs else [p]
        elif p.is_file():
            found.jobs.append(Job(p))
        elif glob.has_magic(item):
            found.many = True
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive))
            linked = {m: _linked_folder(m, item) for m in matches}
            found.links += [m for m in matches if m.is_symlink() and not m.exists()]
            found.links += sorted({folder for folder in linked.values() if folder is not None})
            matches = [m for m in matches if linked[m] is None and m.is_file()
                       and (not SKIPPED_FOLDERS & set(m.parent.parts) or SKIPPED_FOLDERS & set(Path(item).parts))]
            if not matches:
                why = "its matches lie in symlinked folders, which are not followed" if any(linked.values()) \
                    else "no files match this pattern"
                found.failed.append(Job(p, error=why))
            found.jobs += [Job(m) for m in matches if is_image_path(m)]
            found.not_images += [m for m in matches if not is_image_path(m) and not m.name.startswith(".")]
            found.empty += [p] if matches and not any(is_image_path(m) for m in matches) else []
        else:
            found.failed.append(Job(p, error="no such file or folder"))
    unique: dict[Path, Job] = {}
    for job in found.jobs:  # a file named twice (a path and its folder, say) runs once, by its own name
        key = job.src.resolve()
        if key not in unique or (unique[key].src.is_symlink() and not job.src.is_symlink()):
            unique[key] = job
    distinct = set(unique) | {job.src.resolve() for job in found.failed}  # a.png ./a.png is one input
    found.jobs = [job for job in found.jobs if unique[job.src.resolve()] is job]  # in the order found
    found.many = found.many or len(distinct) > 1
    return found


def output_path(job: Job, out: Path | None, many: bool, suffix: str, fmt: str | None) -> Path:
    """Where ``job``'s result goes: ``-o`` file, ``-o`` folder (mirroring sub-folders), or beside the input."""
    src = job.src
    ext = FORMAT_EXT[fmt] if fmt else src.suffix.lower()
    if out is not None and not many and not out.is_dir() and out.suffix:
        if out.suffix.lower() not in SUPPORTED_EXTENSIONS:  # --format would contradict it: name the fix that works
            raise SubpixelError(f"{out}: {out.suffix} is not an image extension; add one "
                                f"({out}{ext if ext in SUPPORTED_EXTENSIONS else '.png'}), or end -o with / for a "
                                "folder")
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


def drop_outputs_of_others(jobs: list[Job],
                           output_size: Callable[[int, int], tuple[int, int]]) -> tuple[list[Job], list[Job]]:
    """(kept, dropped): an input that is another input's output in this run (say an earlier run's
    ``photo_x2.png`` beside ``photo.png``) is left out, so rerunning over a folder redoes its outputs
    (with --overwrite) instead of upscaling them again; but only where its size (read from the header) is
    the one ``output_size`` (width, height -> width, height) gives for the other input: an original named
    like an output (a scan ``page_x2.png`` beside ``page.png``) stays an input, which
    :func:`check_not_other_input` then refuses to replace."""
    outputs = {job.dst.resolve(): job for job in jobs if job.dst is not None}

    def earlier_output(job: Job) -> bool:
        other = outputs.get(job.src.resolve(), job)
        if other is job:
            return False
        size, made = _header_size(other.src), _header_size(job.src)
        return size is not None and made is not None and output_size(*size) == made

    dropped = [job for job in jobs if earlier_output(job)]
    return [job for job in jobs if job not in dropped], dropped


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image as shown (EXIF orientation applied), from its header; None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression-bomb warning: the read proper says so
            with Image.open(path) as im:
                width, height = im.size  # a TIFF's already turned by Pillow (11.0 on)
                turned = im.format != "TIFF" and im.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - any unreadable header: not known to be an earlier output
        return None
    return (height, width) if turned else (width, height)


def check_not_other_input(jobs: list[Job]) -> None:
    """Refuse, before any work, an output replacing another input (one :func:`drop_outputs_of_others` kept:
    not this run's earlier output by its size)."""
    inputs = {job.src.resolve(): job for job in jobs}
    for job in jobs:
        assert job.dst is not None
        other = inputs.get(job.dst.resolve())
        if other is not None and other is not job:
            raise SubpixelError(f"{job.src}'s output {job.dst} would replace the input {other.src}, an original "
                                "(not the size an earlier output would have); rename one, or choose another -o or "
                                "--suffix")


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
    found = expand_inputs(inputs, recursive, output)
    jobs, jobs_failed, many, empty = found.jobs, found.failed, found.many, found.empty
    talk = not (quiet or as_json)
    if empty and not jobs and not jobs_failed:
        raise SubpixelError(f"no images found in {', '.join(map(str, empty))}")
    if empty and talk:
        click.echo(f"warning: no images found in {', '.join(map(str, empty))}", err=True)
    if found.not_images and talk:
        kinds = sorted({f.suffix.lower() or "(no extension)" for f in found.not_images})
        click.echo(f"note: left out {len(found.not_images)} file(s) in the input folders or globs that are not "
                   f"supported images ({', '.join(kinds)}); name a file directly to see why", err=True)
    if found.links and talk:
        click.echo(f"note: left out {len(found.links)} symlinked sub-folder(s) (not followed) and broken link(s), "
                   f"e.g. {found.links[0]}; name a linked folder as an input to include it", err=True)
    if found.in_output and talk:
        click.echo(f"note: left out {len(found.in_output)} file(s) under the output folder {output} inside the "
                   "input folder (earlier outputs)", err=True)
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
    jobs, skipped = drop_outputs_of_others(jobs, lambda w, h: upscaler.output_size(h, w, outscale)[::-1])
    check_not_other_input(jobs)
    check_distinct(jobs)
    jobs, kept = _existing_outputs(jobs, overwrite, skip_existing)
    if skipped and talk:
        click.echo(f"note: left out {len(skipped)} input(s) that this run writes as outputs "
                   f"(e.g. {skipped[0].src}); --overwrite redoes them", err=True)
    for folder in sorted({j.dst.parent for j in jobs if j.dst is not None}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SubpixelError(f"cannot create the output folder {folder}: {err.strerror or err}") from None
        if not _writable(folder):  # before any work, not after each image's
            raise SubpixelError(f"cannot write into the output folder {folder} (read-only or not permitted)")

    def summary(error: str | None, ran: list[Job], not_attempted: list[Job]) -> dict:
        failures = jobs_failed + [j for j in ran if j.error]
        return {**({"error": error} if error else {}), "model": upscaler.name, "scale": scale, "outscale": outscale,
                "engine": upscaler.engine.name, "device": str(upscaler.device),
                "precision": getattr(upscaler.engine, "precision", "fp32"),
                "outputs": [{"input": str(j.src), "output": str(j.dst), "seconds": round(j.seconds, 3), **j.extra}
                            for j in ran if not j.error],
                "failures": [{"input": str(j.src), "error": j.error} for j in failures],
                "not_attempted": [str(j.src) for j in not_attempted],
                "skipped_outputs_of_other_inputs": [str(j.src) for j in skipped],
                "skipped_existing_outputs": [str(j.dst) for j in kept],
                "empty_folders": [str(p) for p in empty],
                "not_images": [str(p) for p in found.not_images],
                "skipped_links": [str(p) for p in found.links],
                "skipped_under_output_folder": [str(p) for p in found.in_output]}

    for j in jobs_failed:  # inputs that were not found: said before the work, as each image's error during it
        _say_error(j)
    bar = tqdm(jobs, unit="img", disable=quiet or as_json or len(jobs) < 2, dynamic_ncols=True)
    tiles = _TileBar() if len(jobs) == 1 and talk else None
    ran: list[Job] = []
    try:
        for job in bar:
            bar.set_postfix_str(job.src.name)
            _run_job(job, upscaler, tile, overwrite, quality, max_pixels or None, tiles, outscale)
            ran.append(job)
            if job.error:
                _say_error(job)
            elif talk:  # as each is written, so an interrupted or killed run leaves a record of what is done
                resized = "" if outscale is None else f" resized to x{outscale:g}"
                with tqdm.external_write_mode(file=sys.stdout):
                    click.echo(f"wrote {job.dst} ({upscaler.name} x{scale}{resized}, {job.seconds:.2f} s)")
            if job.stop:
                break
    except KeyboardInterrupt:
        bar.close()
        if tiles is not None:
            tiles.close()
        if not as_json:  # said once, here (not the CLI's plain "interrupted")
            done = sum(1 for j in ran if not j.error)
            hint = f"interrupted: {done} of {len(jobs)} written; rerun with --skip-existing to continue"
            click.echo(hint, err=True)
            raise Interrupted(hint) from None
        click.echo("interrupted", err=True)  # the CLI prints the JSON error, with what was done before the Ctrl-C
        raise Interrupted("interrupted", details=summary(None, ran, jobs[len(ran):])) from None
    bar.close()
    if tiles is not None:
        tiles.close()
    not_attempted = jobs[len(ran):]
    stop = ran[-1].stop if ran and ran[-1].stop else None
    if stop:
        stop = (f"stopped the batch: {stop}; {len(not_attempted)} input(s) not attempted; "
                "rerun with --skip-existing to continue")
    failed = len(jobs_failed) + sum(1 for j in ran if j.error)
    if as_json:
        error = stop or (f"{failed} of {len(jobs_failed) + len(ran)} inputs failed" if failed else None)
        emit_json(summary(error, ran, not_attempted))
    elif not quiet:
        if kept:
            click.echo(f"note: kept {len(kept)} existing output(s) (--skip-existing)", err=True)
        if upscaler.name == "bicubic" and model == "auto":
            click.echo(f"note: no trained x{scale} model ships yet; used bicubic", err=True)
    if stop:
        click.echo(f"error: {stop}", err=True)
    if failed:
        raise SystemExit(1)


def _say_error(job: Job) -> None:
    """Print a failed input's error line now, above any progress bar."""
    msg = job.error if job.error and str(job.src) in job.error else f"{job.src}: {job.error}"
    with tqdm.external_write_mode(file=sys.stderr):
        click.echo(f"error: {msg}", err=True)


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
                    f"tiles were halved down to {MIN_TILE} pixels first; free memory or use another --device")
            job.error = f"{job.src}: out of memory ({hint}), or pass --max-pixels to refuse images this large"
        elif isinstance(err, (SubpixelError, OSError)):
            job.error = str(err) if isinstance(err, SubpixelError) else f"{type(err).__name__}: {err}"
            job.stop = _stop_reason(err, job.dst)
        else:
            raise
    job.seconds = time.perf_counter() - start


def _stop_reason(err: BaseException, dst: Path) -> str | None:
    """Why no later image can be written either, when ``err`` (or an error it was raised from) is a full disk,
    a full quota or a read-only file system; else None."""
    seen: BaseException | None = err
    for _ in range(8):  # the chain of causes (write_image's ImageWriteError is raised from the OSError)
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in STOPPING_ERRNOS:
            what = os.strerror(seen.errno)
            fix = ("make the output's file system writable" if seen.errno == errno.EROFS else
                   "free space (or raise the quota) on the output's disk")
            return f"{what} writing {dst}: {fix}"
        seen = seen.__cause__ or seen.__context__
    return None
