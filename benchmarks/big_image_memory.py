"""Peak memory of `subpixel upscale` on a 20-megapixel input, x2, on the CPU (80-megapixel output).

Runs the real CLI in a child process and reads the child's peak RSS (``ru_maxrss``).
The model is ESPCN with random weights unless ``--model`` names a shipped or weights-file model
(speed and memory do not depend on the weight values). Writes JSON and markdown under
``benchmarks/results/``.

    python benchmarks/big_image_memory.py [--width 5472 --height 3648] [--format tiff] [--model espcn]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"

RUNNER = """
import sys, subpixel.models.loader as L
from subpixel.cli import main
if sys.argv[1] == "random":
    orig = L.load
    L.load = lambda name, **kw: orig(name, pretrained=False, **kw)
    import subpixel.commands.upscale as U
    U.load = L.load
sys.argv = ["subpixel"] + sys.argv[2:]
main()
"""


def synthetic_photo(width: int, height: int) -> np.ndarray:
    """A smooth, textured test image (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    arr = np.asarray(img).copy()
    arr[::7] = arr[::7] // 2 + 64  # fine detail
    return arr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=5472)
    ap.add_argument("--height", type=int, default=3648)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--format", default="tiff", choices=["tiff", "png"])
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--random-weights", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.png"
        Image.fromarray(synthetic_photo(args.width, args.height)).save(src, compress_level=1)
        dst = Path(tmp) / f"out.{args.format}"
        cmd = [sys.executable, "-c", RUNNER, "random" if args.random_weights else "shipped", "upscale", str(src),
               "-s", str(args.scale), "-m", args.model, "-o", str(dst), "--device", "cpu", "-q", "--json"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"upscale failed:\n{proc.stderr}")
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(proc.stdout)
        with Image.open(dst) as im:
            out_size = im.size
    result = {
        "benchmark": "big-image peak RSS", "date": date.today().isoformat(),
        "command": " ".join(["python", "benchmarks/big_image_memory.py", *sys.argv[1:]]),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "model": args.model, "random_weights": args.random_weights,
        "input_px": [args.width, args.height], "input_megapixels": round(args.width * args.height / 1e6, 1),
        "output_px": list(out_size), "output_megapixels": round(out_size[0] * out_size[1] / 1e6, 1),
        "format": args.format, "tile": summary["outputs"][0].get("tile"),
        "peak_rss_gib": round(peak_kib / 2**20, 3), "limit_gib": 4.0, "wall_seconds": round(seconds, 1),
    }
    result["pass"] = result["peak_rss_gib"] < result["limit_gib"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"big_image_memory_cpu_{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    weights = " (random weights)" if args.random_weights else ""
    stem.with_suffix(".md").write_text(
        f"# Big-image memory (CPU)\n\nCommand: `{result['command']}`\n\n| input | output | model | tile | peak RSS | "
        f"limit | wall |\n|---|---|---|---|---|---|---|\n| {result['input_megapixels']} MP | "
        f"{result['output_megapixels']} MP {args.format} | {args.model}{weights}"
        f" | {result['tile']} | {result['peak_rss_gib']} GiB | < 4 GiB | {result['wall_seconds']} s |\n"
        f"\nDevice: {result['device']}, torch {result['torch']}.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
