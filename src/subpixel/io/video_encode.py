"""Video encoding on PyAV: choosing and checking an encoder, and encoding RGB frames into segments or PNGs."""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from subpixel.errors import SubpixelError
from subpixel.io.video_decode import ColorInfo, VideoInfo, error_reason

__all__ = ["EncoderSpec", "available_encoders", "resolve_encoder", "check_encoder",
           "segment_format", "SegmentEncoder", "PngEncoder", "set_sample_aspect_ratio", "DEFAULT_CRF", "CRF_RANGE",
           "FRAME_TIME_BASE"]

_ALIASES = {"h264": ("libx264",), "avc": ("libx264",), "x264": ("libx264",), "h265": ("libx265",),
            "hevc": ("libx265",), "x265": ("libx265",), "vp9": ("libvpx-vp9",),
            "av1": ("libsvtav1", "libaom-av1", "librav1e")}
FRAME_TIME_BASE = {"mpeg1video", "mpeg2video"}  # time base 1/frame rate, a standard one
_SHORT_TIME_BASE = {"mpeg4", "h263", "h263p", "msmpeg4", "msmpeg4v2", "flv"}  # time base denominator <= 65535
_PNG_FORMATS = ("rgb24", "rgb48be")  # what PngEncoder writes: 8 or 16 bits per channel
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 30, "libsvtav1": 30, "libaom-av1": 30}
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63), "libaom-av1": (0, 63)}

log = logging.getLogger(__name__)


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
        jpeg = "yuvj420p" in formats and formats.index("yuvj420p") < formats.index("yuv420p") \
            if "yuv420p" in formats else "yuvj420p" in formats  # MJPEG: full range first (limited needs -strict)
        wanted = ("rgb48be", "rgb24") if enc.name == "png" else ("yuv420p10le", "yuvj420p" if jpeg else "yuv420p")
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
    65535 and the stream's exceeds it (MPEG-TS: 1/90000): then one frame at the nominal rate, which is what
    MPEG-1/2 video always takes."""
    tb, name = info.time_base, av.Codec(codec, "w").name
    if name in FRAME_TIME_BASE and info.rate:
        return 1 / info.rate
    if name not in _SHORT_TIME_BASE or tb.denominator <= 65535:
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
                            f"with {spec.options or 'defaults'}: {error_reason(err)}") from None


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
    through its edit list); :func:`~subpixel.io.video_mux.mux_output` adds it back.
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
            set_sample_aspect_ratio(stream, info.sar, path)
        if spec.bit_rate is not None:
            cc.bit_rate = spec.bit_rate
        cc.options = dict(spec.options)
        self.stream, self.time_base, self.source_time_base = stream, tb, info.time_base
        self._last: int | None = None
        self.retimed = 0.0  # seconds, at most, that the time base moved a frame off its time

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode ``frame``, already in the output's size and pixel format (``ColorInfo.from_rgb``)."""
        exact = (pts - self.start_pts) * self.source_time_base
        t = round(exact / self.time_base)
        t = t if self._last is None or t > self._last else self._last + 1  # a coarser time base: keep order
        self.retimed = max(self.retimed, abs(float(t * self.time_base - exact)))
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


# libavformat majors whose AVStream layout (index at 8, time_base at 32, sample_aspect_ratio at 72) is known
_AVSTREAM_LAYOUT_MAJORS = frozenset({60, 61, 62})


def set_sample_aspect_ratio(stream: av.video.stream.VideoStream, sar: Fraction, shown: Path) -> None:
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
