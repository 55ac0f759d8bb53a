"""Video muxing on PyAV: joining encoded segments with the input's copied audio and subtitle packets."""

from __future__ import annotations

import contextlib
import errno
import heapq
import io
import logging
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.container import OutputContainer

from subpixel.errors import SubpixelError
from subpixel.io.video_decode import VideoInfo, error_reason, open_input
from subpixel.io.video_encode import FRAME_TIME_BASE, EncoderSpec, encoder_time_base, set_sample_aspect_ratio

__all__ = ["check_container", "mux_output"]

_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT,
                           errno.EFBIG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
_TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "duration"})
# muxers that store a display matrix (rotation): the MOV family and Matroska
_PROGRAM_STREAMS = frozenset({"mpeg", "vob", "svcd", "vcd", "dvd"})
_DISPLAY_MATRIX_FORMATS = frozenset({"mov", "mp4", "3gp", "3g2", "ismv", "ipod", "psp", "f4v", "matroska", "webm"})

log = logging.getLogger(__name__)


def check_container(path: Path, spec: EncoderSpec, width: int, height: int, info: VideoInfo) -> None:
    """Fail early when ``path``'s container cannot hold the encoded video or a copied stream (a muxer may refuse a
    codec only as it writes the header, so one is written into memory), and warn of a rotation it cannot store."""
    try:
        with av.open(str(path), "w") as out:  # nothing is written: the header never is
            fmt = out.format.name
    except ValueError:
        raise SubpixelError(f"cannot tell the container format of {path.name} from its extension") from None
    codec = av.Codec(spec.codec, "w").canonical_name
    if fmt == "avi" and codec == "h264":
        # AVI wants Annex B H.264 and stores no presentation times, so B-frames would lose their order
        raise SubpixelError(f"{path}: AVI cannot hold the H.264 video this writes; use a .mkv or .mp4 output, "
                            "or --codec mpeg4 for AVI")
    if _unreadable(fmt, codec):
        raise SubpixelError(f"{path}: the {fmt} container takes {codec} video but not so that it can be read "
                            "back; use a .mkv or .mp4 output")
    with open_input(info.path) as src:
        copied = [src.streams[i] for i in info.copy_streams]
        for s in copied:
            if fmt == "avi" and s.codec_context.name == "aac" and not s.codec_context.extradata:
                # ADTS AAC (as MPEG-TS carries it): AVI takes it only under a tag FFmpeg does not write, and Matroska
                # and MP4 convert it to plain AAC as they mux; failing up front spares encoding all the frames first
                raise SubpixelError(f"the avi container cannot hold input stream #{s.index} (audio, ADTS AAC as "
                                    "MPEG-TS carries it) without re-encoding; use a .mkv or .mp4 output")

        def add(out: OutputContainer, streams: list[av.stream.Stream]) -> None:
            video = out.add_stream(spec.codec, rate=info.rate or None, options=dict(spec.options))
            video.width, video.height, video.pix_fmt = width, height, spec.pix_fmt
            video.time_base = encoder_time_base(spec.codec, info)
            for s in streams:
                out.add_stream_from_template(s, opaque=True)

        together = _header_refusal(fmt, lambda out: add(out, copied))
        if together is not None:  # which stream is refused: the video, a copied one, or only all of them together?
            why = _header_refusal(fmt, lambda out: add(out, [])) if copied else together
            if why is not None:
                raise SubpixelError(f"the {fmt} container cannot hold {spec.codec} video{why}; "
                                    "pick another --codec or output extension")
            most = "" if fmt == "matroska" else " (.mkv takes most)"
            for s in copied:
                if (why := _header_refusal(fmt, lambda out, s=s: add(out, [s]))) is not None:
                    raise SubpixelError(f"the {fmt} container cannot hold input stream #{s.index} "
                                        f"({s.type}, {s.codec_context.name}) without re-encoding{why}; "
                                        f"pick another output extension{most}")
            raise SubpixelError(f"the {fmt} container cannot hold the video with the input's audio and subtitles"
                                f"{together}; pick another output extension{most}")
    if info.display_matrix and fmt not in _DISPLAY_MATRIX_FORMATS:
        log.warning("%s: the %s container cannot store the input's rotation (%g degrees): the output displays "
                    "unrotated (.mkv or .mp4 keep it)", path, fmt, info.rotation)


def _unreadable(fmt: str, codec: str) -> bool:
    """Pairs a muxer takes and writes unplayable: MPEG-4 Part 2 (its headers out of band, as the segments keep them)
    and AV1 in MPEG-TS; anything but MPEG-1/2 video in an MPEG program stream (.mpg, .vob)."""
    if fmt in _PROGRAM_STREAMS:
        return codec not in ("mpeg1video", "mpeg2video")
    return fmt == "mpegts" and codec in ("mpeg4", "av1")


def _header_refusal(fmt: str, add: Callable[[OutputContainer], object]) -> str | None:
    """None if the ``fmt`` muxer writes a header for the streams ``add`` puts in; else FFmpeg's reason, as ": reason"
    (empty where PyAV knows the container has no such codec)."""
    out = av.open(io.BytesIO(), "w", format=fmt)
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # for the reason, which FFmpeg only logs
    try:
        with av.logging.Capture():  # not printed
            add(out)
            out.start_encoding()
    except av.FFmpegError as err:
        return f": {(err.log[2] if err.log else error_reason(err)).strip().rstrip('.')}"
    except ValueError:
        return ""
    finally:
        av.logging.set_level(level)
        with contextlib.suppress(av.FFmpegError):  # the trailer of a file without packets
            out.close()
    return None


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
    concatenated MPEG-TS files; the video is shifted likewise by ``video_decode._continuous``) the rest of that stream
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
               drift: float = 0.0, retimed: float = 0.0) -> None:
    """Write ``path``: the segments' video joined without re-encoding, plus the input's audio and
    subtitle packets copied untouched, interleaved by time. ``segments``: (file, start pts);
    ``shown``: the path errors name (the final output when ``path`` is a temporary file);
    ``drift``, ``retimed``: :class:`FrameTiming`'s, for the warning that AVI (``drift``) or MPEG-1/2 video
    (``retimed``), which keep one frame rate, move frames."""
    try:
        _mux(path, segments, info, shown or path, drift, retimed)
    except av.FFmpegError as err:  # also raised by the final close, which writes the trailer
        if isinstance(err, OSError) and err.errno in _WRITE_ERRORS:  # the disk, not the streams
            raise SubpixelError(f"cannot write {shown or path}: {error_reason(err)}") from None
        raise SubpixelError(f"cannot mux {shown or path}: {error_reason(err)}") from None


def _mux(path: Path, segments: list[tuple[Path, int]], info: VideoInfo, shown: Path, drift: float,
         retimed: float) -> None:
    with av.open(str(segments[0][0])) as first:
        template = first.streams.video[0]
        with av.open(str(path), "w") as out, open_input(info.path) as src:
            video = out.add_stream_from_template(template, opaque=True)
            avi = out.format.name == "avi" and bool(info.rate)
            video.time_base = 1 / info.rate if avi else info.time_base
            # the template's rate is 1/time_base (Matroska and FLV would state it): use the input's average
            video.codec_context.framerate = info.rate
            if info.sar:  # H.264/H.265 carry it in their bitstream, VP9 and AV1 only in the container
                set_sample_aspect_ratio(video, info.sar, shown)
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
            # AVI numbers the frames one per frame duration; MPEG-1/2 puts each on the nearest free frame slot
            grid, off = ("AVI", drift) if avi else ("MPEG-1/2 video", retimed) \
                if template.codec_context.name in FRAME_TIME_BASE else (None, 0.0)
            if grid and info.rate and off > 0.5 / info.rate + 1e-6:
                log.warning("%s: %s cannot keep variable frame timing; frames are written at a constant %.3f fps, up "
                            "to %.3f s off their times (.mkv or .mp4 with H.264 keep them)", shown, grid,
                            float(info.rate), off)
            merged = heapq.merge(packets, _copied_packets(src, mapping),
                                 key=lambda item: (item[0], item[3].index, item[1]))
            for _, _, packet, stream in merged:
                packet.stream = stream
                out.mux(packet)
def _copy_tags(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    dst.metadata.update({k: v for k, v in src.metadata.items() if k in ("language", "title")})
    dst.disposition = src.disposition
