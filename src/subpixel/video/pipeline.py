"""Streaming video super-resolution: decode -> batched SR -> RGB to YUV -> encode, overlapped in threads.

Four stages joined by bounded queues, so memory stays bounded whatever the length:

* decode thread: demux, decode, optional deinterlace, YUV -> RGB in the stream's own matrix;
* SR thread: batches of frames through a :class:`FrameProcessor`;
* convert thread: RGB -> YUV in the output's matrix, the frames of a batch in parallel (swscale
  releases the GIL; at 4K this conversion alone costs about as much as x264 veryfast);
* the calling thread: encoding (x264 and others with frame threads), segments, progress.

Frames are encoded in segments of ``segment_frames`` into a hidden work folder (see
:mod:`subpixel.video.segments`), so an interrupted job resumes from its last finished segment.
At the end the segments are joined without re-encoding, the input's audio and subtitle packets
are copied in untouched, and the result replaces the output atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import av
import numpy as np
import torch
from tqdm import tqdm

from subpixel.errors import NotResumableError, SubpixelError, first_line
from subpixel.io.video_decode import DEINTERLACERS, ColorInfo, DecodeStats, FrameTiming, VideoInfo, decode_frames, probe
from subpixel.io.video_encode import (
    EncoderSpec,
    PngEncoder,
    SegmentEncoder,
    check_encoder,
    resolve_encoder,
    segment_format,
)
from subpixel.io.video_mux import check_container, mux_output
from subpixel.ops.pixels import quantize
from subpixel.ops.tiling import MIN_TILE
from subpixel.upscaler import Upscaler, check_tile
from subpixel.video.segments import Manifest, Segment, WorkDir, input_identity, open_workdir

__all__ = ["FrameProcessor", "UpscalerProcessor", "VideoOptions", "as_processor", "upscale_video"]

Item = tuple[int, int, np.ndarray]  # frame index, pts, RGB (H, W, 3)
CONVERT_THREADS = 4  # at most; RGB -> YUV conversions of one batch in parallel
SCENE_CUT_THRESHOLD = 10.0  # percent; a recurrent model (FRVSR) starts afresh at a scene cut

log = logging.getLogger(__name__)


@runtime_checkable
class FrameProcessor(Protocol):
    """The SR stage. ``process``: ``(N, 3, H, W)`` float in [0, 1] -> ``(N, 3, sH, sW)`` float.

    ``batch`` is on the processor's ``device`` when it has that attribute (8-bit frames go there
    as uint8 and become float there), else on the CPU; the result may stay on the device and is
    clamped to [0, 1] afterwards. Frames arrive in presentation order, a batch never straddles
    two segments, and an optional ``reset()`` is called before the first frame of every segment.
    A recurrent model restarts its state there (no warm-up from the previous segment's frames),
    so each segment depends only on its own frames and a resumed job is bit-identical to an
    uninterrupted one; the cost is a cold start every ``segment_frames`` frames. An optional
    ``name`` is recorded in the resume manifest.
    """

    scale: int

    def process(self, batch: torch.Tensor) -> torch.Tensor: ...


class UpscalerProcessor:
    """Frame-wise SR with any :class:`Upscaler` (``tile``: as in :meth:`Upscaler.upscale_tensor`)."""

    def __init__(self, upscaler: Upscaler, tile: int | None = None) -> None:
        self.upscaler, self.tile = upscaler, tile
        self.scale = upscaler.scale
        engine = upscaler.engine
        self.engine = engine.name
        precision = getattr(engine, "precision", "fp32")
        self.name = f"{upscaler.name} x{self.scale} {engine.name} {precision}"
        # for the resume manifest: ``--engine auto`` times the engines afresh each run (torch one run, onnx the next)
        picked = getattr(engine, "selection", None) is not None
        self.identity = f"{upscaler.name} x{self.scale} {'auto' if picked else engine.name} {precision}"

    @property
    def device(self) -> torch.device:
        return self.upscaler.device

    def process(self, batch: torch.Tensor) -> torch.Tensor:
        return self.upscaler.upscale_tensor(batch.to(self.upscaler.device), self.tile)


@dataclass
class VideoOptions:
    """Settings of :func:`upscale_video` (the ``subpixel video`` flags)."""

    codec: str | None = None  # None: libx264, or png for a folder output
    crf: int | None = None  # None: the encoder's default in subpixel.io.video_encode.DEFAULT_CRF
    bitrate: str | int | None = None  # e.g. "8M"; excludes crf
    preset: str | None = None
    pix_fmt: str | None = None  # None: yuv420p, yuv420p10le for > 8-bit input where the encoder has it
    batch: int = 4
    segment_frames: int = 300
    deinterlace: str | None = None  # "yadif" or "bwdif"
    tile: int | None = None  # for Upscaler inputs
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    on_segment: Callable[[Segment], None] | None = field(default=None, compare=False)  # after each segment

    def validate(self) -> None:
        if self.batch < 1:
            raise SubpixelError(f"--batch must be >= 1, got {self.batch}")
        if self.segment_frames < 1:
            raise SubpixelError(f"--segment-frames must be >= 1, got {self.segment_frames}")
        try:
            check_tile(self.tile)
        except ValueError:
            raise SubpixelError(f"--tile must be 0 (no tiling) or >= {MIN_TILE}, got {self.tile!r}") from None
        if self.deinterlace not in (None, *DEINTERLACERS):
            raise SubpixelError(f"--deinterlace takes {' or '.join(DEINTERLACERS)}, got {self.deinterlace!r}")


@dataclass
class _Stage:
    frames: int = 0
    seconds: float = 0.0

    def report(self) -> dict[str, float | None]:
        return {"frames": self.frames, "seconds": round(self.seconds, 4),
                "fps": round(self.frames / self.seconds, 2) if self.seconds > 0 else None}


class _Stopped(Exception):
    """The job is stopping (another stage failed or was interrupted)."""


class _CtrlCGuard:
    """Ctrl-C while a job's workers run, on the main thread under Python's default handling (elsewhere a no-op):
    the first one raises ``KeyboardInterrupt`` as usual, except while ``held`` (workers starting or being
    joined), when it is only counted in ``hits`` (raised by :meth:`release`, or after the cleanup); later ones
    are ignored. So the cleanup always joins every worker: a process exiting while a worker is inside torch
    aborts with SIGABRT."""

    def __init__(self) -> None:
        self.hits, self.held = 0, True
        self.previous: Any = None

    def __enter__(self) -> _CtrlCGuard:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.hits += 1
        if self.hits == 1 and not self.held:
            raise KeyboardInterrupt

    def release(self) -> None:
        """Let a first Ctrl-C raise, at once if one came while held."""
        self.held = False
        if self.hits:
            raise KeyboardInterrupt

    def hold(self) -> None:
        self.held = True


class _Channel:
    """A bounded queue whose blocking calls give up once ``stop`` is set."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.stop = stop

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass
        raise _Stopped

    def get(self) -> Any:
        while not self.stop.is_set():
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                pass
        raise _Stopped


def as_processor(model: Upscaler | FrameProcessor, tile: int | None = None) -> FrameProcessor:
    """An :class:`Upscaler` wrapped frame-wise (recurrently for FRVSR), or a :class:`FrameProcessor` as it is."""
    if isinstance(model, Upscaler):
        from subpixel.models.frvsr import FRVSR
        from subpixel.video.recurrent import RecurrentProcessor

        if isinstance(model.net, FRVSR):
            _warn_ignored_by_recurrent(model, tile)
            return RecurrentProcessor(model.net, model.device, getattr(model.engine, "precision", "fp32"),
                                      cut_threshold=SCENE_CUT_THRESHOLD)
        return UpscalerProcessor(model, tile)
    if isinstance(model, FrameProcessor):
        return model
    raise TypeError(f"expected an Upscaler or a FrameProcessor, got {type(model).__name__}")


def _warn_ignored_by_recurrent(model: Upscaler, tile: int | None) -> None:
    """A recurrent model steps through whole frames on eager torch: an engine the user picked and tiles do not apply."""
    engine = model.engine
    asked = getattr(engine, "selection", None) is None  # not the auto selection's pick
    ignored = [f"--engine {engine.name}"] if asked and engine.name != "torch" else []
    if tile:
        ignored.append(f"--tile {tile}")
    if ignored:
        log.warning("%s is recurrent and runs whole frames on torch: %s %s ignored", model.name, " and ".join(ignored),
                    "are" if len(ignored) > 1 else "is")


def _is_folder(output: str | Path) -> bool:
    """Whether ``output`` names a folder: an existing one, one written with a trailing slash, or no extension."""
    path = Path(output)
    return path.is_dir() or str(output).endswith(("/", os.sep)) or not path.suffix


def _check_output_free(dst: Path, png: bool, overwrite: bool, finishing: bool) -> None:
    """Refuse an output in the way (``overwrite`` replaces it); ``finishing``: the PNG frames in ``dst`` may be
    this job's own, moved there by a final step that was cut short."""
    if png and dst.exists() and not dst.is_dir():
        raise SubpixelError(f"{dst} is a file, not a folder for the PNG sequence; pick another output path")
    if overwrite:
        if not png and dst.is_dir():
            raise SubpixelError(f"{dst} is a folder; give a file name for a video output")
        return
    if png and not finishing and dst.is_dir() and any(dst.glob("frame_*.png")):
        raise SubpixelError(f"{dst} already holds frame_*.png files (use --overwrite)")
    if not png and dst.exists():
        raise SubpixelError(f"output {dst} exists (use --overwrite)")


def _frames_all_done(dst: Path, resume: bool) -> bool:
    """Whether ``resume`` continues a job whose frames are all encoded (only its final step is left)."""
    try:
        return resume and WorkDir(dst).load().complete
    except SubpixelError:  # no (readable) work folder: open_workdir has the say
        return False


def _weights_digest(model: Upscaler | FrameProcessor) -> str | None:
    """SHA-256 (first 16 hex digits) of the network weights in key order; None without weights (bicubic)."""
    net = getattr(getattr(model, "upscaler", model), "net", None)  # an Upscaler's, an UpscalerProcessor's
    state = net.state_dict() if isinstance(net, torch.nn.Module) else {}
    if not state:
        return None
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _cannot_write(output: Path, err: OSError | av.FFmpegError, kept: int) -> SubpixelError:
    """The error for a failed write (a full disk, a missing folder: an OSError) or a failed encoder (another
    FFmpeg error), saying what ``--resume`` can continue."""
    resumable = f"; {kept} finished frames are kept for --resume" if kept else ""
    if isinstance(err, OSError):
        return SubpixelError(f"cannot write {output}: {err.strerror or err}{resumable}")
    return SubpixelError(f"encoding {output} failed: {first_line(err)}{resumable}")


def _streams(indexes: tuple[int, ...], kinds: tuple[str, ...] = ()) -> str:
    """``stream #1`` or ``streams #1, #2``; with ``kinds``: ``stream #4 (cover art)``."""
    named = [f"#{i} ({kind})" if kind else f"#{i}" for i, kind in zip(indexes, kinds or ("",) * len(indexes))]
    return f"stream{'s' * (len(indexes) > 1)} {', '.join(named)}"


def _attachment_names(src: Path, indexes: tuple[int, ...]) -> list[str]:
    with av.open(str(src)) as container:
        return [container.streams[i].metadata.get("filename", "") for i in indexes]


def _missing_time(info: VideoInfo, manifest: Manifest) -> tuple[float, float] | None:
    """(read, stated) seconds of video when frames are missing from the end of an input that lists no frame count
    (Matroska, WebM): the stream's own stated duration (or, more loosely, the container's, which counts audio
    too) against the time the frames read span; None when they agree."""
    stated = info.stream_duration or info.duration
    if not stated or not manifest.segments:
        return None
    step = float(info.frame_step * info.time_base)
    first, last = manifest.segments[0].start_pts, manifest.segments[-1].end_pts
    read = max(last - first, last) * float(info.time_base) + step  # a stated duration may count from zero
    slack = max(3 * step, 0.25 if info.stream_duration else 1.0)
    return (read, stated) if read < stated - slack else None


def _chroma_step(pix_fmt: str) -> tuple[int, int]:
    """How many pixels share one chroma sample across and down (1, 1 for 4:4:4 and RGB)."""
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or len(fmt.components) < 3:  # grey has no chroma to lose
        return (1, 1)
    return 64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64)


def _warn_downgrades(src: Path, info: VideoInfo, spec: EncoderSpec, full: tuple[int, int], size: tuple[int, int],
                     default_pix_fmt: bool) -> None:
    """Say what the output loses against the input: bit depth, chroma resolution (both only for the default
    --pix-fmt: one asked for is what was wanted) and the columns or rows a subsampled format cannot hold."""
    out_depth = max(c.bits for c in av.VideoFormat(spec.pix_fmt).components)
    if default_pix_fmt and info.bit_depth > 8 and out_depth <= 8:
        log.warning("%s is %d-bit, but %s has no deeper pixel format in this FFmpeg build: the output is 8-bit "
                    "%s (h264 or h265 keep 10 bits)", src, info.bit_depth, spec.codec, spec.pix_fmt)
    colour = len(av.VideoFormat(info.pix_fmt).components) >= 3
    if default_pix_fmt and colour and _chroma_step(info.pix_fmt) == (1, 1) and _chroma_step(spec.pix_fmt) != (1, 1):
        log.warning("%s has full colour resolution (%s), the output %s by default keeps a quarter of it; "
                    "--pix-fmt yuv444p%s keeps it all", src, info.pix_fmt, spec.pix_fmt, "10le" if spec.deep else "")
    if size != full:
        cut = [f"{n} {what}{'s' * (n > 1)}" for n, what in ((full[0] - size[0], "column"), (full[1] - size[1], "row"))
               if n]
        log.warning("%s: the upscaled %dx%d is cropped to %dx%d (%s off the right and bottom edges): %s halves the "
                    "colour resolution and needs even sizes", src, *full, *size, " and ".join(cut), spec.pix_fmt)


def _quantize(y: torch.Tensor, deep: bool) -> np.ndarray:
    """Float ``(N, 3, H, W)`` -> ``(N, H, W, 3)`` uint8 (uint16 if ``deep``), rounding half up
    (:func:`~subpixel.ops.pixels.quantize`, on ``y``'s device; ``y`` itself, perhaps a recurrent model's
    state, is left as it is). MPS has no uint16 before torch 2.9: deep frames are quantized on the CPU there."""
    if deep and y.device.type == "mps":
        y = y.cpu()
    return quantize(y, torch.uint16 if deep else torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class _Job:
    """One run of the pipeline over an input (possibly resuming a work folder)."""

    def __init__(self, info: VideoInfo, processor: FrameProcessor, opts: VideoOptions, spec: EncoderSpec,
                 size: tuple[int, int], work: WorkDir, manifest: Manifest, png: bool) -> None:
        self.info, self.proc, self.opts, self.spec, self.size = info, processor, opts, spec, size
        self.work, self.manifest, self.png = work, manifest, png
        self.deep = info.bit_depth > 8 or spec.deep
        self.color = info.color.for_output(spec.pix_fmt)
        self.suffix = ".mp4" if segment_format(spec) == "mp4" else ".mkv"
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.decoded = _Channel(2 * opts.batch, self.stop)
        self.upscaled = _Channel(2, self.stop)
        self.converted = _Channel(2, self.stop)
        self.decode_stats = DecodeStats()
        done = manifest.segments  # the frame timing goes on from the finished segments
        self.first_pts, self.last_pts = (done[0].start_pts, done[-1].end_pts) if done else (None, None)
        self.stages = {"decode": _Stage(), "sr": _Stage(), "convert": _Stage(), "encode": _Stage(), "mux": _Stage()}
        self.writer: _VideoSegment | _PngSegment | None = None
        self.png_encoder = (PngEncoder(work.path / "frames", *size, spec.deep, info.rotation, info.sar)
                            if png else None)

    # -- stages ---------------------------------------------------------------------------------
    def _decode(self) -> None:
        stage, index, t0 = self.stages["decode"], self.manifest.frames_done, time.perf_counter()
        frames = decode_frames(self.info, self.opts.deinterlace, self.manifest.last_pts, self.decode_stats)
        try:
            for frame in frames:
                item = (index, frame.pts, self.info.color.to_rgb(frame, self.deep))
                stage.seconds += time.perf_counter() - t0
                stage.frames += 1
                self.decoded.put(item)
                index += 1
                t0 = time.perf_counter()
        finally:
            frames.close()
        self.decoded.put(None)

    def _upscale(self) -> None:
        stage, seg, reset = self.stages["sr"], self.opts.segment_frames, getattr(self.proc, "reset", None)
        h, w, s = self.info.height, self.info.width, self.proc.scale
        peak = 65535.0 if self.deep else 255.0
        ended = False
        while not ended:
            items: list[Item] = []
            while not items or (len(items) < self.opts.batch and (items[-1][0] + 1) % seg):
                item = self.decoded.get()
                if item is None:
                    ended = True
                    break
                items.append(item)
            if not items:
                break
            t0 = time.perf_counter()
            if reset is not None and items[0][0] % seg == 0:
                reset()
            x = np.stack([rgb for _, _, rgb in items])
            if self.deep:
                frames = torch.from_numpy(x.astype(np.float32))
            else:  # uint8 to the device (a quarter of the bytes), float there
                frames = torch.from_numpy(x).to(getattr(self.proc, "device", "cpu")).float()
            with torch.no_grad():
                y = self.proc.process(frames.permute(0, 3, 1, 2).div_(peak))
            if tuple(y.shape) != (len(items), 3, h * s, w * s):
                raise NotResumableError(f"the SR stage returned {tuple(y.shape)} for {tuple(x.shape)} frames at x{s}")
            out = _quantize(y, self.deep)
            stage.seconds += time.perf_counter() - t0
            stage.frames += len(items)
            self.upscaled.put([(idx, pts, out[k]) for k, (idx, pts, _) in enumerate(items)])
        self.upscaled.put(None)

    def _to_frame(self, rgb: np.ndarray) -> av.VideoFrame:
        w, h = self.size
        return self.color.from_rgb(rgb[:h, :w], self.spec.pix_fmt)

    def _convert(self) -> None:
        """RGB -> YUV frames for the encoder (PNG output keeps RGB and skips this)."""
        stage = self.stages["convert"]
        workers = max(1, min(CONVERT_THREADS, (os.cpu_count() or 2) - 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="subpixel-convert") as pool:
            while (batch := self.upscaled.get()) is not None:
                t0 = time.perf_counter()
                if not self.png:
                    frames = list(pool.map(self._to_frame, [rgb for _, _, rgb in batch]))
                    batch = [(index, pts, frame) for (index, pts, _), frame in zip(batch, frames)]
                stage.seconds += time.perf_counter() - t0
                stage.frames += len(batch)
                self.converted.put(batch)
        self.converted.put(None)

    def _encode(self, bar: tqdm) -> None:
        """Write the converted frames into segments; a failed write keeps the finished ones."""
        try:
            self._write_segments(bar)
        except (av.FFmpegError, OSError) as err:
            raise _cannot_write(self.work.output, err, self.manifest.frames_done) from None

    def _write_segments(self, bar: tqdm) -> None:
        stage, seg = self.stages["encode"], self.opts.segment_frames
        while (batch := self.converted.get()) is not None:
            t0 = time.perf_counter()
            for index, pts, frame in batch:
                if self.writer is None:
                    self.writer = self._open_segment(index // seg)
                self.first_pts = pts if self.first_pts is None else self.first_pts
                self.writer.timing.add_frame(index, pts, self.last_pts, self.first_pts, self.info)
                self.writer.write(frame, index, pts)
                self.last_pts = pts
                if (index + 1) % seg == 0:
                    self._finish_segment()
            stage.seconds += time.perf_counter() - t0
            stage.frames += len(batch)
            bar.update(len(batch))
        if self.writer is not None:
            self._finish_segment()
        self.manifest.complete = True
        self.work.save(self.manifest)

    # -- segments -------------------------------------------------------------------------------
    def _open_segment(self, index: int) -> _VideoSegment | _PngSegment:
        if self.png_encoder is not None:
            return _PngSegment(index, self.png_encoder)
        return _VideoSegment(index, self.work, self.suffix, self.spec, self.size, self.info, self.color)

    def _finish_segment(self) -> None:
        segment = self.writer.finish()
        self.writer = None
        self.manifest.segments.append(segment)
        self.work.save(self.manifest)
        if self.opts.on_segment is not None:
            self.opts.on_segment(segment)

    # -- driver ---------------------------------------------------------------------------------
    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except _Stopped:
                pass
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                self.errors.append(err)
                self.stop.set()

        thread = threading.Thread(target=run, name=f"subpixel-{name}", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Encode the frames not yet in finished segments (none if the manifest is complete)."""
        if self.manifest.frames_done % self.opts.segment_frames:  # only the input's last segment is short
            self.manifest.complete = True  # a stop before the manifest said so left only the final step
        if self.manifest.complete:
            return
        total = self.info.frames or None
        bar = tqdm(total=total, initial=self.manifest.frames_done, unit="frame", dynamic_ncols=True,
                   disable=not self.opts.progress, desc=self.work.output.name)
        threads: list[threading.Thread] = []
        with _CtrlCGuard() as guard:
            try:
                for target, name in ((self._decode, "decode"), (self._upscale, "sr"), (self._convert, "convert")):
                    threads.append(self._spawn(target, name))
                guard.release()
                self._encode(bar)
                bar.total = bar.n  # the container's frame count is an estimate: end at 100%
            except _Stopped:
                raise self.errors[0] from None
            finally:
                guard.hold()
                self.stop.set()
                late_interrupt = self._join(threads)
                if self.writer is not None:
                    self.writer.abort()
                bar.close()
        if late_interrupt is None and guard.hits:  # a Ctrl-C held while the finished job's workers were ending
            late_interrupt = KeyboardInterrupt()
        if late_interrupt is not None:
            raise late_interrupt

    def _join(self, threads: list[threading.Thread]) -> KeyboardInterrupt | None:
        """Wait for every worker to end, through any number of Ctrl-Cs (a second one is common, and a process
        exiting while a worker is inside torch aborts with SIGABRT); the first Ctrl-C caught here is returned
        for the caller to raise once (an exception already on its way out wins over it)."""
        caught: KeyboardInterrupt | None = None
        for thread in threads:
            while True:
                try:
                    thread.join()
                    break
                except KeyboardInterrupt as err:
                    caught = caught or err
                    self.stop.set()
        return caught

    def finalize(self, dst: Path) -> None:
        """Put the finished output in place and remove the work folder; a failure keeps it for ``--resume``."""
        t0 = time.perf_counter()
        try:
            if self.png:
                self._place_frames(dst)
            else:
                tmp = self.work.path / f"output{dst.suffix}"
                segments = [(self.work.path / s.file, s.start_pts) for s in self.manifest.segments]
                timing = self.timing()
                mux_output(tmp, segments, self.info, shown=dst, drift=timing.drift, retimed=timing.retimed)
                os.replace(tmp, dst)
        except OSError as err:
            raise _cannot_write(dst, err, self.manifest.frames_done) from None
        self.work.remove()
        self.stages["mux"].seconds = time.perf_counter() - t0
        self.stages["mux"].frames = self.manifest.frames_done

    def timing(self) -> FrameTiming:
        """The frame timing of all finished segments (segments recorded before it was kept count as none)."""
        total = FrameTiming()
        for segment in self.manifest.segments:
            total.merge(FrameTiming(**segment.timing))
        return total

    def _place_frames(self, dst: Path) -> None:
        """Move the PNG frames into ``dst``: a new folder by one rename; into an existing one frame by frame,
        then remove the frame files there that are not this job's. A move cut short is finished by ``--resume``."""
        frames = self.work.path / "frames"
        if not dst.exists():
            os.replace(frames, dst)
            return
        names = [PngEncoder.file_name(i) for i in range(self.manifest.frames_done)]
        for name in names:
            if (frames / name).exists():
                os.replace(frames / name, dst / name)
            elif not (dst / name).exists():
                raise SubpixelError(f"cannot finish {dst}: {name} is missing from {frames}; start again with "
                                    "--overwrite")
        ours = set(names)
        for old in dst.glob("frame_*.png"):
            if old.name not in ours:
                old.unlink()


class _OpenSegment:
    """A segment being written: counts its frames and first/last pts; ``timing``: its frames' timing."""

    def __init__(self, index: int) -> None:
        self.index, self.frames, self.start_pts, self.end_pts = index, 0, 0, 0
        self.timing = FrameTiming()

    def write(self, frame: Any, index: int, pts: int) -> None:
        if self.frames == 0:
            self.start_pts = pts
        self.end_pts = pts
        self.frames += 1

    def record(self, file: str) -> Segment:
        return Segment(self.index, file, self.frames, self.start_pts, self.end_pts, asdict(self.timing))


class _VideoSegment(_OpenSegment):
    """A segment file: encoded under a partial name, renamed into place once complete."""

    def __init__(self, index: int, work: WorkDir, suffix: str, spec: EncoderSpec, size: tuple[int, int],
                 info: VideoInfo, color: ColorInfo) -> None:
        super().__init__(index)
        self.partial, self.final = work.partial_path(index, suffix), work.segment_path(index, suffix)
        self.args = (spec, *size, info, color)
        self.encoder: SegmentEncoder | None = None

    def write(self, frame: av.VideoFrame, index: int, pts: int) -> None:
        if self.encoder is None:  # timestamps are stored relative to the segment's first frame
            self.encoder = SegmentEncoder(self.partial, *self.args, start_pts=pts)
        super().write(frame, index, pts)
        self.encoder.write(frame, pts)

    def finish(self) -> Segment:
        assert self.encoder is not None
        self.encoder.close()
        self.timing.retimed = self.encoder.retimed
        os.replace(self.partial, self.final)
        return self.record(self.final.name)

    def abort(self) -> None:
        if self.encoder is not None:
            with contextlib.suppress(av.FFmpegError, OSError):  # e.g. a full disk: the file is dropped anyway
                self.encoder.abort()
        self.partial.unlink(missing_ok=True)


class _PngSegment(_OpenSegment):
    """A range of PNG frames, written straight into the work folder's ``frames/``."""

    def __init__(self, index: int, encoder: PngEncoder) -> None:
        super().__init__(index)
        self.encoder = encoder

    def write(self, rgb: np.ndarray, index: int, pts: int) -> None:
        super().write(rgb, index, pts)
        self.encoder.write(rgb, index)

    def finish(self) -> Segment:
        return self.record("frames")

    def abort(self) -> None:
        """Frames of an unfinished segment are simply rewritten on resume."""


def _model_and_precision(model: Upscaler | FrameProcessor, processor: FrameProcessor) -> tuple[str, str | None]:
    """The summary's bare model name (as upscale and eval give it) and precision (None where unknown)."""
    if isinstance(model, Upscaler):
        return model.name, getattr(model.engine, "precision", "fp32")
    return getattr(processor, "name", type(processor).__qualname__), getattr(processor, "precision", None)


def upscale_video(input: str | Path, output: str | Path, model: Upscaler | FrameProcessor,
                  options: VideoOptions | None = None) -> dict[str, Any]:
    """Upscale the video ``input`` into ``output`` (a video file, or a folder for a PNG sequence).

    ``output`` is a folder when it exists as one, ends with a slash or has no extension.
    ``model``: an :class:`Upscaler` (run frame-wise) or any :class:`FrameProcessor`. Returns a
    summary: frame counts, wall time and per-stage busy time and throughput (decode, sr,
    convert, encode, mux). Raises :class:`SubpixelError` for unreadable input, an existing output
    (without ``overwrite``), unavailable encoders or incompatible containers.
    """
    opts = options or VideoOptions()
    opts.validate()
    src, dst = Path(input), Path(output)
    started = time.perf_counter()
    processor = as_processor(model, opts.tile)
    info = probe(src)
    if info.field_order not in (None, "progressive") and opts.deinterlace is None:
        log.warning("%s is interlaced (field order %s): --deinterlace %s may look better", src, info.field_order,
                    " or ".join(DEINTERLACERS))
    if info.dropped_streams:
        log.warning("%s: only video stream #%d is upscaled; input %s not copied", src, info.stream,
                    _streams(info.dropped_streams, info.dropped_kinds))
    folder = _is_folder(output)  # before Path() drops a trailing slash
    png = opts.codec == "png" or (opts.codec is None and folder)
    if png and not folder:
        raise SubpixelError(f"a PNG sequence goes into a folder; {dst} looks like a file")
    if not png and folder:
        raise SubpixelError(f"{dst} is a folder: video output needs a file name (or use --codec png)")
    spec = resolve_encoder("png" if png else opts.codec or "libx264", opts.pix_fmt, opts.crf, opts.bitrate,
                           opts.preset, deep_input=info.bit_depth > 8)
    size = spec.crop(info.width * processor.scale, info.height * processor.scale)
    _warn_downgrades(src, info, spec, (info.width * processor.scale, info.height * processor.scale), size,
                     opts.pix_fmt is None)
    if dst.resolve() == src.resolve():
        raise SubpixelError("the output would overwrite the input; pick another output path")
    _check_output_free(dst, png, opts.overwrite, _frames_all_done(dst, opts.resume))
    if not png:
        check_encoder(spec, *size, info)
        check_container(dst, spec, *size, info)
    elif info.copy_streams:
        log.warning("%s: a PNG sequence holds no audio or subtitles; input %s not copied", src,
                    _streams(info.copy_streams))
    if info.attachments and (png or dst.suffix.lower() not in (".mkv", ".mka", ".mks")):
        log.warning("%s: only Matroska (.mkv) holds attachments (fonts); input %s not copied", src,
                    _streams(info.attachments, tuple(f"attachment {n}" if n else "attachment"
                                                     for n in _attachment_names(src, info.attachments))))
    name = getattr(processor, "name", type(processor).__qualname__)
    fingerprint = {"model": getattr(processor, "identity", name), "scale": processor.scale,
                   "weights": _weights_digest(model),
                   "codec": spec.codec, "pix_fmt": spec.pix_fmt, "bit_rate": spec.bit_rate,
                   **{f"encoder.{k}": v for k, v in sorted(spec.options.items())},
                   "segment_frames": opts.segment_frames, "deinterlace": opts.deinterlace,
                   "tile": opts.tile, "output": "png" if png else dst.suffix.lower()}
    work, manifest = open_workdir(dst, input_identity(src), fingerprint, opts.resume, opts.overwrite)
    resumed = manifest.frames_done
    job = _Job(info, processor, opts, spec, size, work, manifest, png)
    try:
        job.run()
    except BaseException as err:
        if isinstance(err, NotResumableError) or not manifest.frames_done:  # nothing for --resume to continue
            work.remove()
        raise
    job.finalize(dst)  # a failed final mux (e.g. a full disk) keeps the finished segments for --resume
    damaged = job.decode_stats.damaged
    if damaged:
        log.warning("%s: %d damaged frames could not be decoded and were skipped", src, damaged)
    gaps, missing = job.timing().gaps
    if gaps:
        log.warning("%s: the video skips %.3f s in %d gap%s between frame times (frames lost to damaged data?); "
                    "the output skips them too", src, missing, gaps, "" if gaps == 1 else "s")
    listed = info.listed_frames
    # a container's count may be one off; a resumed job counts only this session's damaged frames
    if listed and not resumed and manifest.frames_done + damaged < listed - 1:
        log.warning("%s: only %d of the %d frames the container lists could be read (truncated file?); "
                    "the output holds those", src, manifest.frames_done, listed)
    expected = None if listed else _missing_time(info, manifest)
    if expected is not None:
        log.warning("%s: only %.3f s of the %.3f s of video the container states could be read (truncated "
                    "file?); the output holds those %d frames", src, expected[0], expected[1], manifest.frames_done)
    seconds = time.perf_counter() - started
    processed = job.stages["sr"].frames
    bare, precision = _model_and_precision(model, processor)
    return {"input": str(src), "output": str(dst), "model": bare,
            "engine": getattr(processor, "engine", None), "precision": precision, "scale": processor.scale,
            "codec": spec.codec, "pix_fmt": spec.pix_fmt, "encoder_options": spec.options,
            "width": size[0], "height": size[1], "frames": manifest.frames_done, "processed_frames": processed,
            "resumed_frames": resumed, "damaged_frames": damaged, "timestamp_gaps": gaps,
            "missing_seconds": round(missing, 3), "expected_frames": listed or None,
            "expected_duration": None if listed else info.stream_duration or info.duration,
            "segments": len(manifest.segments),
            "seconds": round(seconds, 3), "fps": round(processed / seconds, 2) if seconds > 0 else None,
            "stages": {k: v.report() for k, v in job.stages.items()}, "source": info.summary()}
