"""Video I/O on PyAV: probing, decoding to RGB in the stream's own colour matrix, encoding and muxing.

Frames travel as ``(H, W, 3)`` RGB arrays: uint8, or uint16 for deep (> 8-bit) video. YUV <-> RGB
uses the stream's own matrix (BT.601 / BT.709 / BT.2020) and range (limited / full); unspecified
tags are guessed like players do (BT.709 from 720 lines up, else BT.601; limited range unless the
pixel format is ``yuvj*``) and every output is tagged explicitly.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import heapq
import io
import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np
from av.video.reformatter import Interpolation

from subpixel.errors import NotResumableError, SubpixelError

__all__ = ["ColorInfo", "VideoInfo", "DecodeStats", "EncoderSpec", "probe", "decode_frames", "available_encoders",
           "resolve_encoder", "check_encoder", "check_container", "segment_format", "SegmentEncoder",
           "PngEncoder", "mux_output", "DEINTERLACERS", "DEFAULT_CRF", "CRF_RANGE"]

SPC_RGB, SPC_BT709, SPC_SMPTE170M = 0, 1, 6
RANGE_LIMITED, RANGE_FULL = 1, 2
_UNSPECIFIED = (0, 2)  # reserved / unspecified values of primaries and trc
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}  # AVColorSpace -> swscale matrix (SWS_CS_*)
_IMPLIED_TAGS = {1: (1, 1), 5: (5, 6), 6: (6, 6)}  # matrix -> usual (primaries, trc) when untagged
_FIELD_ORDER = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
_SWS_FLAGS = (Interpolation.BICUBIC | Interpolation.ACCURATE_RND
              | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP)
DEINTERLACERS = ("yadif", "bwdif")
_ALIASES = {"h264": ("libx264",), "avc": ("libx264",), "x264": ("libx264",), "h265": ("libx265",),
            "hevc": ("libx265",), "x265": ("libx265",), "vp9": ("libvpx-vp9",),
            "av1": ("libsvtav1", "libaom-av1", "librav1e")}
_SHORT_TIME_BASE = {"mpeg4", "h263", "h263p", "msmpeg4", "msmpeg4v2", "flv"}  # time base denominator <= 65535
_PNG_FORMATS = ("rgb24", "rgb48be")  # what PngEncoder writes: 8 or 16 bits per channel
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 30, "libsvtav1": 30, "libaom-av1": 30}
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63), "libaom-av1": (0, 63)}

_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT,
                           errno.EFBIG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR})

_TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "duration"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColorInfo:
    """Colour tags (FFmpeg enum values); ``colorspace`` and ``color_range`` also select the matrix."""

    colorspace: int  # AVColorSpace; 0 = RGB
    color_range: int  # 1 limited, 2 full
    primaries: int
    trc: int

    @classmethod
    def of_frame(cls, frame: av.VideoFrame) -> ColorInfo:
        """The frame's tags, unspecified ones resolved (a guess by frame height for the matrix)."""
        if frame.format.is_rgb:
            return cls(SPC_RGB, RANGE_FULL, frame.color_primaries, frame.color_trc)
        space = frame.colorspace if frame.colorspace in _SWS_MATRIX else (
            SPC_BT709 if frame.height >= 720 else SPC_SMPTE170M)
        full = frame.color_range == RANGE_FULL or frame.format.name.startswith("yuvj")
        implied_prim, implied_trc = _IMPLIED_TAGS.get(space, (2, 2))
        prim = implied_prim if frame.color_primaries in _UNSPECIFIED else frame.color_primaries
        trc = implied_trc if frame.color_trc in _UNSPECIFIED else frame.color_trc
        return cls(space, RANGE_FULL if full else RANGE_LIMITED, prim, trc)

    def for_output(self, pix_fmt: str) -> ColorInfo:
        """Tags for an output in ``pix_fmt``: RGB outputs drop the matrix, RGB sources get BT.709."""
        if av.VideoFormat(pix_fmt).is_rgb:
            return ColorInfo(SPC_RGB, RANGE_FULL, self.primaries, self.trc)
        if self.colorspace == SPC_RGB:
            prim = SPC_BT709 if self.primaries in _UNSPECIFIED else self.primaries
            trc = SPC_BT709 if self.trc in _UNSPECIFIED else self.trc
            return ColorInfo(SPC_BT709, RANGE_LIMITED, prim, trc)
        return self

    def to_rgb(self, frame: av.VideoFrame, deep: bool) -> np.ndarray:
        """Decoded frame -> full-range RGB ``(H, W, 3)``: uint16 if ``deep`` else uint8."""
        fmt = "rgb48le" if deep else "rgb24"
        if self.colorspace == SPC_RGB:
            return frame.to_ndarray(format=fmt, interpolation=_SWS_FLAGS)
        return frame.to_ndarray(format=fmt, src_colorspace=_SWS_MATRIX[self.colorspace],
                                src_color_range=self.color_range, dst_color_range=RANGE_FULL,
                                interpolation=_SWS_FLAGS)

    def from_rgb(self, rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
        """Full-range RGB (uint8 or uint16) -> a frame in ``pix_fmt`` with these tags."""
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le" if rgb.dtype == np.uint16
                                         else "rgb24")
        if self.colorspace == SPC_RGB:
            frame = src.reformat(format=pix_fmt, interpolation=_SWS_FLAGS)
        else:
            matrix = _SWS_MATRIX[self.colorspace]
            frame = src.reformat(format=pix_fmt, src_colorspace=matrix, dst_colorspace=matrix,
                                 src_color_range=RANGE_FULL, dst_color_range=self.color_range,
                                 interpolation=_SWS_FLAGS)
        frame.colorspace, frame.color_range = self.colorspace, self.color_range
        frame.color_primaries, frame.color_trc = self.primaries, self.trc
        return frame


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about an input's video stream (and what else it carries)."""

    path: str
    stream: int  # index of the video stream
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    rate: Fraction  # average frame rate
    frames: int  # container's count, else estimated from the duration (0: unknown)
    duration: float | None  # seconds
    sar: Fraction | None
    display_matrix: tuple[int, ...] | None  # 9 ints, as stored in the container
    rotation: float
    field_order: str | None
    color: ColorInfo
    copy_streams: tuple[int, ...]  # audio and subtitle streams, copied untouched
    dropped_streams: tuple[int, ...] = ()  # the rest (more video, cover art, data): not in the output
    listed_frames: int = 0  # the container's own frame count, not an estimate (0: it lists none)
    stream_duration: float | None = None  # seconds, as the video stream itself states it (None: it does not)
    dropped_kinds: tuple[str, ...] = ()  # what each of dropped_streams holds, in words ("cover art")
    attachments: tuple[int, ...] = ()  # attachment streams (fonts): copied into Matroska outputs

    @property
    def frame_step(self) -> int:
        """One nominal frame duration in ``time_base`` units (at least 1)."""
        return max(1, round(1 / (self.rate * self.time_base))) if self.rate else 1

    def summary(self) -> dict:
        d = asdict(self)
        d.update(time_base=str(self.time_base), rate=str(self.rate),
                 sar=str(self.sar) if self.sar else None, color=asdict(self.color))
        return d


@dataclass
class DecodeStats:
    """What decoding repaired: packets the decoder rejected (skipped) and jumps back in time (shifted);
    ``drift``: how far (seconds) frame times stray from a constant frame rate (variable frame rate)."""

    damaged: int = 0
    jumps: int = 0
    drift: float = 0.0


def _open_input(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FileNotFoundError:
        raise SubpixelError(f"no such file: {path}") from None
    except (av.FFmpegError, OSError) as err:
        raise SubpixelError(f"cannot read {path}: not a readable media file ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def probe(path: str | Path) -> VideoInfo:
    """Read the stream parameters of ``path``'s main video stream, decoding its first frame."""
    with _open_input(path) as container:
        stream = container.streams.best("video")
        if stream is None:
            raise SubpixelError(f"{path} has no video stream")
        try:
            first = next(_decoded(container, stream, DecodeStats()), None)
        except av.FFmpegError:
            first = None
        if first is None:
            raise SubpixelError(f"{path}: no video frame could be decoded (corrupt or truncated file?)")
        cc = stream.codec_context
        tb = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        own = float(stream.duration * tb) if stream.duration else _tag_seconds(stream.metadata)
        duration = own or (container.duration / 1e6 if container.duration else None)
        frames = stream.frames or (round(duration * rate) if duration and rate else 0)
        matrix = next((struct.unpack("<9i", bytes(sd)) for sd in first.side_data
                       if sd.type.name == "DISPLAYMATRIX"), None)
        copy = tuple(s.index for s in container.streams if s.type in ("audio", "subtitle"))
        attachments = tuple(s.index for s in container.streams if s.type == "attachment")
        chapters = len(container.chapters())
        dropped = tuple(s for s in container.streams if s.index != stream.index and s.index not in copy + attachments
                        and not _is_chapter_track(s, chapters))
        return VideoInfo(
            path=str(path), stream=stream.index, codec=cc.name, width=first.width, height=first.height,
            pix_fmt=first.format.name, bit_depth=max(c.bits for c in first.format.components),
            time_base=tb, rate=rate, frames=frames, duration=duration,
            sar=stream.sample_aspect_ratio or None, display_matrix=matrix,
            rotation=first.rotation if matrix else 0.0, field_order=_FIELD_ORDER.get(cc.field_order),
            color=ColorInfo.of_frame(first), copy_streams=copy, dropped_streams=tuple(s.index for s in dropped),
            listed_frames=stream.frames, stream_duration=own, dropped_kinds=tuple(map(_kind, dropped)),
            attachments=attachments)


def _tag_seconds(metadata: dict[str, str]) -> float | None:
    """A Matroska ``DURATION`` tag ("HH:MM:SS.nnnnnnnnn", the stream's end) in seconds; None without one."""
    text = next((v for k, v in metadata.items() if k.upper() == "DURATION"), None)
    try:
        h, m, sec = (text or "").split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec) or None
    except ValueError:
        return None


def _is_chapter_track(stream: av.stream.Stream, chapters: int) -> bool:
    """MP4 keeps chapters in a text track of its own, which comes back as a data stream (rewritten from them)."""
    return (chapters > 0 and stream.type == "data" and stream.frames == chapters
            and "mp4" in stream.container.format.name.split(","))


def _kind(stream: av.stream.Stream) -> str:
    """What a stream that is not copied holds, in words."""
    if stream.type == "video" and stream.disposition & av.stream.Disposition.attached_pic:
        return "cover art"
    if stream.type == "data":
        return "data stream"
    return f"{stream.type} stream"


def _decoded(container: av.container.InputContainer, stream: av.video.VideoStream, stats: DecodeStats
             ) -> Iterator[av.VideoFrame]:
    """Frames of ``stream``; packets the decoder rejects are skipped (damaged data) and counted."""
    stream.thread_type = "AUTO"
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            stats.damaged += 1
            continue
        yield from frames


def _deinterlaced(frames: Iterator[av.VideoFrame], stream: av.video.VideoStream, name: str,
                  time_base: Fraction) -> Iterator[av.VideoFrame]:
    """``frames`` through FFmpeg's ``name`` filter, one output frame per input frame."""
    graph = av.filter.Graph()
    src = graph.add_buffer(template=stream, time_base=time_base)
    node = graph.add(name, "mode=send_frame:deint=interlaced")  # frames flagged progressive pass through
    sink = graph.add("buffersink")
    src.link_to(node)
    node.link_to(sink)
    graph.configure()

    def drain() -> Iterator[av.VideoFrame]:
        while True:
            try:
                out = graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return
            out.pts = round(out.pts * out.time_base / time_base)
            out.time_base = time_base
            yield out

    for frame in frames:
        graph.vpush(frame)
        yield from drain()
    graph.vpush(None)
    yield from drain()


def _continuous(frames: Iterator[av.VideoFrame], info: VideoInfo, stats: DecodeStats) -> Iterator[av.VideoFrame]:
    """``frames`` with strictly increasing pts. Where they jump back by more than two frames (joined
    streams, such as concatenated MPEG-TS files) the rest is shifted to follow one frame after the
    previous frame, as FFmpeg does; a smaller stumble (a repeated timestamp, e.g. rounded to
    milliseconds) moves that frame one tick past the previous one without shifting the rest, and a
    missing pts follows on from the previous one."""
    prev: int | None = None
    offset = first = 0
    for n, frame in enumerate(frames):
        pts = frame.pts + offset if frame.pts is not None else (0 if prev is None else prev + info.frame_step)
        if prev is not None and prev - 2 * info.frame_step <= pts <= prev:
            pts = prev + 1
        elif prev is not None and pts < prev:
            if not stats.jumps:
                log.warning("%s: video timestamps jump back at %.3f s (joined streams?); the frames after it "
                            "are shifted to follow on, and so are audio and subtitles",
                            info.path, float(prev * info.time_base))
            stats.jumps += 1
            offset += prev + info.frame_step - pts
            pts = prev + info.frame_step
        if n == 0:
            first = pts
        frame.pts, prev = pts, pts
        if info.rate:
            stats.drift = max(stats.drift, abs(float((pts - first) * info.time_base - n / info.rate)))
        yield frame


def _frames_from(info: VideoInfo, deinterlace: str | None, seek_pts: int | None, stats: DecodeStats
                 ) -> Iterator[av.VideoFrame]:
    with _open_input(info.path) as container:
        stream = container.streams[info.stream]
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True)
        frames = _decoded(container, stream, stats)
        if deinterlace:
            frames = _deinterlaced(frames, stream, deinterlace, info.time_base)
        yield from _continuous(_same_size(frames, info), info, stats)


def _same_size(frames: Iterator[av.VideoFrame], info: VideoInfo) -> Iterator[av.VideoFrame]:
    for frame in frames:
        if (frame.width, frame.height) != (info.width, info.height):
            raise NotResumableError(f"{info.path}: frame size changes mid-stream "
                                f"({info.width}x{info.height} -> {frame.width}x{frame.height}); not supported")
        yield frame


def decode_frames(info: VideoInfo, deinterlace: str | None = None, after_pts: int | None = None,
                  stats: DecodeStats | None = None) -> Iterator[av.VideoFrame]:
    """Frames in presentation order with strictly increasing ``pts`` in ``info.time_base``.

    ``after_pts``: only frames after it, seeking to the keyframe before it first (falling back to
    decoding from the start unless the seek leads to a frame at exactly ``after_pts``: it failed,
    went too far or landed among timestamps that a full decode shifts). The frames before it still
    go through the deinterlacer, so its output matches that of a full decode. ``stats`` counts repairs.
    """
    stats = stats if stats is not None else DecodeStats()
    if after_pts is not None:
        damaged = stats.damaged
        with closing(_frames_from(info, deinterlace, after_pts, stats)) as frames:
            try:
                hit = next((f.pts for f in frames if f.pts >= after_pts), None) == after_pts
            except av.FFmpegError:
                hit = False
            if hit:
                yield from frames
                return
        stats.damaged = damaged  # the full decode counts them again
    with closing(_frames_from(info, deinterlace, None, stats)) as frames:
        yield from (f for f in frames if after_pts is None or f.pts > after_pts)


@dataclass(frozen=True)
class EncoderSpec:
    """A resolved video encoder and its settings."""

    codec: str
    pix_fmt: str
    options: dict[str, str]
    bit_rate: int | None

    @property
    def deep(self) -> bool:
        return max(c.bits for c in av.VideoFormat(self.pix_fmt).components) > 8

    def crop(self, width: int, height: int) -> tuple[int, int]:
        """The largest size <= (width, height) the pixel format's chroma subsampling allows."""
        fmt = av.VideoFormat(self.pix_fmt)
        sx, sy = (1, 1) if fmt.is_rgb else (64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64))
        return width - width % sx, height - height % sy


def _parse_bitrate(value: str | int) -> int:
    text = str(value).strip().lower()
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
    try:
        rate = float(text[:-1] if mult > 1 else text) * mult
    except ValueError:
        raise SubpixelError(f"bad bitrate {value!r} (examples: 8M, 2500k, 800000)") from None
    if rate <= 0:
        raise SubpixelError(f"bitrate must be positive, got {value!r}")
    return int(rate)


def _encoder(name: str) -> av.Codec | None:
    try:
        codec = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return None
    return codec if codec.type == "video" else None


def available_encoders() -> list[str]:
    """The usual SR output encoders this FFmpeg build has."""
    return [n for n in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1", "librav1e", "png")
            if _encoder(n) is not None]


def _find_encoder(name: str) -> av.Codec:
    for candidate in _ALIASES.get(name.lower(), (name,)):
        codec = _encoder(candidate)
        if codec is not None:
            return codec
    raise SubpixelError(f"video encoder {name!r} is not available in this FFmpeg build "
                        f"(available here: {', '.join(available_encoders())})")


def resolve_encoder(codec: str, pix_fmt: str | None = None, crf: int | None = None,
                    bitrate: str | int | None = None, preset: str | None = None, deep_input: bool = False
                    ) -> EncoderSpec:
    """Check ``codec`` and its settings against this FFmpeg build and fill in the defaults.

    Quality: ``crf`` (default per encoder, 18 for libx264) or ``bitrate``, not both. ``pix_fmt``
    defaults to yuv420p, or yuv420p10le for deep input when the encoder has it (PNG: rgb24/rgb48be).
    ``preset`` is the encoder's ``preset`` option (libvpx: ``cpu-used``).
    """
    enc = _find_encoder(codec)
    formats = [f.name for f in enc.video_formats or ()]
    if enc.name == "png":
        formats = [f for f in _PNG_FORMATS if f in formats]
    if pix_fmt is None:
        wanted = ("rgb48be", "rgb24") if enc.name == "png" else ("yuv420p10le", "yuv420p")
        pix_fmt = next((f for f in wanted[0 if deep_input else 1:] if not formats or f in formats),
                       formats[0] if formats else "yuv420p")
    elif not formats:
        _check_pix_fmt(pix_fmt)
    elif pix_fmt not in formats:
        raise SubpixelError(f"{enc.name} cannot encode pixel format {pix_fmt!r}; it takes {', '.join(formats)}")
    private = {o.name for o in av.CodecContext.create(enc.name, "w").supported_options.private}
    options: dict[str, str] = {}
    if crf is not None and bitrate is not None:
        raise SubpixelError("give either --crf or --bitrate, not both")
    bit_rate = _parse_bitrate(bitrate) if bitrate is not None else None
    if bit_rate is None:
        if crf is None:
            crf = DEFAULT_CRF.get(enc.name)
        elif "crf" not in private:
            raise SubpixelError(f"{enc.name} has no CRF mode; use --bitrate")
        else:
            _check_crf(enc.name, crf)
        if crf is not None:
            options["crf"] = str(crf)
            bit_rate = 0  # constant-quality mode (libvpx needs an explicit zero bitrate)
    if enc.name == "libx265":
        options["x265-params"] = "log-level=error"
    if preset is not None:
        key = next((k for k in ("preset", "cpu-used") if k in private), None)
        if key is None:
            raise SubpixelError(f"{enc.name} has no preset option")
        options[key] = str(preset)
    return EncoderSpec(enc.name, pix_fmt, options, bit_rate)


def _check_pix_fmt(name: str) -> None:
    """Refuse a name that is no FFmpeg pixel format (for encoders that list none of their own)."""
    try:
        av.VideoFormat(name)
    except ValueError:
        raise SubpixelError(f"unknown pixel format {name!r} (FFmpeg names such as yuv420p, yuv444p, rgb24)") from None


def _check_crf(encoder: str, crf: int) -> None:
    low, high = CRF_RANGE.get(encoder, (crf, crf))
    if not low <= crf <= high:
        raise SubpixelError(f"--crf {crf} is out of range for {encoder} ({low}-{high}; lower is better quality)")


def encoder_time_base(codec: str, info: VideoInfo) -> Fraction:
    """The stream's time base, unless ``codec`` (MPEG-4 part 2 and H.263 kin) caps its denominator at
    65535 and the stream's exceeds it (MPEG-TS: 1/90000): then one frame at the nominal rate."""
    tb = info.time_base
    if av.Codec(codec, "w").name not in _SHORT_TIME_BASE or tb.denominator <= 65535:
        return tb
    if info.rate and (1 / info.rate).denominator <= 65535:
        return 1 / info.rate
    return Fraction(1, 1000)


def check_encoder(spec: EncoderSpec, width: int, height: int, info: VideoInfo) -> None:
    """Open the encoder once with the real settings so bad options fail before any work is done."""
    ctx = av.CodecContext.create(spec.codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, spec.pix_fmt
    ctx.time_base = encoder_time_base(spec.codec, info)
    if info.rate:
        ctx.framerate = info.rate
    ctx.options = dict(spec.options)
    if spec.bit_rate is not None:
        ctx.bit_rate = spec.bit_rate
    try:
        ctx.open()
    except av.FFmpegError as err:
        raise SubpixelError(f"cannot open encoder {spec.codec} at {width}x{height} {spec.pix_fmt} "
                            f"with {spec.options or 'defaults'}: {_reason(err)}") from None


def segment_format(spec: EncoderSpec) -> str:
    """Container for intermediate segments: MP4 keeps any time base exactly; Matroska otherwise."""
    return "mp4" if spec.codec in _supported_codecs("mp4") else "matroska"


@functools.cache
def _supported_codecs(fmt: str) -> frozenset[str]:
    with av.open(io.BytesIO(), "w", format=fmt) as probe_out:
        return frozenset(probe_out.supported_codecs)


class SegmentEncoder:
    """Encodes RGB frames into one self-contained file (starting with a keyframe).

    Timestamps are stored relative to ``start_pts`` (MP4 would otherwise round a non-zero start
    through its edit list); :func:`mux_output` adds it back.
    """

    def __init__(self, path: Path, spec: EncoderSpec, width: int, height: int, info: VideoInfo,
                 color: ColorInfo, start_pts: int) -> None:
        self.spec, self.color, self.start_pts = spec, color, start_pts
        self.container = av.open(str(path), "w", format=segment_format(spec))
        stream = self.container.add_stream(spec.codec, rate=info.rate or None)
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        tb = encoder_time_base(spec.codec, info)
        stream.time_base = tb
        cc = stream.codec_context
        cc.thread_type = "AUTO"  # frame threads where the encoder has them (x264's scale better than slices)
        cc.time_base = tb
        cc.colorspace, cc.color_range = color.colorspace, color.color_range
        cc.color_primaries, cc.color_trc = color.primaries, color.trc
        if info.sar:
            _set_sample_aspect_ratio(stream, info.sar, path)
        if spec.bit_rate is not None:
            cc.bit_rate = spec.bit_rate
        cc.options = dict(spec.options)
        self.stream, self.time_base, self.source_time_base = stream, tb, info.time_base
        self._last: int | None = None

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode ``frame``, already in the output's size and pixel format (``ColorInfo.from_rgb``)."""
        t = round((pts - self.start_pts) * self.source_time_base / self.time_base)
        t = t if self._last is None or t > self._last else self._last + 1  # a coarser time base: keep order
        frame.pts, frame.time_base, self._last = t, self.time_base, t
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        self.container.mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        self.container.close()


class PngEncoder:
    """Writes frames as ``frame_NNNNNN.png`` (8-bit, or 16-bit for deep frames) into a folder.

    PNG has no rotation tag, so frames are turned by ``rotation`` (degrees anticlockwise, as
    :attr:`VideoInfo.rotation`; multiples of 90) into display orientation. A ``sar`` other than 1:1
    goes into a pHYs chunk (turned along); without one the PNGs have none.
    """

    def __init__(self, folder: Path, width: int, height: int, deep: bool, rotation: float = 0.0,
                 sar: Fraction | None = None) -> None:
        self.folder, self.size = folder, (width, height)
        self.turns = round(rotation / 90) % 4
        if sar and self.turns % 2:
            sar = 1 / sar
        self.phys = _phys_chunk(sar) if sar and sar != 1 else b""
        self.ctx = av.CodecContext.create("png", "w")  # intra-only: one packet per frame, no flush
        self.ctx.width, self.ctx.height = (height, width) if self.turns % 2 else (width, height)
        self.ctx.time_base = Fraction(1, 1)
        self.ctx.pix_fmt = "rgb48be" if deep else "rgb24"
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, rgb: np.ndarray, index: int) -> None:
        w, h = self.size
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb[:h, :w], self.turns)),
                                         format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
        data = b"".join(bytes(p) for p in self.ctx.encode(src.reformat(format=self.ctx.pix_fmt)))
        (self.folder / self.file_name(index)).write_bytes(_with_phys(data, self.phys))

    @staticmethod
    def file_name(index: int) -> str:
        """The name of frame ``index``'s file."""
        return f"frame_{index:06d}.png"


def _phys_chunk(sar: Fraction) -> bytes:
    """A pHYs chunk for pixels ``sar`` wide per unit of height: pixels per unit x = den, y = num, unit unknown."""
    body = b"pHYs" + struct.pack(">IIB", sar.denominator, sar.numerator, 0)
    return struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))


def _with_phys(png: bytes, phys: bytes) -> bytes:
    """``png`` with its pHYs chunk (FFmpeg always writes one, 0:1 when the aspect is unknown) replaced by ``phys``."""
    out, pos = [png[:8]], 8
    while pos < len(png):
        size = struct.unpack(">I", png[pos:pos + 4])[0] + 12
        kind = png[pos + 4:pos + 8]
        if kind != b"pHYs":
            out.append(png[pos:pos + size])
        if kind == b"IHDR":
            out.append(phys)
        pos += size
    return b"".join(out)


def check_container(path: Path, spec: EncoderSpec, info: VideoInfo) -> None:
    """Fail early when ``path``'s container cannot hold the encoded video or a copied stream."""
    try:
        out = av.open(str(path), "w")
    except ValueError:
        raise SubpixelError(f"cannot tell the container format of {path.name} from its extension") from None
    with closing(out), _open_input(info.path) as src:  # nothing is written: the header never is
        try:
            out.add_stream(spec.codec)
        except ValueError:
            raise SubpixelError(f"the {out.format.name} container cannot hold {spec.codec} video; "
                                "pick another --codec or output extension") from None
        if out.format.name == "avi" and av.Codec(spec.codec, "w").canonical_name == "h264":
            # AVI wants Annex B H.264 and stores no presentation times, so B-frames would lose their order
            raise SubpixelError(f"{path}: AVI cannot hold the H.264 video this writes; use a .mkv or .mp4 output, "
                                "or --codec mpeg4 for AVI")
        for index in info.copy_streams:
            s = src.streams[index]
            try:
                out.add_stream_from_template(s, opaque=True)
            except ValueError:
                most = "" if out.format.name == "matroska" else " (.mkv takes most)"
                raise SubpixelError(f"the {out.format.name} container cannot hold input stream #{index} "
                                    f"({s.type}, {s.codec_context.name}) without re-encoding; "
                                    f"pick another output extension{most}") from None


def _rescale(value: int | None, src: Fraction, dst: Fraction) -> int | None:
    return None if value is None else round(value * src / dst)


def _segment_packets(segments: list[tuple[Path, int]], info: VideoInfo, out_stream: av.stream.Stream
                     ) -> Iterator[tuple[float, int, av.Packet, av.stream.Stream]]:
    """Video packets of all segments with their start offsets added back, DTS kept increasing."""
    tb, last_dts, order = info.time_base, None, 0
    for path, start in segments:
        with av.open(str(path)) as seg:
            stream = seg.streams.video[0]
            for p in seg.demux(stream):
                if p.size == 0:
                    continue
                pts = _rescale(p.pts, stream.time_base, tb)
                dts = _rescale(p.dts, stream.time_base, tb)
                p.pts = None if pts is None else pts + start
                p.dts = None if dts is None else dts + start
                if p.dts is not None and last_dts is not None and p.dts <= last_dts:
                    p.dts = last_dts + 1
                    if p.pts is not None and p.pts < p.dts:
                        raise SubpixelError("segments cannot be joined: their decode timestamps overlap")
                last_dts = p.dts if p.dts is not None else last_dts
                p.duration = _rescale(p.duration, stream.time_base, tb) or 0
                p.time_base = tb
                key = p.dts if p.dts is not None else p.pts
                yield float((key or 0) * tb), order, p, out_stream
                order += 1


def _numbered(packets: Iterator[tuple[float, int, av.Packet, av.stream.Stream]], start: int, rate: Fraction
              ) -> Iterator[tuple[float, int, av.Packet, av.stream.Stream]]:
    """For AVI, which stores a frame rate and no timestamps: packet ``n`` becomes frame ``start + n`` at ``rate``
    (a larger time base makes the muxer state 600 fps and pad with empty frames)."""
    for n, (_, order, p, stream) in enumerate(packets, start):
        p.pts = p.dts = n
        p.duration, p.time_base = 1, 1 / rate
        yield float(n / rate), order, p, stream


def _copied_packets(src: av.container.InputContainer, mapping: dict[int, av.stream.Stream]
                    ) -> Iterator[tuple[float, int, av.Packet, av.stream.Stream]]:
    """The packets of the copied streams. Where a stream's timestamps jump back (joined streams, such as
    concatenated MPEG-TS files; the video is shifted likewise by ``_continuous``) the rest of that stream
    is shifted to follow on from the end of its packet before the jump."""
    if not mapping:  # demux([]) would read every stream
        return
    order = 0
    offset: dict[int, int] = {}
    last: dict[int, tuple[int, int]] = {}  # stream -> (key timestamp, end) of its previous packet, shifted
    for p in src.demux([src.streams[i] for i in mapping]):
        if p.size == 0:
            continue
        index = p.stream.index
        shift = offset.get(index, 0)
        key = p.dts if p.dts is not None else p.pts
        if key is not None and index in last and key + shift < last[index][0]:
            prev, end = last[index]
            if key + shift < prev - max(p.duration or 0, end - prev, 1):  # a jump back: shift the rest
                shift = offset[index] = shift + end - key
            else:  # a stumble: this packet only, to keep the order muxers insist on
                shift = prev - key
        if shift:
            p.pts = None if p.pts is None else p.pts + shift
            p.dts = None if p.dts is None else p.dts + shift
        if key is not None:
            last[index] = (key + shift, key + shift + max(p.duration or 0, 1))
        yield float(((key or 0) + shift) * p.time_base), order, p, mapping[index]
        order += 1


def mux_output(path: Path, segments: list[tuple[Path, int]], info: VideoInfo, shown: Path | None = None,
               drift: float = 0.0) -> None:
    """Write ``path``: the segments' video joined without re-encoding, plus the input's audio and
    subtitle packets copied untouched, interleaved by time. ``segments``: (file, start pts);
    ``shown``: the path errors name (the final output when ``path`` is a temporary file);
    ``drift``: :attr:`DecodeStats.drift`, for the warning that AVI (constant rate only) moves frames."""
    try:
        _mux(path, segments, info, shown or path, drift)
    except av.FFmpegError as err:  # also raised by the final close, which writes the trailer
        if isinstance(err, OSError) and err.errno in _WRITE_ERRORS:  # the disk, not the streams
            raise SubpixelError(f"cannot write {shown or path}: {_reason(err)}") from None
        raise SubpixelError(f"cannot mux {shown or path}: {_reason(err)}") from None


def _mux(path: Path, segments: list[tuple[Path, int]], info: VideoInfo, shown: Path, drift: float) -> None:
    with av.open(str(segments[0][0])) as first:
        template = first.streams.video[0]
        with av.open(str(path), "w") as out, _open_input(info.path) as src:
            video = out.add_stream_from_template(template, opaque=True)
            avi = out.format.name == "avi" and bool(info.rate)
            video.time_base = 1 / info.rate if avi else info.time_base
            # the template's rate is 1/time_base (Matroska and FLV would state it): use the input's average
            video.codec_context.framerate = info.rate
            if info.sar:  # H.264/H.265 carry it in their bitstream, VP9 and AV1 only in the container
                _set_sample_aspect_ratio(video, info.sar, shown)
            if info.display_matrix:
                video.set_display_matrix(list(info.display_matrix))
            _copy_tags(src.streams[info.stream], video)
            out.metadata.update({k: v for k, v in src.metadata.items() if k.lower() not in _TECHNICAL_TAGS})
            chapters = src.chapters()
            if chapters:
                out.set_chapters(chapters)
            mapping = {}
            for index in info.copy_streams:
                mapping[index] = out.add_stream_from_template(src.streams[index], opaque=True)
                _copy_tags(src.streams[index], mapping[index])
            if out.format.name == "matroska":
                for index in info.attachments:
                    a = src.streams[index]
                    out.add_attachment(a.name or f"attachment{index}", a.mimetype or "application/octet-stream",
                                       a.data)
            packets = _segment_packets(segments, info, video)
            if avi:
                begins = [s.start_time * s.time_base for s in map(src.streams.__getitem__, mapping)
                          if s.start_time is not None]
                video_start = segments[0][1] * info.time_base  # frames count from the earliest stream's start
                packets = _numbered(packets, round((video_start - min([video_start, *begins])) * info.rate), info.rate)
                if drift > 0.5 / info.rate:
                    log.warning("%s: AVI cannot keep variable frame timing; frames are written at a constant "
                                "%.3f fps, up to %.3f s off their times (.mkv or .mp4 keep them)",
                                shown, float(info.rate), drift)
            merged = heapq.merge(packets, _copied_packets(src, mapping),
                                 key=lambda item: (item[0], item[3].index, item[1]))
            for _, _, packet, stream in merged:
                packet.stream = stream
                out.mux(packet)


# libavformat majors whose AVStream layout (index at 8, time_base at 32, sample_aspect_ratio at 72) is known
_AVSTREAM_LAYOUT_MAJORS = frozenset({60, 61, 62})


def _set_sample_aspect_ratio(stream: av.video.stream.VideoStream, sar: Fraction, shown: Path) -> None:
    """Give an output stream the pixel aspect ratio ``sar``: in its codec parameters (what MP4 and the codecs
    that carry it in their bitstream read) and in the stream itself (what Matroska and WebM read, and PyAV has
    no setter for: it is written through the ``AVStream`` pointer, only for a libavformat whose layout is
    known, once the fields around it are confirmed, and undone unless PyAV then reads it back)."""
    stream.codec_context.sample_aspect_ratio = sar
    if sar == 1 or sar.numerator > 2**31 - 1 or sar.denominator > 2**31 - 1:
        return
    if stream.container.format.name not in ("matroska", "webm"):
        return
    if av.library_versions.get("libavformat", (0,))[0] in _AVSTREAM_LAYOUT_MAJORS:
        try:
            # a PyAV Stream: object header (16 bytes), vtable, AVStream *ptr, Container container
            ptr = ctypes.c_void_p.from_address(id(stream) + 24).value
            holder = ctypes.c_void_p.from_address(id(stream) + 32).value
            if ptr and holder == id(stream.container):
                index = ctypes.c_int.from_address(ptr + 8).value
                tb = (ctypes.c_int * 2).from_address(ptr + 32)
                field = (ctypes.c_int * 2).from_address(ptr + 72)
                if index == stream.index and (stream.time_base is None
                                              or Fraction(tb[0], tb[1] or 1) == stream.time_base):
                    saved = field[0], field[1]
                    field[0], field[1] = sar.numerator, sar.denominator
                    if stream.sample_aspect_ratio == sar:
                        return
                    field[0], field[1] = saved  # not the field PyAV reads: leave the stream as it was
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    if stream.codec_context.name not in ("h264", "hevc", "libx264", "libx265"):  # those carry it themselves
        log.warning("%s: cannot record the pixel aspect ratio %s in the %s container (this PyAV build); "
                    "the video may display with square pixels", shown, sar, stream.container.format.name)


def _copy_tags(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    dst.metadata.update({k: v for k, v in src.metadata.items() if k in ("language", "title")})
    dst.disposition = src.disposition
