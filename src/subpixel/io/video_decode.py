"""Video decoding on PyAV: probing an input and decoding its frames to RGB in the stream's own colour matrix.

Frames travel as ``(H, W, 3)`` RGB arrays: uint8, or uint16 for deep (> 8-bit) video. YUV <-> RGB
uses the stream's own matrix (BT.601 / BT.709 / BT.2020) and range (limited / full); unspecified
tags are guessed like players do (BT.709 from 720 lines up, else BT.601; limited range unless the
pixel format is ``yuvj*``) and every output is tagged explicitly. Encoding is in
:mod:`subpixel.io.video_encode`, muxing in :mod:`subpixel.io.video_mux`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np
from av.video.reformatter import Interpolation

from subpixel.errors import NotResumableError, SubpixelError

__all__ = ["ColorInfo", "VideoInfo", "DecodeStats", "FrameTiming", "probe", "decode_frames", "open_input",
           "error_reason", "DEINTERLACERS"]

SPC_RGB, SPC_BT709, SPC_SMPTE170M = 0, 1, 6
RANGE_LIMITED, RANGE_FULL = 1, 2
_UNSPECIFIED = (0, 2)  # reserved / unspecified values of primaries and trc
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}  # AVColorSpace -> swscale matrix (SWS_CS_*)
_IMPLIED_TAGS = {1: (1, 1), 5: (5, 6), 6: (6, 6)}  # matrix -> usual (primaries, trc) when untagged
_KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 7: (0.212, 0.087), 9: (0.2627, 0.0593)}
_YUV444 = {8: "yuv444p", 9: "yuv444p9le", 10: "yuv444p10le", 12: "yuv444p12le", 14: "yuv444p14le"}
_FIELD_ORDER = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
_SWS_FLAGS = (Interpolation.BICUBIC | Interpolation.ACCURATE_RND
              | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP)
DEINTERLACERS = ("yadif", "bwdif")
GAP_FRAMES = 3  # a step between frames over this many nominal frame durations is a gap (lost frames)

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
        full = (frame.color_range == RANGE_FULL or frame.format.name.startswith("yuvj")
                or (_grey_bits(frame.format) and frame.color_range != RANGE_LIMITED))  # untagged grey: as swscale
        implied_prim, implied_trc = _IMPLIED_TAGS.get(space, (2, 2))
        prim = implied_prim if frame.color_primaries in _UNSPECIFIED else frame.color_primaries
        trc = implied_trc if frame.color_trc in _UNSPECIFIED else frame.color_trc
        return cls(space, RANGE_FULL if full else RANGE_LIMITED, prim, trc)

    def for_output(self, pix_fmt: str) -> ColorInfo:
        """Tags for an output in ``pix_fmt``: RGB outputs drop the matrix, RGB sources get BT.709, grey outputs
        are full range (swscale writes grey full range whatever it is asked)."""
        fmt = av.VideoFormat(pix_fmt)
        if fmt.is_rgb:
            return ColorInfo(SPC_RGB, RANGE_FULL, self.primaries, self.trc)
        out = self
        if self.colorspace == SPC_RGB:
            prim = SPC_BT709 if self.primaries in _UNSPECIFIED else self.primaries
            trc = SPC_BT709 if self.trc in _UNSPECIFIED else self.trc
            out = ColorInfo(SPC_BT709, RANGE_LIMITED, prim, trc)
        return replace(out, color_range=RANGE_FULL) if _grey_bits(fmt) else out

    def to_rgb(self, frame: av.VideoFrame, deep: bool) -> np.ndarray:
        """Decoded frame -> full-range RGB ``(H, W, 3)``: uint16 (0-65535) if ``deep`` else uint8."""
        grey = _grey_bits(frame.format)
        if grey:  # swscale reads grey as full range whatever its tag: levels by hand
            black, white = (16 << (grey - 8), 235 << (grey - 8)) if self.color_range == RANGE_LIMITED else (
                0, (1 << grey) - 1)
            peak = 65535 if deep else 255
            y = (frame.to_ndarray().astype(np.float32) - black) * (peak / (white - black)) + 0.5  # rounding half up
            return np.repeat(np.clip(y, 0, peak)[..., None], 3, axis=2).astype(np.uint16 if deep else np.uint8)
        if not deep:
            if self.colorspace == SPC_RGB:
                return frame.to_ndarray(format="rgb24", interpolation=_SWS_FLAGS)
            return frame.to_ndarray(format="rgb24", src_colorspace=_SWS_MATRIX[self.colorspace],
                                    src_color_range=self.color_range, dst_color_range=RANGE_FULL,
                                    interpolation=_SWS_FLAGS)
        bits = max(c.bits for c in frame.format.components)
        if self.colorspace == SPC_RGB:  # swscale scales deep RGB exactly, 8-bit RGB by 256: widen that by 257
            return (frame.to_ndarray(format="rgb48le", interpolation=_SWS_FLAGS) if bits > 8
                    else frame.to_ndarray(format="rgb24", interpolation=_SWS_FLAGS).astype(np.uint16) * 257)
        # swscale's YUV -> rgb48 gives 255 * 256 for white (limited range), or the source's white shifted to 16
        # bits (full range), not 65535: only upsample the chroma with it, at the source's own depth (values
        # unchanged), and apply the matrix here
        planar = "yuvj444p" if frame.format.name.startswith("yuvj") else _YUV444.get(bits, "yuv444p16le")
        bits = 16 if planar == "yuv444p16le" else bits
        if frame.format.name != planar:
            frame = frame.reformat(format=planar, src_color_range=self.color_range,
                                   dst_color_range=self.color_range, interpolation=_SWS_FLAGS)
        yuv = np.empty((frame.height, frame.width, 3), np.float32)
        size = 2 if bits > 8 else 1
        for k, p in enumerate(frame.planes[:3]):
            plane = np.frombuffer(p, f"<u{size}").reshape(-1, p.line_size // size)
            yuv[..., k] = plane[:frame.height, :frame.width]
        mid, unit = 1 << (bits - 1), 1 << (bits - 8)
        if self.color_range == RANGE_FULL:
            black, luma, chroma = 0, (1 << bits) - 1, (1 << bits) - 1
        else:
            black, luma, chroma = 16 * unit, 219 * unit, 224 * unit
        kr, kb = _KR_KB[_SWS_MATRIX[self.colorspace]]
        kg = 1 - kr - kb
        m = np.array([[1, 0, 2 - 2 * kr], [1, -kb * (2 - 2 * kb) / kg, -kr * (2 - 2 * kr) / kg], [1, 2 - 2 * kb, 0]])
        m = m / [luma, chroma, chroma] * 65535  # raw Y/U/V -> 0-65535 RGB, after taking black and mid off
        rgb = yuv @ m.T.astype(np.float32)
        rgb += (0.5 - m @ [black, mid, mid]).astype(np.float32)  # rounding half up
        return np.clip(rgb, 0, 65535, out=rgb).astype(np.uint16)

    def from_rgb(self, rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
        """Full-range RGB (uint8 or uint16) -> a frame in ``pix_fmt`` with these tags."""
        if self.colorspace == SPC_RGB:
            src = _rgb_frame(rgb)
            frame = src.reformat(format=pix_fmt, interpolation=_SWS_FLAGS)
        else:
            if rgb.dtype == np.uint16:  # swscale's rgb48 -> YUV takes 255 * 256 for white: v * 256 / 257, rounded
                rgb = rgb - ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint16)
            src = _rgb_frame(rgb)
            matrix = _SWS_MATRIX[self.colorspace]
            frame = src.reformat(format=pix_fmt, src_colorspace=matrix, dst_colorspace=matrix,
                                 src_color_range=RANGE_FULL, dst_color_range=self.color_range,
                                 interpolation=_SWS_FLAGS)
        frame.colorspace, frame.color_range = self.colorspace, self.color_range
        frame.color_primaries, frame.color_trc = self.primaries, self.trc
        return frame


def _grey_bits(fmt: av.VideoFormat) -> int:
    """The bit depth of an integer grey pixel format of 8 bits or more (gray, gray10le, ...); 0 for any other."""
    bits = fmt.components[0].bits
    return bits if fmt.name.startswith("gray") and len(fmt.components) == 1 and 8 <= bits <= 16 else 0


def _rgb_frame(rgb: np.ndarray) -> av.VideoFrame:
    """An RGB frame of uint8 (rgb24) or uint16 (rgb48le) pixels ``(H, W, 3)``."""
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le" if rgb.dtype == np.uint16
                                      else "rgb24")


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
    listed_frames: int = 0  # the container's own frame count, not an estimate (0: it lists none, or a wrong one)
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
    """What decoding repaired: packets the decoder rejected (skipped) and jumps back in time (shifted)."""

    damaged: int = 0
    jumps: int = 0

    def restore(self, saved: DecodeStats) -> None:
        """Back to what ``saved`` counted, before frames a decode that starts over counts again."""
        for f in fields(self):
            setattr(self, f.name, getattr(saved, f.name))


@dataclass
class FrameTiming:
    """How the frame times of a run of frames step: ``drift``, how far (seconds) they stray from a constant frame
    rate (variable frame rate). Steps between consecutive frames of over :data:`GAP_FRAMES` nominal frame durations
    are gaps (frames the demuxer dropped, e.g. damaged data); they count only for constant-rate input (see
    :attr:`gaps`)."""

    drift: float = 0.0
    retimed: float = 0.0  # seconds the encoder's time base moved a frame, at most (MPEG-1/2: one frame's)
    steps: int = 0  # steps from one frame to the next
    regular: int = 0  # of them, about one nominal frame duration
    long_steps: int = 0  # of them, over GAP_FRAMES nominal frame durations
    long_seconds: float = 0.0  # the time those miss, beyond one frame duration each

    @property
    def constant_rate(self) -> bool:
        """Whether (nearly) all the steps that are not gaps are one nominal frame duration."""
        return self.regular >= 0.9 * (self.steps - self.long_steps)

    @property
    def gaps(self) -> tuple[int, float]:
        """Gaps in the frame times and the seconds they miss in all; none for variable-frame-rate input,
        where long steps (a still held) are part of the timing."""
        return (self.long_steps, self.long_seconds) if self.long_steps and self.constant_rate else (0, 0.0)

    def add_frame(self, index: int, pts: int, prev_pts: int | None, first_pts: int, info: VideoInfo) -> None:
        """Frame ``index`` at ``pts``, after a frame at ``prev_pts`` (None: none); frame 0 is at ``first_pts``."""
        if info.rate:
            self.drift = max(self.drift, abs(float((pts - first_pts) * info.time_base - index / info.rate)))
        if prev_pts is None:
            return
        step, nominal = pts - prev_pts, info.frame_step
        self.steps += 1
        if abs(step - nominal) <= max(1, nominal // 10):
            self.regular += 1
        elif info.rate and step > GAP_FRAMES * nominal:
            self.long_steps += 1
            self.long_seconds += float((step - nominal) * info.time_base)

    def merge(self, other: FrameTiming) -> None:
        """Add the frames ``other`` timed."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, max(mine, theirs) if f.name in ("drift", "retimed") else mine + theirs)


def open_input(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FileNotFoundError:
        raise SubpixelError(f"no such file: {path}") from None
    except (av.FFmpegError, OSError) as err:
        raise SubpixelError(f"cannot read {path}: not a readable media file ({error_reason(err)})") from None


def error_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def probe(path: str | Path) -> VideoInfo:
    """Read the stream parameters of ``path``'s main video stream, decoding its first frame."""
    with open_input(path) as container:
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
        # an MP4 edit list (a trim without re-encoding) drops frames the count still lists: more than fit its time
        listed = 0 if own and rate and stream.frames > own * rate + 1 else stream.frames
        frames = listed or (round(duration * rate) if duration and rate else 0)
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
            listed_frames=listed, stream_duration=own, dropped_kinds=tuple(map(_kind, dropped)),
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
    offset = 0
    for frame in frames:
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
        frame.pts, prev = pts, pts
        yield frame


def _frames_from(info: VideoInfo, deinterlace: str | None, seek_pts: int | None, stats: DecodeStats
                 ) -> Iterator[av.VideoFrame]:
    with open_input(info.path) as container:
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
        saved = replace(stats)
        with closing(_frames_from(info, deinterlace, after_pts, stats)) as frames:
            try:
                hit = next((f.pts for f in frames if f.pts >= after_pts), None) == after_pts
            except av.FFmpegError:
                hit = False
            if hit:
                yield from frames
                return
        stats.restore(saved)  # the full decode counts them again
    with closing(_frames_from(info, deinterlace, None, stats)) as frames:
        yield from (f for f in frames if after_pts is None or f.pts > after_pts)
