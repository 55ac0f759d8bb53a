"""``subpixel video``: upscale a video file, streaming and resumable."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import click
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from subpixel.commands.options import emit_json, output_options, runtime_options, tile_option
from subpixel.errors import Interrupted, SubpixelError
from subpixel.io.video_decode import DEINTERLACERS
from subpixel.models.loader import load
from subpixel.video.pipeline import VideoOptions, upscale_video
from subpixel.video.segments import WorkDir


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),  # str: keeps a trailing slash
              help="Output video file, or a folder for a PNG sequence.")
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Upscaling factor [default: a weights file's own scale, else 4].")
@click.option("-m", "--model", default="auto", show_default=True,
              help="Model name or .safetensors path; auto = best shipped model for the scale.")
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True, help="Frames per model call.")
@click.option("--codec", default=None,
              help="Video encoder: h264 (libx264), h265, vp9, av1, png, or any FFmpeg encoder name "
                   "[default: libx264; png for a folder output].")
@click.option("--crf", type=int, default=None, help="Constant quality [default: 18 for x264, 20 x265, 30 vp9/av1].")
@click.option("--bitrate", default=None, help="Target bitrate instead of --crf, e.g. 8M or 2500k.")
@click.option("--preset", default=None,
              help="Encoder speed preset (x264/x265: slow, medium...; svt-av1/vp9: a number).")
@click.option("--pix-fmt", default=None,
              help="Output pixel format [default: yuv420p, or yuv420p10le for input over 8 bits where the encoder "
                   "has it; JPEG encoders: yuvj420p; PNG: rgb24, or rgb48be for input over 8 bits].")
@click.option("--deinterlace", type=click.Choice(DEINTERLACERS), default=None,
              help="Deinterlace before SR with this FFmpeg filter (one frame per frame).")
@click.option("--segment-frames", type=click.IntRange(1), default=300, show_default=True,
              help="Frames per resumable segment (each starts with a keyframe).")
@click.option("--resume", is_flag=True, help="Continue an interrupted job from its last finished segment.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (or discard an unfinished job).")
@tile_option
@runtime_options
@output_options
def video(input_path: Path, output: str, scale: int | None, model: str, batch: int, codec: str | None,
          crf: int | None, bitrate: str | None, preset: str | None, pix_fmt: str | None, deinterlace: str | None,
          segment_frames: int, resume: bool, overwrite: bool, tile: int | None, device: str, precision: str,
          engine: str, quiet: bool, as_json: bool) -> None:
    """Upscale a video: audio and subtitles are copied, timestamps and colour tags kept."""
    os.environ.setdefault("SVT_LOG", "2")  # SVT-AV1: warnings and errors, not ~40 info lines per segment
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        # leave a core to the decode and encode threads: oversubscribed torch threads stall badly
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    upscaler = load(model, scale=scale, device=device, precision=precision, engine=engine)
    options = VideoOptions(codec=codec, crf=crf, bitrate=bitrate, preset=preset, pix_fmt=pix_fmt, batch=batch,
                           segment_frames=segment_frames, deinterlace=deinterlace, tile=tile, resume=resume,
                           overwrite=overwrite, progress=not (quiet or as_json))
    started = time.time()
    try:
        with logging_redirect_tqdm():  # warnings on their own lines, not after the progress bar
            summary = upscale_video(input_path, output, upscaler, options)
    except KeyboardInterrupt:
        hint = _resume_hint(Path(output), started)
        if hint:
            click.echo(hint, err=True)
            raise Interrupted(hint) from None
        raise
    if as_json:
        emit_json(summary)
    elif not quiet:
        resumed = f", {summary['resumed_frames']} resumed" if summary["resumed_frames"] else ""
        click.echo(f"wrote {output} ({upscaler.name} x{summary['scale']}, {summary['engine']}): {summary['frames']} "
                   f"frames{resumed}, {summary['width']}x{summary['height']} {summary['codec']} {summary['pix_fmt']}, "
                   f"{summary['fps']} frames/s")
        if upscaler.name == "bicubic" and model == "auto":
            click.echo(f"note: no trained x{summary['scale']} model ships yet; used bicubic", err=True)


def _resume_hint(output: Path, started: float = 0.0) -> str | None:
    """After Ctrl-C: where the finished segments wait and how to continue, or that nothing was kept; None when
    the job had already finished (its output written since ``started``, its work folder gone)."""
    work = WorkDir(output)
    try:
        frames = work.load().frames_done
    except SubpixelError:  # no work folder: interrupted before the first segment was finished, or once all was done
        frames = 0
        with contextlib.suppress(OSError):
            if output.stat().st_mtime >= started and not work.path.exists():
                return None
    if not frames:
        return f"interrupted before the first segment of {output} was finished: nothing was kept"
    return f"interrupted: {frames} finished frames of {output} are kept in {work.path}; rerun with --resume to continue"
