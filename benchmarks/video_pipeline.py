"""End-to-end throughput of `subpixel video` (decode + SR + encode), overall and per stage.

Makes a synthetic H.264 clip (a camera pan over a textured picture, so the encoder sees
photo-like content), upscales it with the real pipeline and records what each stage did:
busy seconds and frames/s for decode, SR (host-to-device, model, device-to-host), RGB -> YUV
conversion and encode, plus the wall-clock frames/s of the whole job. Writes JSON and markdown under
``benchmarks/results/``. Issue #5 asks for 1920x1080 x2 with ESPCN on the H100:

    python benchmarks/video_pipeline.py --device cuda --precision fp16 --batch 8 --preset veryfast
    python benchmarks/video_pipeline.py --width 640 --height 360 --frames 30   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from subpixel.models.loader import load
from subpixel.video.pipeline import VideoOptions, upscale_video

RESULTS = Path(__file__).resolve().parent / "results"


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> None:
    """Write ``frames`` frames of a 2-pixel-per-frame pan over a textured canvas as H.264 CRF 18."""
    rng = np.random.default_rng(0)
    canvas_w = width + 2 * frames + 16
    coarse = rng.random((height // 24 + 2, canvas_w // 24 + 2, 3)).astype(np.float32)
    canvas = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None],
                                             size=(height, canvas_w), mode="bicubic", align_corners=False)[0]
    fine = torch.from_numpy(rng.random((1, height, canvas_w)).astype(np.float32))
    canvas = (0.85 * canvas + 0.15 * fine).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas[:, 2 * i:2 * i + width]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def device_name(device: str) -> str:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def to_markdown(record: dict) -> str:
    lines = [f"# subpixel video throughput, {record['width']}x{record['height']} x{record['scale']} "
             f"({record['timestamp']})", "",
             f"Device: {record['device']}; torch {record['torch']}; model {record['model']} "
             f"({record['weights']}), engine {record['engine']}, precision {record['precision']}, "
             f"batch {record['batch']}; encoder {record['codec']} {record['pix_fmt']} {record['encoder_options']}.",
             "", f"Command: `{record['command']}`", "",
             f"End to end: **{record['fps']} frames/s** ({record['frames']} frames in {record['seconds']} s, "
             f"output {record['out_width']}x{record['out_height']}).", "",
             "| stage | busy s | frames/s while busy |", "|---|---|---|"]
    for name, stage in record["stages"].items():
        lines.append(f"| {name} | {stage['seconds']} | {stage['fps']} |")
    lines += ["", "Stages run in parallel threads joined by bounded queues, so the slowest stage bounds the "
              "end-to-end rate; `sr` includes host-to-device and device-to-host copies, `convert` is RGB -> YUV "
              "for the encoder (the frames of a batch in parallel)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--preset", default="veryfast", help="x264 preset of the output")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    upscaler = load(args.model, scale=args.scale, device=args.device, precision=args.precision, engine=args.engine)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        t0 = time.perf_counter()
        make_clip(src, args.width, args.height, args.frames)
        print(f"made a {args.width}x{args.height} clip of {args.frames} frames in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        summary = upscale_video(src, dst, upscaler, VideoOptions(preset=args.preset, batch=args.batch,
                                                                 progress=True))
    record = {
        "timestamp": datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "device": device_name(args.device), "torch": torch.__version__, "pyav": av.__version__,
        "model": args.model, "weights": "shipped" if upscaler.card else "none", "engine": upscaler.engine.name,
        "precision": args.precision, "batch": args.batch, "width": args.width, "height": args.height,
        "scale": args.scale, "out_width": summary["width"], "out_height": summary["height"],
        "frames": summary["frames"], "seconds": summary["seconds"], "fps": summary["fps"],
        "codec": summary["codec"], "pix_fmt": summary["pix_fmt"], "encoder_options": summary["encoder_options"],
        "stages": summary["stages"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    kind = upscaler.device.type
    stem = args.out / f"video_pipeline_{kind}_{args.width}x{args.height}x{args.scale}_{datetime.now():%Y%m%d-%H%M%S}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(to_markdown(record))
    print(to_markdown(record))


if __name__ == "__main__":
    main()
