"""The streaming video pipeline on tiny generated clips (64x48, a second or two, with audio)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import subpixel
import subpixel.cli
from subpixel.cli import cli
from subpixel.errors import NotResumableError, SubpixelError
from subpixel.io.video_decode import decode_frames, probe
from subpixel.io.video_mux import mux_output
from subpixel.models.espcn import ESPCN
from subpixel.video import UpscalerProcessor, VideoOptions, upscale_video
from tests.conftest import run_main

W, H, FPS = 64, 48, 25


def _pattern(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([(xx * 4 + i * 5) % 256, (yy * 5 + i * 3) % 256, ((xx + yy) * 2 + i * 7) % 256],
                    -1).astype(np.uint8)


def make_clip(path: Path, n: int = 50, pts: list[int] | None = None, audio: str | None = "aac",
              pix_fmt: str = "yuv420p", matrix: tuple[str, int] | None = None, rotation: int = 0,
              sar: Fraction | None = None, subtitles: bool = False, solid: tuple[int, int, int] | None = None,
              gop: int | None = None, interlaced: bool = False) -> Path:
    """A testsrc-like clip; ``pts`` in ms gives variable frame rate; ``matrix``: (swscale name, AVColorSpace)."""
    tb = Fraction(1, 1000) if pts else Fraction(1, FPS)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=FPS, options={"x264-params": "interlaced=1:tff=1"} if interlaced else None)
    vs.width, vs.height, vs.pix_fmt = W, H, pix_fmt
    cc = vs.codec_context
    cc.time_base = tb
    if matrix:
        cc.colorspace = cc.color_primaries = cc.color_trc = matrix[1]
        cc.color_range = 1
    if sar:
        cc.sample_aspect_ratio = sar
    if gop:
        cc.gop_size = gop
    if rotation:
        vs.set_display_rotation(rotation)
    aus = out.add_stream(audio, rate=48000) if audio else None
    subs = out.add_mux_stream("subrip") if subtitles else None
    if subs is not None:
        subs.time_base = Fraction(1, 1000)
    for i in range(n):
        img = np.broadcast_to(np.array(solid, np.uint8), (H, W, 3)) if solid else _pattern(i)
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame = (src.reformat(format=pix_fmt, src_colorspace=matrix[0], dst_colorspace=matrix[0],
                              src_color_range="JPEG", dst_color_range="MPEG") if matrix
                 else src.reformat(format=pix_fmt))
        frame.pts, frame.time_base = (pts[i] if pts else i), tb
        out.mux(vs.encode(frame))
    out.mux(vs.encode(None))
    if aus is not None:
        t, rate, size = 0, 48000, 960
        while t < n / FPS * rate:
            samples = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(size) + t) / rate)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, t, Fraction(1, rate)
            out.mux(aus.encode(af))
            t += size
        out.mux(aus.encode(None))
    if subs is not None:
        for i, start in enumerate((100, 700)):
            packet = av.Packet(f"line {i}".encode())
            packet.pts = packet.dts = start
            packet.duration, packet.time_base, packet.stream = 400, Fraction(1, 1000), subs
            out.mux(packet)
    out.close()
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return [float(f.pts * v.time_base) for f in c.decode(v)]


def frames_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(getattr(c.streams, kind)[0]) if p.size]


class Counting:
    """A FrameProcessor that counts frames and remembers where it was reset."""

    def __init__(self, upscaler: subpixel.Upscaler) -> None:
        self.inner = UpscalerProcessor(upscaler)
        self.scale, self.name = self.inner.scale, self.inner.name
        self.frames, self.resets = 0, []

    def reset(self) -> None:
        self.resets.append(self.frames)

    def process(self, batch: torch.Tensor) -> torch.Tensor:
        self.frames += len(batch)
        return self.inner.process(batch)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Torch's spinning intra-op threads crawl beside the decode/encode threads on a busy small box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def up() -> subpixel.Upscaler:
    return subpixel.load("bicubic", scale=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", gop=12)  # keyframes to seek to on resume


def test_frames_duration_and_audio_kept(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    summary = upscale_video(clip, out, up, VideoOptions(segment_frames=20))
    assert summary["frames"] == summary["processed_frames"] == 50 and summary["segments"] == 3
    assert set(summary["stages"]) == {"decode", "sr", "convert", "encode", "mux"}
    assert summary["stages"]["sr"]["frames"] == 50 and summary["stages"]["sr"]["fps"] > 0
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height, v.codec_context.name, v.format.name) == (2 * W, 2 * H, "h264", "yuv420p")
    t_in, t_out = frame_times(clip), frame_times(out)
    assert len(t_out) == len(t_in) == 50
    assert np.allclose(t_in, t_out, atol=0.5 / FPS)
    assert packets(out, "audio") == packets(clip, "audio")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # work folder removed


def test_variable_frame_rate_and_subtitles_kept(tmp_path: Path, up: subpixel.Upscaler) -> None:
    steps = [40, 40, 80, 20, 40, 120, 40, 33, 47, 40] * 3
    pts = np.cumsum([0] + steps)[:30].tolist()
    src = make_clip(tmp_path / "vfr.mkv", n=30, pts=pts, audio="libopus", subtitles=True)
    out = tmp_path / "vfr_x2.mkv"
    upscale_video(src, out, up, VideoOptions(segment_frames=7))
    t_in, t_out = frame_times(src), frame_times(out)
    assert len(t_out) == 30
    assert np.abs(np.array(t_in) - np.array(t_out)).max() < 0.5 * min(steps) / 1000
    assert packets(out, "audio") == packets(src, "audio")
    assert packets(out, "subtitles") == packets(src, "subtitles") == [b"line 0", b"line 1"]


def test_resume_matches_uninterrupted_run(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    upscale_video(clip, whole, up, VideoOptions(segment_frames=10))

    out = tmp_path / "resumed.mp4"

    def crash(segment) -> None:
        if segment.index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, out, up, VideoOptions(segment_frames=10, on_segment=crash))
    assert not out.exists()
    with pytest.raises(SubpixelError, match="--resume"):
        upscale_video(clip, out, up, VideoOptions(segment_frames=10))
    with pytest.raises(SubpixelError, match="crf"):
        upscale_video(clip, out, up, VideoOptions(segment_frames=10, crf=30, resume=True))

    counting = Counting(up)
    summary = upscale_video(clip, out, counting, VideoOptions(segment_frames=10, batch=3, resume=True))
    assert counting.frames == summary["processed_frames"] == 30  # segments 0 and 1 were not redone
    assert counting.resets == [0, 10, 20]  # a reset at every segment start
    assert summary["resumed_frames"] == 20 and summary["frames"] == 50
    a, b = frames_rgb(whole), frames_rgb(out)
    assert len(a) == len(b) == 50 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert frame_times(whole) == frame_times(out)
    assert packets(out, "audio") == packets(clip, "audio")


@pytest.mark.parametrize("deinterlace", [None, "bwdif"])
def test_decoding_after_a_frame_matches_a_full_decode(clip: Path, deinterlace: str | None) -> None:
    info = probe(clip)
    full = [(f.pts, f.to_ndarray(format="rgb24")) for f in decode_frames(info, deinterlace)]
    tail = [(f.pts, f.to_ndarray(format="rgb24")) for f in decode_frames(info, deinterlace, after_pts=full[19][0])]
    assert [pts for pts, _ in tail] == [pts for pts, _ in full[20:]]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(tail, full[20:]))


@pytest.mark.parametrize("kind", ["random", "truncated", "audio_only", "text"])
def test_bad_input_is_a_clear_error(kind: str, clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / f"bad_{kind}.mp4"
    if kind == "random":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        bad.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif kind == "audio_only":
        bad = tmp_path / "audio.m4a"
        with av.open(str(bad), "w") as out:
            s = out.add_stream("aac", rate=48000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, 0
            out.mux(s.encode(frame))
            out.mux(s.encode(None))
    else:
        bad.write_text("not a video\n")
    result = CliRunner().invoke(cli, ["video", str(bad), "-o", str(tmp_path / "o.mp4"), "-s", "2", "-m", "bicubic"])
    assert isinstance(result.exception, SubpixelError)
    message = str(result.exception)
    assert "\n" not in message and (("no video stream" in message) if kind == "audio_only"
                                    else "not a readable media file" in message or "corrupt" in message)
    assert not (tmp_path / "o.mp4").exists()


def test_existing_output_needs_overwrite(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    out.write_bytes(b"keep me")
    with pytest.raises(SubpixelError, match="exists"):
        upscale_video(clip, out, up)
    assert out.read_bytes() == b"keep me"
    upscale_video(clip, out, up, VideoOptions(overwrite=True))
    assert len(frame_times(out)) == 50


def test_unavailable_encoder_is_a_clear_error(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match="not available in this FFmpeg build.*libx264"):
        upscale_video(clip, tmp_path / "o.mp4", up, VideoOptions(codec="libnosuchcodec"))
    with pytest.raises(SubpixelError, match="cannot hold"):
        upscale_video(clip, tmp_path / "o.webm", up)  # H.264 does not go into WebM


@pytest.mark.parametrize("matrix", [("ITU709", 1), ("ITU601", 6)])
def test_colour_matrix_used_and_tagged(matrix: tuple[str, int], up: subpixel.Upscaler, tmp_path: Path) -> None:
    rgb = (200, 60, 40)
    src = make_clip(tmp_path / "solid.mp4", n=5, audio=None, matrix=matrix, solid=rgb)
    out = tmp_path / "solid_x2.mp4"
    upscale_video(src, out, up)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (matrix[1],) * 3 + (1,)
        frame = next(c.decode(video=0))
        assert (frame.colorspace, frame.color_range) == (matrix[1], 1)
        seen = frame.to_ndarray(format="rgb24", src_colorspace=matrix[0], src_color_range="MPEG",
                                dst_color_range="JPEG").reshape(-1, 3).mean(0)
    assert np.abs(seen - rgb).max() < 3  # decoded and re-encoded with the same matrix and range


def test_rotation_and_aspect_ratio_kept(up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rot.mp4", n=5, audio=None, rotation=90, sar=Fraction(4, 3))
    out = tmp_path / "rot_x2.mp4"
    upscale_video(src, out, up)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.sample_aspect_ratio == Fraction(4, 3)
        assert next(c.decode(v)).rotation == 90


@pytest.mark.parametrize(("suffix", "kept"), [(".avi", False), (".mkv", True)])
def test_a_rotation_the_container_cannot_store_is_warned_of(suffix: str, kept: bool, up: subpixel.Upscaler,
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_clip(tmp_path / "rot.mp4", n=3, audio=None, rotation=90)
    out = tmp_path / f"o{suffix}"
    with caplog.at_level("WARNING"):
        upscale_video(src, out, up, VideoOptions(codec="mpeg4"))
    assert probe(out).rotation == (90 if kept else 0)
    assert [r.getMessage() for r in caplog.records] == ([] if kept else [
        f"{out}: the avi container cannot store the input's rotation (90 degrees): the output displays unrotated "
        "(.mkv or .mp4 keep it)"])


@pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="no libvpx in this FFmpeg build")
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_aspect_ratio_kept_by_codecs_without_it_in_their_bitstream(suffix: str, up: subpixel.Upscaler,
                                                                   tmp_path: Path) -> None:
    """VP9 (like AV1) has no aspect ratio field: only the container can record it."""
    src = make_clip(tmp_path / "sar.mp4", n=3, audio=None, sar=Fraction(8, 9))
    out = tmp_path / f"sar_x2{suffix}"
    upscale_video(src, out, up, VideoOptions(codec="vp9", crf=40, preset="8"))
    with av.open(str(out)) as c:
        assert c.streams.video[0].sample_aspect_ratio == Fraction(8, 9)


def _ten_bit_encoder() -> str | None:
    for name in ("libx264", "libx265"):
        if name in av.codecs_available and "yuv420p10le" in [f.name for f in av.Codec(name, "w").video_formats]:
            return name
    return None


@pytest.mark.skipif(_ten_bit_encoder() is None, reason="no 10-bit H.264/H.265 encoder in this FFmpeg build")
def test_ten_bit_stays_ten_bit(up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "deep.mkv", n=5, audio=None, pix_fmt="yuv420p10le")
    out = tmp_path / "deep_x2.mkv"
    summary = upscale_video(src, out, up, VideoOptions(codec=_ten_bit_encoder()))
    assert summary["pix_fmt"] == "yuv420p10le"
    with av.open(str(out)) as c:
        assert next(c.decode(video=0)).format.name == "yuv420p10le"


def _x264_ten_bit() -> bool:
    return "yuv420p10le" in [f.name for f in av.Codec("libx264", "w").video_formats]


@pytest.mark.skipif(not _x264_ten_bit(), reason="this FFmpeg build's libx264 has no 10-bit")
def test_ten_bit_input_through_an_eight_bit_encoder_warns(up: subpixel.Upscaler, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    src = make_clip(tmp_path / "deep.mkv", n=3, audio=None, pix_fmt="yuv420p10le")
    with caplog.at_level("WARNING"):
        upscale_video(src, tmp_path / "o.mkv", up, VideoOptions(codec="mpeg4"))
        upscale_video(src, tmp_path / "asked.mkv", up, VideoOptions(codec="mpeg4", pix_fmt="yuv420p"))
    assert [r.getMessage() for r in caplog.records] == [  # said once: a pixel format asked for is what was wanted
        f"{src} is 10-bit, but mpeg4 has no deeper pixel format in this FFmpeg build: the output is 8-bit yuv420p "
        "(h264 or h265 keep 10 bits)"]


def test_full_chroma_and_odd_sizes_lost_to_yuv420p_are_warned_of(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "odd444.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 63, 47, "yuv444p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pattern(i)[:47, :63]), format="rgb24")
            frame = frame.reformat(format="yuv444p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    x3 = subpixel.load("bicubic", scale=3)
    with caplog.at_level("WARNING"):
        summary = upscale_video(src, tmp_path / "o.mkv", x3)
    assert (summary["width"], summary["height"]) == (188, 140)
    assert [r.getMessage() for r in caplog.records] == [
        f"{src} has full colour resolution (yuv444p), the output yuv420p by default keeps a quarter of it; "
        "--pix-fmt yuv444p keeps it all",
        f"{src}: the upscaled 189x141 is cropped to 188x140 (1 column and 1 row off the right and bottom edges): "
        "yuv420p halves the colour resolution and needs even sizes"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        summary = upscale_video(src, tmp_path / "full.mkv", x3, VideoOptions(pix_fmt="yuv444p"))
    assert (summary["width"], summary["height"]) == (189, 141) and not caplog.records


def test_deinterlace_keeps_frames_and_times(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    out = tmp_path / "deint.mp4"
    upscale_video(clip, out, up, VideoOptions(deinterlace="bwdif", segment_frames=25))
    assert np.allclose(frame_times(out), frame_times(clip), atol=0.5 / FPS)


def test_cli_png_sequence_with_json_summary(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    result = CliRunner().invoke(cli, ["video", str(clip), "-o", str(folder), "-s", "2", "-m", "bicubic",
                                      "--batch", "8", "--segment-frames", "16", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # warnings go to stderr
    assert summary["codec"] == "png" and summary["frames"] == 50 and summary["segments"] == 4
    files = sorted(folder.glob("frame_*.png"))
    assert len(files) == 50
    first = frames_rgb(files[0])[0]
    assert first.shape == (2 * H, 2 * W, 3)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_matroska_output_states_the_input_frame_rate(suffix: str, up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / f"in{suffix}", n=10, audio=None)
    out = tmp_path / "out.mkv"
    upscale_video(src, out, up)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].average_rate == a.streams.video[0].average_rate == FPS


def test_h264_in_avi_is_refused_before_any_work(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    counting = Counting(up)
    with pytest.raises(SubpixelError, match=r"o\.avi.*\.mkv or \.mp4.*mpeg4"):
        upscale_video(clip, tmp_path / "o.avi", counting)
    assert counting.frames == 0 and not list(tmp_path.iterdir())


def test_mux_error_at_close_names_the_output(clip: Path, tmp_path: Path) -> None:
    """H.264 from MP4 (no start codes) into AVI fails as the trailer is written, after the audio."""
    with pytest.raises(SubpixelError, match=r"cannot mux .*final\.avi: "):  # not a disk problem: not "cannot write"
        mux_output(tmp_path / "part.avi", [(clip, 0)], probe(clip), shown=tmp_path / "final.avi")


def test_timestamps_jumping_back_follow_on(up: subpixel.Upscaler, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Concatenated MPEG-TS (``cat a.ts a.ts``): the second run continues after the first, with a warning."""
    part = make_clip(tmp_path / "a.ts", n=10, audio=None)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part.read_bytes() * 2)
    out = tmp_path / "joined_x2.mp4"
    with caplog.at_level("WARNING"):
        upscale_video(joined, out, up, VideoOptions(segment_frames=7))
    assert len([r for r in caplog.records if "jump back" in r.getMessage()]) == 1
    t = frame_times(out)
    assert len(t) == 20 and np.allclose(np.diff(t), 1 / FPS, atol=0.5 / FPS)
    info = probe(joined)
    full = [f.pts for f in decode_frames(info)]
    assert [f.pts for f in decode_frames(info, after_pts=full[13])] == full[14:]  # resuming in the second run


def test_joined_streams_with_audio_shift_the_audio_too(up: subpixel.Upscaler, tmp_path: Path) -> None:
    """``cat a.ts a.ts`` with audio: the audio after the jump back follows on like the video (it failed to mux)."""
    part = make_clip(tmp_path / "a.ts", n=10)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part.read_bytes() * 2)
    out = tmp_path / "joined_x2.mkv"
    upscale_video(joined, out, up, VideoOptions(segment_frames=7))
    assert len(frame_times(out)) == 20
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        times = [float(p.pts * a.time_base) for p in c.demux(a) if p.size]
    assert len(times) == 2 * len(packets(part, "audio")) and all(np.diff(times) > 0)
    assert times[-1] - times[0] > 0.7  # two runs of 0.4 s, one after the other


def test_repeated_timestamps_move_one_frame_and_jumps_shift_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from subpixel.io.video_decode import DecodeStats, _continuous

    info = SimpleNamespace(frame_step=42, time_base=Fraction(1, 1000), rate=Fraction(24), path="x.mkv")
    frames = [SimpleNamespace(pts=p) for p in (0, 42, 83, 125, 125, 167, 150, 208, 0, 42)]
    stats = DecodeStats()
    with caplog.at_level("WARNING"):
        out = [f.pts for f in _continuous(iter(frames), info, stats)]  # type: ignore[arg-type]
    # ms rounding (125, 125) and a small stumble (167, 150) touch one frame each; the jump back to 0 shifts the rest
    assert out == [0, 42, 83, 125, 126, 167, 168, 208, 250, 292]
    assert stats.jumps == 1 and len([r for r in caplog.records if "jump back" in r.getMessage()]) == 1


def test_damaged_frames_are_counted_and_reported(up: subpixel.Upscaler, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    src = make_clip(tmp_path / "src.mp4", n=20, audio=None)
    damaged = tmp_path / "damaged.mp4"
    with av.open(str(src)) as c, av.open(str(damaged), "w") as out:
        v = c.streams.video[0]
        o = out.add_stream_from_template(v, opaque=True)
        for i, p in enumerate(q for q in c.demux(v) if q.size):
            if i in (5, 6):  # undecodable garbage in place of two frames
                bad = av.Packet(b"\xff" * p.size)
                bad.pts, bad.dts, bad.duration, bad.time_base = p.pts, p.dts, p.duration, p.time_base
                p = bad
            p.stream = o
            out.mux(p)
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(cli, ["video", str(damaged), "-o", str(tmp_path / "o.mp4"), "-s", "2",
                                          "-m", "bicubic", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # warnings go to stderr
    assert summary["frames"] == 18 and summary["damaged_frames"] == 2
    assert any("2 damaged frames could not be decoded" in r.getMessage() for r in caplog.records)


class Failing(Counting):
    """Fails with ``error`` once ``after`` frames are done."""

    def __init__(self, upscaler: subpixel.Upscaler, after: int, error: Exception) -> None:
        super().__init__(upscaler)
        self.after, self.error = after, error

    def process(self, batch: torch.Tensor) -> torch.Tensor:
        if self.frames >= self.after:
            raise self.error
        return super().process(batch)


@pytest.mark.parametrize("error", [NotResumableError("the input is at fault"), SubpixelError("cannot read it now"),
                                   RuntimeError("crash")])
def test_work_folder_kept_only_for_what_resume_can_continue(error: Exception, clip: Path, up: subpixel.Upscaler,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(type(error), match=str(error)):
        upscale_video(clip, out, Failing(up, 20, error), VideoOptions(segment_frames=10))
    work = tmp_path / ".out.mp4.parts"
    if isinstance(error, NotResumableError):  # a rerun fails the same way: start afresh next time
        assert not work.exists()
        upscale_video(clip, out, up, VideoOptions(segment_frames=10))
    else:  # a crash or a possibly passing failure: the finished segments wait for --resume
        assert (work / "manifest.json").exists()
        with pytest.raises(SubpixelError, match="--resume"):
            upscale_video(clip, out, up, VideoOptions(segment_frames=10))
        assert upscale_video(clip, out, up, VideoOptions(segment_frames=10, resume=True))["resumed_frames"] >= 10


@pytest.mark.parametrize("deinterlace", ["yadif", "bwdif"])
def test_deinterlacer_leaves_progressive_frames_alone(clip: Path, deinterlace: str) -> None:
    info = probe(clip)
    plain = [f.to_ndarray(format="rgb24") for f in decode_frames(info)]
    deint = [f.to_ndarray(format="rgb24") for f in decode_frames(info, deinterlace)]
    assert len(deint) == len(plain) and all(np.array_equal(a, b) for a, b in zip(plain, deint))


@pytest.mark.parametrize("interlaced", [False, True])
def test_interlaced_input_gets_a_deinterlace_hint(interlaced: bool, up: subpixel.Upscaler, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = make_clip(tmp_path / "in.mp4", n=5, audio=None, interlaced=interlaced)
    with caplog.at_level("WARNING"):
        upscale_video(src, tmp_path / "out.mp4", up)
        upscale_video(src, tmp_path / "deint.mp4", up, VideoOptions(deinterlace="bwdif"))
    hints = [r.getMessage() for r in caplog.records if "--deinterlace" in r.getMessage()]
    assert hints == ([f"{src} is interlaced (field order tt): --deinterlace yadif or bwdif may look better"]
                     if interlaced else [])


@pytest.mark.parametrize("vfr", [False, True])
def test_avi_output_states_the_input_frame_rate(vfr: bool, up: subpixel.Upscaler, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """AVI stores a frame rate, no timestamps: one frame per input frame, VFR input with a warning."""
    pts = np.cumsum([0] + [40, 80, 20, 40] * 3)[:12].tolist() if vfr else None
    src = make_clip(tmp_path / "in.mp4", n=12, pts=pts, audio=None)
    out = tmp_path / "out.avi"
    with caplog.at_level("WARNING"):
        upscale_video(src, out, up, VideoOptions(codec="mpeg4", bitrate="1M", segment_frames=5))
    with av.open(str(src)) as a, av.open(str(out)) as b:
        v = b.streams.video[0]
        assert v.average_rate == a.streams.video[0].average_rate and v.frames == 12
        assert len([p for p in b.demux(v) if p.size]) == 12
    assert len(frame_times(out)) == 12
    warned = [r.getMessage() for r in caplog.records if "AVI" in r.getMessage()]
    assert len(warned) == vfr


def test_avi_from_a_late_start_is_not_padded(up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "late.mkv", n=10, pts=[1000 + 40 * i for i in range(10)], audio=None)
    out = tmp_path / "late.avi"
    upscale_video(src, out, up, VideoOptions(codec="mpeg4", bitrate="1M"))
    with av.open(str(out)) as b:
        assert b.streams.video[0].frames == 10  # no empty frames for the second before the first one


def test_mpeg4_from_a_90khz_stream_keeps_its_frame_times(up: subpixel.Upscaler, tmp_path: Path) -> None:
    """MPEG-4 part 2 caps the time base at 1/65535: its segments run at one tick per frame instead."""
    src = make_clip(tmp_path / "in.ts", n=10, audio=None)  # MPEG-TS: 1/90000
    out = tmp_path / "out.mkv"
    upscale_video(src, out, up, VideoOptions(codec="mpeg4", bitrate="1M", segment_frames=4))
    assert np.allclose(frame_times(out), frame_times(src), atol=1e-3)


def png_chunks(path: Path) -> dict[bytes, bytes]:
    data, pos, chunks = path.read_bytes(), 8, {}
    while pos < len(data):
        (size,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunks[kind] = data[pos + 8:pos + 8 + size]
        pos += 12 + size
    return chunks


def test_png_sequence_in_display_orientation_with_aspect_ratio(up: subpixel.Upscaler, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """PNG has no rotation tag: frames are turned upright; pHYs states the pixel aspect (x, y pixels per unit)."""
    plain = make_clip(tmp_path / "plain.mp4", n=3)
    turned = make_clip(tmp_path / "turned.mp4", n=3, audio=None, rotation=90, sar=Fraction(4, 3))
    wide = make_clip(tmp_path / "wide.mp4", n=3, audio=None, sar=Fraction(4, 3))
    with caplog.at_level("WARNING"):
        for src in (plain, turned, wide):
            upscale_video(src, tmp_path / src.stem, up)
    assert [r.getMessage() for r in caplog.records] == [f"{plain}: a PNG sequence holds no audio or subtitles; "
                                                        "input stream #1 not copied"]
    a, b = (frames_rgb(tmp_path / name / "frame_000000.png")[0] for name in ("plain", "turned"))
    assert b.shape == (2 * W, 2 * H, 3) and np.array_equal(b, np.rot90(a))  # turned 90 degrees anticlockwise
    assert b"pHYs" not in png_chunks(tmp_path / "plain" / "frame_000000.png")
    assert png_chunks(tmp_path / "wide" / "frame_000002.png")[b"pHYs"] == struct.pack(">IIB", 3, 4, 0)
    assert png_chunks(tmp_path / "turned" / "frame_000002.png")[b"pHYs"] == struct.pack(">IIB", 4, 3, 0)


def test_extra_video_streams_dropped_with_a_warning(clip: Path, up: subpixel.Upscaler, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    two = tmp_path / "two.mkv"
    with av.open(str(clip)) as c, av.open(str(two), "w") as out:
        v, a = c.streams.video[0], c.streams.audio[0]
        targets = {v.index: [out.add_stream_from_template(v, opaque=True) for _ in range(2)],
                   a.index: [out.add_stream_from_template(a, opaque=True)]}
        for p in c.demux(v, a):
            for target in targets[p.stream.index] if p.size else ():
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.duration, q.time_base = p.pts, p.dts, p.duration, p.time_base
                q.is_keyframe, q.stream = p.is_keyframe, target
                out.mux(q)
    with caplog.at_level("WARNING"):
        upscale_video(two, tmp_path / "out.mkv", up)
    assert [r.getMessage() for r in caplog.records] == [
        f"{two}: only video stream #0 is upscaled; input stream #1 (video stream) not copied"]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_title_chapters_and_attachments_kept(suffix: str, up: subpixel.Upscaler, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    plain = make_clip(tmp_path / "plain.mkv", n=10, audio=None)
    src = tmp_path / "rich.mkv"
    chapters = [{"id": i + 1, "start": i * 200, "end": i * 200 + 200, "time_base": Fraction(1, 1000),
                 "metadata": {"title": name}} for i, name in enumerate(("Intro", "Main"))]
    with av.open(str(plain)) as c, av.open(str(src), "w") as out:
        v = out.add_stream_from_template(c.streams.video[0], opaque=True)
        out.add_attachment("font.ttf", "application/x-truetype-font", b"not really a font")
        out.metadata["title"] = "My Movie"
        out.set_chapters(chapters)
        for p in c.demux(c.streams.video[0]):
            if p.size:
                p.stream = v
                out.mux(p)
    out = tmp_path / f"rich_x2{suffix}"
    with caplog.at_level("WARNING"):
        upscale_video(src, out, up)
    with av.open(str(out)) as c:
        assert c.metadata.get("title") == "My Movie"
        assert [(float(ch["start"] * ch["time_base"]), ch["metadata"]["title"]) for ch in c.chapters()] == [
            (0.0, "Intro"), (0.2, "Main")]
        kept = [(s.name, s.data) for s in c.streams if s.type == "attachment"]
        if suffix == ".mkv":
            assert kept == [("font.ttf", b"not really a font")] and not caplog.records
        else:
            assert not kept and [s.type for s in c.streams] == ["video", "data"]  # MP4 keeps chapters in a track
            assert [r.getMessage() for r in caplog.records] == [
                f"{src}: only Matroska (.mkv) holds attachments (fonts); input stream #1 (attachment font.ttf) "
                "not copied"]
    if suffix == ".mp4":  # and an MP4's chapter track, read back as a data stream, is no stream left out either
        caplog.clear()
        with caplog.at_level("WARNING"):
            upscale_video(out, tmp_path / "again.mkv", up)
        assert not caplog.records
        with av.open(str(tmp_path / "again.mkv")) as c:
            assert len(c.chapters()) == 2


@pytest.mark.parametrize("engine", ["onnx", "torch-compile"])
def test_recurrent_model_warns_of_ignored_engine_and_tile(engine: str, clip: Path, up: subpixel.Upscaler,
                                                          tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from subpixel.models.frvsr import FRVSR

    net = FRVSR(2, channels=8, blocks=1)
    fake = SimpleNamespace(name=engine, precision="fp32", selection=None, device=torch.device("cpu"))
    frvsr = subpixel.Upscaler(net, "frvsr", engine=fake)
    src = make_clip(tmp_path / "in.mp4", n=3, audio=None)
    with caplog.at_level("WARNING"):
        summary = upscale_video(src, tmp_path / "out.mp4", frvsr, VideoOptions(tile=32))
    assert [r.getMessage() for r in caplog.records] == [
        f"frvsr is recurrent and runs whole frames on torch: --engine {engine} and --tile 32 are ignored"]
    assert summary["engine"] == "torch"
    assert upscale_video(src, tmp_path / "bicubic.mp4", up)["engine"] == up.engine.name


@pytest.mark.parametrize("flag", [None, "--quiet", "--json"])
def test_cli_notes_bicubic_for_a_scale_without_a_model(flag: str | None, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", n=2, audio=None)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["video", str(src), "-o", str(out), "-s", "5", *([flag] if flag else [])])
    assert result.exit_code == 0, result.output
    note = "note: no trained x5 model ships yet; used bicubic\n"
    assert result.stderr.endswith(note) == (flag is None) and result.stderr.count("note:") == (flag is None)
    if flag is None:
        assert result.stdout.startswith(f"wrote {out} (bicubic x5")


def test_json_model_is_the_bare_name_beside_engine_and_precision(tmp_path: Path) -> None:
    """As upscale, eval and export give it: ``"model": "frvsr"``, not ``"frvsr x2 fp32"``."""
    from subpixel.models.frvsr import FRVSR

    src = make_clip(tmp_path / "in.mp4", n=2, audio=None)
    result = CliRunner().invoke(cli, ["video", str(src), "-o", str(tmp_path / "out.mp4"), "-s", "2", "-m", "bicubic",
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["model"], summary["engine"], summary["precision"]) == ("bicubic", "torch", "fp32")
    frvsr = subpixel.Upscaler(FRVSR(2, channels=8, blocks=1), "frvsr", device="cpu")
    summary = upscale_video(src, tmp_path / "frvsr.mp4", frvsr)
    assert (summary["model"], summary["engine"], summary["precision"]) == ("frvsr", "torch", "fp32")


@pytest.mark.parametrize(("options", "message"), [
    (VideoOptions(crf=99), r"--crf 99 is out of range for libx264 \(0-51;"),
    (VideoOptions(crf=-1), r"--crf -1 is out of range for libx264 \(0-51;"),
    (VideoOptions(tile=-3), r"--tile must be 0 \(no tiling\) or >= 16, got -3"),
    (VideoOptions(tile=4), r"--tile must be 0 \(no tiling\) or >= 16, got 4"),  # refused before any work
    (VideoOptions(tile=24.0), r"--tile must be 0 \(no tiling\) or >= 16, got 24.0"),  # as Upscaler refuses it
])
def test_out_of_range_crf_and_tile_are_refused(options: VideoOptions, message: str, clip: Path,
                                               up: subpixel.Upscaler, tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match=message):
        upscale_video(clip, tmp_path / "o.mp4", up, options)
    assert not list(tmp_path.iterdir())


def _stopped_after_the_first_segment(*args, **kwargs) -> dict:
    """upscale_video with a Ctrl-C as the second segment is finished (the first is kept)."""
    def stop(segment) -> None:
        if segment.index == 1:
            raise KeyboardInterrupt

    args[3].on_segment = stop
    return upscale_video(*args, **kwargs)


def test_cli_interrupt_says_how_to_resume(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("subpixel.video.command.upscale_video", _stopped_after_the_first_segment)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["video", str(clip), "-o", str(out), "-s", "2", "-m", "bicubic", "-q",
                                      "--segment-frames", "10"])
    assert result.exit_code != 0 and not out.exists()
    assert (f"interrupted: 20 finished frames of {out} are kept in {tmp_path / '.out.mp4.parts'}; "
            "rerun with --resume to continue\n") in result.stderr


@pytest.mark.parametrize("existing", [False, True])
def test_cli_interrupt_before_the_first_segment_says_nothing_was_kept(existing: bool, clip: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(src, dst, model, options) -> dict:
        return upscale_video(src, dst, Failing(model, 0, KeyboardInterrupt()), options)

    monkeypatch.setattr("subpixel.video.command.upscale_video", interrupted)
    out = tmp_path / "out.mp4"
    if existing:  # an older output, to be replaced: not this job's finished one
        out.write_bytes(b"old")
        os.utime(out, ns=(1_700_000_000_000_000_000,) * 2)
    result = CliRunner().invoke(cli, ["video", str(clip), "-o", str(out), "-s", "2", "-m", "bicubic", "-q",
                                      "--segment-frames", "10", "--overwrite"])
    assert result.exit_code != 0 and sorted(p.name for p in tmp_path.iterdir()) == (["out.mp4"] if existing else [])
    assert result.stderr.startswith(f"interrupted before the first segment of {out} was finished: nothing was kept\n")


def test_cli_interrupt_with_json_prints_the_resume_hint_on_stdout(clip: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("subpixel.video.command.upscale_video", _stopped_after_the_first_segment)
    out = tmp_path / "out.mp4"
    monkeypatch.setattr("sys.argv", ["subpixel", "video", str(clip), "-o", str(out), "-s", "2", "-m", "bicubic",
                                     "--json", "--segment-frames", "10"])
    exit_code = run_main()
    stdout, stderr = capsys.readouterr()
    hint = (f"interrupted: 20 finished frames of {out} are kept in {tmp_path / '.out.mp4.parts'}; "
            "rerun with --resume to continue")
    assert exit_code == 130 and json.loads(stdout) == {"error": hint}
    assert stderr.strip() == hint  # said once


def _stop_after_first_segment(src: Path, out: Path, up: subpixel.Upscaler) -> None:
    """A job of 10-frame segments interrupted (Ctrl-C) once its first segment is finished."""
    def stop(segment) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, out, up, VideoOptions(segment_frames=10, on_segment=stop))


def test_resume_refusal_for_a_changed_input_is_readable(up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", n=20, audio=None)
    out = tmp_path / "out.mp4"
    _stop_after_first_segment(src, out, up)
    os.utime(src, ns=(1_700_000_000_000_000_000,) * 2)
    with pytest.raises(SubpixelError) as err:
        upscale_video(src, out, up, VideoOptions(segment_frames=10, resume=True))
    was = datetime.fromtimestamp(1_700_000_000).isoformat(sep=" ")
    assert (f"cannot resume {out}: the input file changed since the unfinished job started "
            f"(modified {was}, was 20") in str(err.value)


def test_truncated_input_warns_of_the_frames_it_lacks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A faststart MP4 cut short still lists all its frames: the output holds what could be read, with a warning."""
    src = make_clip(tmp_path / "src.mp4", n=30, audio=None)
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as c, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        v = c.streams.video[0]
        o = out.add_stream_from_template(v, opaque=True)
        for p in c.demux(v):
            if p.size:
                p.stream = o
                out.mux(p)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size * 6 // 10])
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(cli, ["video", str(cut), "-o", str(tmp_path / "o.mp4"), "-s", "2",
                                          "-m", "bicubic", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert 0 < summary["frames"] < 29 and summary["expected_frames"] == 30
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut}: only {summary['frames']} of the 30 frames the container lists could be read (truncated file?); "
        "the output holds those"]
    assert len(frame_times(tmp_path / "o.mp4")) == summary["frames"]


def test_an_mp4_trimmed_by_its_edit_list_is_no_truncated_file(up: subpixel.Upscaler, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """As ``ffmpeg -ss 0.2 -c copy`` writes it: from the keyframe before, the frames ahead of the cut at negative
    times, which the edit list hides; the container still counts them."""
    src = make_clip(tmp_path / "src.mp4", n=20, audio=None)
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(src)) as c, av.open(str(trimmed), "w") as out:
        v = c.streams.video[0]
        o = out.add_stream_from_template(v, opaque=True)
        for p in c.demux(v):
            if p.size:
                p.pts, p.dts, p.stream = p.pts - round(0.2 / v.time_base), p.dts - round(0.2 / v.time_base), o
                out.mux(p)
    with caplog.at_level("WARNING"):
        summary = upscale_video(trimmed, tmp_path / "o.mp4", up)
    assert summary["frames"] == len(frame_times(trimmed)) == 15 and summary["expected_frames"] is None
    assert summary["expected_duration"] == 0.6 and not caplog.records


def test_truncated_matroska_warns_of_the_time_it_lacks(up: subpixel.Upscaler, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Matroska lists no frame count, but states each stream's duration: a file cut short is told by its time."""
    src = make_clip(tmp_path / "src.mkv", n=30, audio=None)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        summary = upscale_video(cut, tmp_path / "o.mkv", up)
    assert 0 < summary["frames"] < 25 and summary["expected_frames"] is None and summary["expected_duration"] == 1.2
    read = [r.getMessage() for r in caplog.records]
    assert len(read) == 1 and read[0].startswith(f"{cut}: only ") and read[0].endswith(
        f" s of the 1.200 s of video the container states could be read (truncated file?); the output holds those "
        f"{summary['frames']} frames")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert upscale_video(src, tmp_path / "whole.mkv", up)["frames"] == 30  # a whole file: no warning
    assert not caplog.records


def test_png_output_over_an_existing_file_is_refused_up_front(clip: Path, up: subpixel.Upscaler,
                                                              tmp_path: Path) -> None:
    taken = tmp_path / "frames"
    taken.write_bytes(b"keep me")
    counting = Counting(up)
    for overwrite in (False, True):
        with pytest.raises(SubpixelError, match="frames is a file, not a folder for the PNG sequence"):
            upscale_video(clip, taken, counting, VideoOptions(overwrite=overwrite))
    assert counting.frames == 0 and taken.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["frames"]


def test_an_output_under_a_file_is_a_clear_error(clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match=r"cannot write .*clip\.mp4/out\.mp4: Not a directory$"):
        upscale_video(clip, clip / "out.mp4", up)


@pytest.mark.parametrize("error, message", [
    (av.error.OSError(28, "No space left on device"), "cannot write {out}: No space left on device"),
    (av.error.InvalidDataError(1094995529, "Invalid data found"), "encoding {out} failed: .*Invalid data found"),
], ids=["full-disk", "encoder"])
def test_a_failed_write_is_a_clear_error_and_keeps_finished_segments(
        clip: Path, up: subpixel.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception,
        message: str) -> None:
    """A full disk says it cannot write; an encoder failure says so (not "cannot write"); both keep segments."""
    from subpixel.video import pipeline

    real_close, closed = pipeline.SegmentEncoder.close, []

    def close(self) -> None:
        closed.append(self)
        if len(closed) == 2:  # as FFmpeg reports a failure at the second segment's trailer
            raise error
        real_close(self)

    monkeypatch.setattr(pipeline.SegmentEncoder, "close", close)
    out = tmp_path / "out.mp4"
    with pytest.raises(SubpixelError, match=f"^{message.format(out=out)}; 20 finished frames are kept for --resume$"):
        upscale_video(clip, out, up, VideoOptions(segment_frames=20))
    assert sorted(p.name for p in (tmp_path / ".out.mp4.parts").iterdir()) == ["manifest.json", "segment_000000.mp4"]
    summary = upscale_video(clip, out, up, VideoOptions(segment_frames=20, resume=True))
    assert summary["resumed_frames"] == 20 and len(frame_times(out)) == 50


def test_a_stop_after_the_last_short_segment_resumes_with_only_the_final_step(
        up: subpixel.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest lists the short last segment but not yet that the job is complete (a full disk then)."""
    from subpixel.video import segments

    src = make_clip(tmp_path / "in.mkv", n=10, audio=None)
    out = tmp_path / "out.mkv"
    real_save = segments.WorkDir.save

    def save(self, manifest) -> None:
        if manifest.complete:
            raise OSError(28, "No space left on device")
        real_save(self, manifest)

    with monkeypatch.context() as m:
        m.setattr(segments.WorkDir, "save", save)
        with pytest.raises(SubpixelError, match="10 finished frames are kept for --resume"):
            upscale_video(src, out, up, VideoOptions(segment_frames=4))
    counting = Counting(up)
    summary = upscale_video(src, out, counting, VideoOptions(segment_frames=4, resume=True))
    assert counting.frames == 0 and summary["resumed_frames"] == summary["frames"] == 10
    assert len(frame_times(out)) == 10


def test_resume_with_other_weights_is_refused(up: subpixel.Upscaler, tmp_path: Path) -> None:
    import copy

    torch.manual_seed(0)
    net_a = ESPCN(2)
    a, a_again, b = (subpixel.Upscaler(net, "espcn", device="cpu") for net in (net_a, copy.deepcopy(net_a), ESPCN(2)))
    src = make_clip(tmp_path / "in.mp4", n=20, audio=None)
    out = tmp_path / "out.mp4"
    _stop_after_first_segment(src, out, a)
    with pytest.raises(SubpixelError, match=r"cannot resume .*: the model's weights differ from the ones the "
                                            "unfinished job started with"):
        upscale_video(src, out, b, VideoOptions(segment_frames=10, resume=True))
    summary = upscale_video(src, out, a_again, VideoOptions(segment_frames=10, batch=3, resume=True))
    assert summary["resumed_frames"] == 10 and summary["frames"] == 20


def test_a_job_from_before_weights_were_recorded_still_resumes(tmp_path: Path) -> None:
    """Manifests written before the weights digest existed lack it: such a job resumes as it did then."""
    torch.manual_seed(0)
    net = subpixel.Upscaler(ESPCN(2), "espcn", device="cpu")
    src = make_clip(tmp_path / "in.mp4", n=20, audio=None)
    out = tmp_path / "out.mp4"
    _stop_after_first_segment(src, out, net)
    manifest = tmp_path / ".out.mp4.parts" / "manifest.json"
    old = json.loads(manifest.read_text())
    del old["options"]["weights"]
    manifest.write_text(json.dumps(old))
    summary = upscale_video(src, out, net, VideoOptions(segment_frames=10, resume=True))
    assert summary["resumed_frames"] == 10 and summary["frames"] == 20


def test_resume_with_engine_auto_does_not_depend_on_its_pick(tmp_path: Path) -> None:
    """``--engine auto`` times the engines each run: a resume that picks another one is the same job."""
    import copy

    from subpixel.engine.select import EngineChoice

    def auto(net: ESPCN, pick: str) -> subpixel.Upscaler:
        upscaler = subpixel.Upscaler(copy.deepcopy(net), "espcn", device="cpu")
        upscaler.engine.name, upscaler.engine.selection = pick, EngineChoice(pick)  # as if auto had picked it
        return upscaler

    torch.manual_seed(0)
    net = ESPCN(2)
    src = make_clip(tmp_path / "in.mp4", n=30, audio=None)
    out = tmp_path / "out.mp4"
    _stop_after_first_segment(src, out, auto(net, "torch"))
    manifest = tmp_path / ".out.mp4.parts" / "manifest.json"
    assert json.loads(manifest.read_text())["options"]["model"] == "espcn x2 auto fp32"
    with pytest.raises(SubpixelError, match="option model was 'espcn x2 auto fp32', now 'espcn x2 torch fp32'"):
        upscale_video(src, out, subpixel.Upscaler(copy.deepcopy(net), "espcn", device="cpu"),
                      VideoOptions(segment_frames=10, resume=True))  # an engine asked for is still part of the job
    stop_second = VideoOptions(segment_frames=10, resume=True, on_segment=lambda s: s.index == 1 and _raise())
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, out, auto(net, "onnx"), stop_second)
    old = json.loads(manifest.read_text())  # a manifest from before: it named the engine auto picked
    old["options"]["model"] = "espcn x2 onnx fp32"
    manifest.write_text(json.dumps(old))
    summary = upscale_video(src, out, auto(net, "torch"), VideoOptions(segment_frames=10, resume=True))
    assert summary["resumed_frames"] == 20 and summary["frames"] == 30
    assert (summary["model"], summary["engine"], summary["precision"]) == ("espcn", "torch", "fp32")


def _raise() -> None:
    raise KeyboardInterrupt


def test_an_interrupted_png_move_is_finished_by_resume(up: subpixel.Upscaler, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Into an existing folder the frames move one by one: a move cut short is completed, stale frames removed."""
    src = make_clip(tmp_path / "in.mp4", n=20, audio=None)
    dst = tmp_path / "seq"
    dst.mkdir()
    for i in range(25):
        (dst / f"frame_{i:06d}.png").write_bytes(b"old")
    real_replace, moved = os.replace, []

    def flaky(a: Path, b: Path) -> None:
        if Path(b).parent == dst:
            moved.append(b)
            if len(moved) == 6:
                raise KeyboardInterrupt
        real_replace(a, b)

    def interrupted_run() -> None:
        moved.clear()
        monkeypatch.setattr(os, "replace", flaky)
        with pytest.raises(KeyboardInterrupt):
            upscale_video(src, dst, up, VideoOptions(segment_frames=8, overwrite=True))
        monkeypatch.setattr(os, "replace", real_replace)

    interrupted_run()
    summary = upscale_video(src, dst, up, VideoOptions(segment_frames=8, resume=True))
    files = sorted(dst.iterdir())
    assert summary["frames"] == len(files) == 20 and [f.name for f in files][-1] == "frame_000019.png"
    assert all(f.read_bytes() != b"old" for f in files) and not (tmp_path / ".seq.parts").exists()

    for f in files:
        f.unlink()
    interrupted_run()  # a frame lost from the work folder: refused rather than counted
    (tmp_path / ".seq.parts" / "frames" / "frame_000012.png").unlink()
    with pytest.raises(SubpixelError, match="frame_000012.png is missing .*--overwrite"):
        upscale_video(src, dst, up, VideoOptions(segment_frames=8, resume=True))


def test_a_trailing_slash_makes_a_folder(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", n=3, audio=None)
    result = CliRunner().invoke(cli, ["video", str(src), "-o", f"{tmp_path / 'seq.x2'}/", "-s", "2", "-m", "bicubic",
                                      "-q"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "seq.x2").glob("frame_*.png"))) == 3


def test_interrupt_before_the_first_segment_keeps_no_work_folder(clip: Path, up: subpixel.Upscaler,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, out, Failing(up, 0, KeyboardInterrupt()), VideoOptions(segment_frames=10))
    assert not list(tmp_path.iterdir())
    assert upscale_video(clip, out, up, VideoOptions(segment_frames=10))["frames"] == 50  # no --resume needed


def test_pix_fmt_help_gives_the_png_default() -> None:
    text = " ".join(CliRunner().invoke(cli, ["video", "--help"]).output.split())
    assert "PNG: rgb24, or rgb48be for input over 8 bits" in text


@pytest.mark.parametrize("tile", ["5", "-5"])
def test_tile_is_checked_as_upscale_checks_it(tile: str, clip: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["video", str(clip), "-o", str(tmp_path / "o.mp4"), "-s", "2", "-m", "bicubic",
                                      "-q", "--tile", tile])
    assert result.exit_code == 2 and "--tile" in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_a_second_ctrl_c_while_the_workers_end_still_joins_them_all(clip: Path, up: subpixel.Upscaler,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C landing in the cleanup's join (a double Ctrl-C) must not leave a worker running: a process
    exiting while one is inside torch aborts with SIGABRT. The first interrupt is the one raised."""
    real_join, joined, second = threading.Thread.join, [], KeyboardInterrupt("second")

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        if threading.current_thread() is threading.main_thread() and self.name.startswith("subpixel-"):
            if second.__traceback__ is None:
                raise second
            joined.append(self.name)
        real_join(self, timeout)

    first = KeyboardInterrupt("first")

    def stop(segment) -> None:
        raise first

    monkeypatch.setattr(threading.Thread, "join", join)
    with pytest.raises(KeyboardInterrupt) as err:
        upscale_video(clip, tmp_path / "out.mp4", up, VideoOptions(segment_frames=10, on_segment=stop))
    monkeypatch.undo()
    assert err.value is first and second.__traceback__ is not None
    assert joined == ["subpixel-decode", "subpixel-sr", "subpixel-convert"]
    assert not [t for t in threading.enumerate() if t.name.startswith("subpixel-")]


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handling, which the video guard stands in for: a test run in a background job
    inherits SIGINT ignored (a shell's ``cmd &``), where the guard rightly stays out of the way."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_ctrl_c")
def test_ctrl_c_guard_holds_the_first_ctrl_c_while_workers_start_or_end_and_ignores_later_ones() -> None:
    from subpixel.video.pipeline import _CtrlCGuard

    try:
        with _CtrlCGuard() as guard:  # held: counted, raised by release()
            signal.raise_signal(signal.SIGINT)
            assert guard.hits == 1
            with pytest.raises(KeyboardInterrupt):
                guard.release()
            guard.hold()
            signal.raise_signal(signal.SIGINT)
            assert guard.hits == 2
        with _CtrlCGuard() as guard:  # released: the first raises, later ones are ignored
            guard.release()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert guard.hits == 2
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C got past the guard")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("python_ctrl_c")
def test_a_ctrl_c_held_while_a_finished_job_ends_stops_it_before_the_final_mux(
        clip: Path, up: subpixel.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subpixel.video import pipeline

    real_join = pipeline._Job._join

    def join(self, threads):
        signal.raise_signal(signal.SIGINT)  # held by the guard: raised once the workers have ended
        return real_join(self, threads)

    monkeypatch.setattr(pipeline._Job, "_join", join)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, tmp_path / "out.mp4", up, VideoOptions(segment_frames=10))
    monkeypatch.undo()
    assert not (tmp_path / "out.mp4").exists()
    summary = upscale_video(clip, tmp_path / "out.mp4", up, VideoOptions(segment_frames=10, resume=True))
    assert summary["frames"] == 50 and summary["processed_frames"] == 0


def test_real_double_ctrl_c_joins_every_worker(clip: Path, tmp_path: Path) -> None:
    """Two SIGINTs 50 ms apart, the second while the cleanup waits for a slow model call."""
    code = ("import os, signal, sys, threading, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background\n"
            "import subpixel\n"
            "from subpixel.video import UpscalerProcessor, VideoOptions, upscale_video\n"
            "class Slow(UpscalerProcessor):\n"
            "    def process(self, batch):\n"
            "        time.sleep(0.3)\n"
            "        return super().process(batch)\n"
            "def ctrl_c_twice(segment):\n"
            "    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.01)\n"
            "try:\n"
            "    upscale_video(sys.argv[1], sys.argv[2], Slow(subpixel.load('bicubic', scale=2)),\n"
            "                  VideoOptions(segment_frames=10, on_segment=ctrl_c_twice))\n"
            "except KeyboardInterrupt:\n"
            "    print('running:', sorted(t.name for t in threading.enumerate() if t.name.startswith('subpixel-')))\n")
    res = subprocess.run([sys.executable, "-c", code, str(clip), str(tmp_path / "out.mp4")], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert res.returncode == 0 and res.stdout == "running: []\n", res.stdout + res.stderr


@pytest.mark.parametrize(("codec", "pix_fmt", "output", "message"), [
    ("png", "gray", "seq", r"png cannot encode pixel format 'gray'; it takes rgb24, rgb48be"),
    ("rawvideo", "foo", "o.mkv", r"unknown pixel format 'foo'"),
])
def test_pixel_formats_the_writer_cannot_honour_are_refused(codec: str, pix_fmt: str, output: str, message: str,
                                                            clip: Path, up: subpixel.Upscaler, tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match=message):
        upscale_video(clip, tmp_path / output, up, VideoOptions(codec=codec, pix_fmt=pix_fmt))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("suffix", "codec", "hint"), [(".mkv", "libx264", False), (".avi", "mpeg4", True)])
def test_container_hint_suggests_mkv_only_when_it_is_not_mkv(suffix: str, codec: str, hint: bool,
                                                            tmp_path: Path) -> None:
    from subpixel.io.video_encode import resolve_encoder
    from subpixel.io.video_mux import check_container

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:  # a video frame and an MP4 text subtitle (mov_text: no Matroska codec ID)
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        subs = out.add_mux_stream("mov_text")
        subs.time_base = Fraction(1, 1000)
        frame = av.VideoFrame.from_ndarray(_pattern(0), format="rgb24").reformat(format="yuv420p")
        out.mux(v.encode(frame))
        out.mux(v.encode(None))
        packet = av.Packet(struct.pack(">H", 2) + b"hi")
        packet.pts = packet.dts = 0
        packet.duration, packet.time_base, packet.stream = 400, Fraction(1, 1000), subs
        out.mux(packet)
    with pytest.raises(SubpixelError, match=r"cannot hold input stream #1 \(subtitle, mov_text\)") as err:
        check_container(tmp_path / f"o{suffix}", resolve_encoder(codec, bitrate="1M"), W, H, probe(src))
    assert str(err.value).endswith("pick another output extension" + " (.mkv takes most)" * hint)


@pytest.mark.parametrize(("suffix", "codec"), [(".ts", "mpeg4"), (".mpg", "libx264"), (".vob", "mpeg4")])
def test_pairs_a_muxer_takes_but_writes_unplayable_are_refused_up_front(suffix: str, codec: str, clip: Path,
                                                                        tmp_path: Path) -> None:
    from subpixel.io.video_encode import resolve_encoder
    from subpixel.io.video_mux import check_container

    with pytest.raises(SubpixelError, match="not so that it can be read back; use a .mkv or .mp4 output"):
        check_container(tmp_path / f"o{suffix}", resolve_encoder(codec, bitrate="1M"), W, H, probe(clip))
    check_container(tmp_path / "o.ts", resolve_encoder("libx264", bitrate="1M"), W, H, probe(clip))  # H.264 fine


@pytest.mark.parametrize(("audio", "codec", "message"), [
    ("libopus", None, r"the mov container cannot hold input stream #1 \(audio, opus\) without re-encoding: .*opus.*; "
                      r"pick another output extension \(\.mkv takes most\)$"),
    pytest.param(None, "libvpx-vp9", r"the mov container cannot hold libvpx-vp9 video: .*vp9.*; pick another --codec",
                 marks=pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="no libvpx")),
])
def test_streams_a_muxer_refuses_only_as_it_writes_the_header_are_refused_before_any_work(
        audio: str | None, codec: str | None, message: str, up: subpixel.Upscaler, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", n=3, audio=audio)
    counting = Counting(up)
    with pytest.raises(SubpixelError, match=message):
        upscale_video(src, tmp_path / "o.mov", counting, VideoOptions(codec=codec))
    assert counting.frames == 0 and os.listdir(tmp_path) == ["in.mkv"]


@pytest.mark.parametrize("known", [True, False])
def test_the_stream_aspect_ratio_is_written_only_where_its_layout_is_known(known: bool, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    from fractions import Fraction

    from subpixel.io import video_encode

    if not known:
        monkeypatch.setattr(video_encode, "_AVSTREAM_LAYOUT_MAJORS", frozenset())
    with av.open(str(tmp_path / "o.mkv"), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        video_encode.set_sample_aspect_ratio(stream, Fraction(8, 9), tmp_path / "o.mkv")
        assert stream.sample_aspect_ratio == (Fraction(8, 9) if known else None)
    assert ("pixel aspect ratio" in caplog.text) != known


def _flat_ten_bit_clip(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """A lossless BT.709 limited-range 10-bit clip, one frame of each flat Y/U/V colour."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS, options={"qp": "0"})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        cc = vs.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1
        cc.color_range = 1
        for i, yuv in enumerate(colours):
            frame = av.VideoFrame(W, H, "yuv420p10le")
            for plane, value in zip(frame.planes, yuv):
                plane.update(np.full(plane.buffer_size // 2, value, np.uint16).tobytes())
            frame.colorspace, frame.color_range, frame.pts = 1, 1, i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def _yuv(frame: av.VideoFrame, mean: bool = False) -> list:
    """The values each plane holds (``mean``: their mean, rounded)."""
    size = 2 if frame.format.name.endswith("le") else 1
    planes = [np.frombuffer(bytes(p), f"<u{size}").reshape(-1, p.line_size // size)[:, :p.width] for p in frame.planes]
    return [round(float(p.mean())) if mean else np.unique(p).tolist() for p in planes]


@pytest.mark.skipif(not _x264_ten_bit(), reason="this FFmpeg build's libx264 has no 10-bit")
def test_deep_frames_decode_to_the_full_sixteen_bit_range_and_round_trip_exactly(up: subpixel.Upscaler,
                                                                                 tmp_path: Path) -> None:
    """swscale's YUV -> rgb48 tops out at 255 * 256: white must still be 65535 and colours exact, while the
    video written back holds the very same Y/U/V (and an 8-bit output, on average, a quarter of them)."""
    src = _flat_ten_bit_clip(tmp_path / "flat10.mkv", [(940, 512, 512), (464, 664, 380), (64, 512, 512)])
    info = probe(src)
    rgb = [info.color.to_rgb(f, True) for f in decode_frames(info)]
    assert [np.unique(x.reshape(-1, 3), axis=0).tolist() for x in rgb] == [
        [[65535] * 3], [[14720, 32362, 50554]], [[0] * 3]]  # exact: (464 - 64) / 876 etc. through BT.709
    upscale_video(src, tmp_path / "png", up)
    with av.open(str(tmp_path / "png" / "frame_000000.png")) as c:
        assert np.unique(next(c.decode(video=0)).to_ndarray(format="rgb48le")).tolist() == [65535]
    upscale_video(src, tmp_path / "ten.mkv", up, VideoOptions(codec="libx264", crf=0))
    upscale_video(src, tmp_path / "eight.mkv", up, VideoOptions(codec="libx264", crf=0, pix_fmt="yuv420p"))
    with av.open(str(tmp_path / "ten.mkv")) as ten, av.open(str(tmp_path / "eight.mkv")) as eight:
        assert [_yuv(f) for f in ten.decode(video=0)] == [[[940], [512], [512]], [[464], [664], [380]],
                                                          [[64], [512], [512]]]
        # swscale dithers down to 8 bits: on average a quarter
        assert [_yuv(f, mean=True) for f in eight.decode(video=0)] == [[235, 128, 128], [116, 166, 95], [16, 128, 128]]


def test_grey_keeps_its_black_and_white_levels(up: subpixel.Upscaler, tmp_path: Path) -> None:
    """swscale reads and writes grey as full range whatever the tag: a limited-range grey input (Y 16 and 235)
    keeps its black and white, and a grey output holds full-range levels tagged full range."""
    src = tmp_path / "grey.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("ffv1", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "gray"
        vs.codec_context.color_range = 1
        for i, level in enumerate((16, 235)):
            frame = av.VideoFrame(W, H, "gray")
            frame.planes[0].update(np.full(frame.planes[0].buffer_size, level, np.uint8).tobytes())
            frame.color_range, frame.pts = 1, i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    upscale_video(src, tmp_path / "yuv.mkv", up, VideoOptions(crf=0))
    upscale_video(src, tmp_path / "grey_x2.mkv", up, VideoOptions(crf=0, pix_fmt="gray"))
    with av.open(str(tmp_path / "yuv.mkv")) as yuv, av.open(str(tmp_path / "grey_x2.mkv")) as grey:
        assert [_yuv(f)[0] for f in yuv.decode(video=0)] == [[16], [235]]
        frames = list(grey.decode(video=0))
        assert [_yuv(f)[0] for f in frames] == [[0], [255]] and {f.color_range for f in frames} == {2}


def test_adts_aac_into_avi_is_refused_before_any_frame_is_decoded(up: subpixel.Upscaler, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """MPEG-TS carries AAC as ADTS, which FFmpeg's AVI muxer refuses only at the final mux; MKV and MP4 convert it."""
    src = make_clip(tmp_path / "in.ts", n=5)
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.name == "aac" and not c.streams.audio[0].codec_context.extradata
    import subpixel.video.pipeline as pipeline

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoding started")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "decode_frames", no_decoding)
        with pytest.raises(SubpixelError, match=r"avi container cannot hold input stream #1 \(audio, ADTS AAC.*\.mkv"):
            upscale_video(src, tmp_path / "o.avi", up, VideoOptions(codec="mpeg4"))
    assert not list(tmp_path.glob("o*")) and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    for suffix in (".mkv", ".mp4"):
        upscale_video(src, tmp_path / f"o{suffix}", up, VideoOptions(codec="mpeg4"))
        assert len(packets(tmp_path / f"o{suffix}", "audio")) == len(packets(src, "audio"))


def test_frames_lost_mid_stream_are_reported_as_timestamp_gaps(tmp_path: Path) -> None:
    """A constant-rate clip whose times skip a second (frames the demuxer dropped from damaged data)."""
    pts = [40 * i for i in range(10)] + [1400 + 40 * i for i in range(10)]  # 360 -> 1400 ms: 25 frames missing (1 s)
    src = make_clip(tmp_path / "gap.mkv", n=20, pts=pts, audio=None)
    result = CliRunner().invoke(cli, ["video", str(src), "-o", str(tmp_path / "o.mkv"), "-s", "2", "-m", "bicubic",
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["timestamp_gaps"], summary["missing_seconds"]) == (20, 1, 1.0)
    assert result.stderr.count("the video skips") == 1 and (
        f"{src}: the video skips 1.000 s in 1 gap between frame times (frames lost to damaged data?)") in result.stderr


def test_timestamp_gaps_and_drift_before_an_interruption_are_reported_after_resume(
        up: subpixel.Upscaler, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The gap lies in a finished segment; the resumed decode starts at the keyframe after it."""
    pts = [40 * i for i in range(10)] + [1400 + 40 * i for i in range(10)]
    src = make_clip(tmp_path / "gap.mkv", n=20, pts=pts, audio=None, gop=5)
    out = tmp_path / "o.avi"

    def stop(segment) -> None:
        if segment.index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, out, up, VideoOptions(codec="mpeg4", segment_frames=5, on_segment=stop))
    with caplog.at_level("WARNING"):
        summary = upscale_video(src, out, up, VideoOptions(codec="mpeg4", segment_frames=5, resume=True))
    assert (summary["resumed_frames"], summary["timestamp_gaps"], summary["missing_seconds"]) == (15, 1, 1.0)
    assert sum("AVI cannot keep variable frame timing" in r.getMessage() for r in caplog.records) == 1


def test_variable_frame_rate_holds_are_no_timestamp_gaps(up: subpixel.Upscaler, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    steps = [40, 40, 200, 20, 40, 300, 33, 47, 40, 500] * 2  # stills held far over three frame durations
    src = make_clip(tmp_path / "vfr.mkv", n=20, pts=np.cumsum([0] + steps)[:20].tolist(), audio=None)
    with caplog.at_level("WARNING"):
        summary = upscale_video(src, tmp_path / "o.mkv", up)
    assert (summary["frames"], summary["timestamp_gaps"], summary["missing_seconds"]) == (20, 0, 0.0)
    assert not caplog.records


@pytest.mark.parametrize(("suffix", "codec"), [(".mpg", "mpeg2video"), (".mkv", "mpeg1video"), (".mkv", "mjpeg")])
def test_mpeg_1_2_and_mjpeg_encode_with_their_defaults(suffix: str, codec: str, up: subpixel.Upscaler,
                                                      tmp_path: Path) -> None:
    """MPEG-1/2 take a time base of one frame, MJPEG full-range yuvj420p: neither opened with the defaults."""
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} in this FFmpeg build")
    src = make_clip(tmp_path / "in.mp4", n=6, audio=None)
    upscale_video(src, tmp_path / f"out{suffix}", up, VideoOptions(codec=codec))
    with av.open(str(tmp_path / f"out{suffix}")) as out:
        frames = list(out.decode(video=0))
        assert len(frames) == 6 and out.streams.video[0].codec_context.name == codec
        assert (frames[0].width, frames[0].height) == (2 * W, 2 * H)


def test_variable_timing_put_on_mpeg_2s_one_frame_grid_is_warned_of(up: subpixel.Upscaler, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    if "mpeg2video" not in av.codecs_available:
        pytest.skip("no mpeg2video in this FFmpeg build")
    burst = make_clip(tmp_path / "burst.mkv", n=20, pts=[10 * i for i in range(10)] + [140 + 40 * i for i in range(10)],
                      audio=None)
    gap = make_clip(tmp_path / "gap.mkv", n=20, pts=[40 * i for i in range(10)] + [1400 + 40 * i for i in range(10)],
                    audio=None)
    with caplog.at_level("WARNING"):
        upscale_video(burst, tmp_path / "o.mkv", up, VideoOptions(codec="mpeg2video"))
        upscale_video(burst, tmp_path / "o264.mkv", up, VideoOptions())
        upscale_video(gap, tmp_path / "gap2.mkv", up, VideoOptions(codec="mpeg2video", segment_frames=5))
    warned = [r.getMessage() for r in caplog.records if "cannot keep variable frame timing" in r.getMessage()]
    assert len(warned) == 1 and "o.mkv: MPEG-1/2 video cannot" in warned[0]  # H.264 keeps the times
    assert "up to 0.2" in warned[0]  # the burst's 10 ms steps put on 40 ms slots: the last 0.27 s late
    with av.open(str(tmp_path / "gap2.mkv")) as out:  # a gap stays a gap, on the frame slots: no warning
        assert [round(float(f.time), 2) for f in out.decode(video=0)][9:11] == [0.36, 1.4]
