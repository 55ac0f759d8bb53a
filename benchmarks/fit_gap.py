"""Does a shipped model fit its own training images better than the images held out of training?

For each model, the Y-PSNR gain over bicubic (default protocol) on a spread sample of its training
images and on its validation slice, both read from the model card. A train gain well above the
held-out gain means the model memorises its 491 images (more data or augmentation would pay); equal
gains mean capacity or training length, not data, limit it. Writes JSON and markdown under
``benchmarks/results/``.

    python benchmarks/fit_gap.py espcn:3 espcn:4 sesr-xl:4 sprint:4 [--train-sample 40]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

import subpixel
from subpixel.data.pairs import split_images
from subpixel.eval.protocol import load_hr, make_lr, modcrop, score
from subpixel.train.config import resolve_data_folder

RESULTS = Path(__file__).resolve().parent / "results"


def mean_gain(model: subpixel.Upscaler, paths: list[Path], scale: int) -> float:
    """Mean Y-PSNR gain of ``model`` over MATLAB bicubic on ``paths`` (each scored as in evaluation)."""
    bicubic = subpixel.load("bicubic", scale=scale)
    gains = []
    for path in paths:
        hr = modcrop(load_hr(path), scale)
        lr = make_lr(hr, scale)
        gains.append(score(model.upscale(lr), hr, scale)[0] - score(bicubic.upscale(lr), hr, scale)[0])
    return float(np.mean(gains))


def fit_gap(name: str, scale: int, sample: int) -> dict:
    """Gains on ``sample`` training images (evenly spread) and on the card's validation slice."""
    model = subpixel.load(name, scale=scale, device="cpu")
    data = model.card["training"]["data"]
    split = split_images([resolve_data_folder(f) for f in data["folders"]], val_names=data["val_images"])
    train = split.train[:: max(1, len(split.train) // sample)][:sample]
    return {"model": name, "scale": scale, "train_images": len(train), "val_images": len(split.val),
            "train_gain_db": mean_gain(model, train, scale), "val_gain_db": mean_gain(model, split.val, scale)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="shipped models as NAME:SCALE, e.g. espcn:4")
    parser.add_argument("--train-sample", type=int, default=40, help="training images scored (default 40)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for spec in args.models:
        name, scale = spec.rsplit(":", 1)
        rows.append(fit_gap(name, int(scale), args.train_sample))
        print(json.dumps(rows[-1]))
    stem = f"fit_gap_cpu_{date.today().isoformat()}"
    meta = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "command": "python benchmarks/fit_gap.py " + " ".join(args.models)
            + (f" --train-sample {args.train_sample}" if args.train_sample != 40 else "")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Fit gap: gain over bicubic on training vs held-out images ({date.today().isoformat()})", "",
             f"`{meta['command']}` (torch {meta['torch']}, CPU). Y-PSNR gain over MATLAB bicubic, default protocol.",
             "", "| model | training images | gain (dB) | held-out images | gain (dB) | train - held-out |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} x{r['scale']} | {r['train_images']} | {r['train_gain_db']:.3f} | "
                     f"{r['val_images']} | {r['val_gain_db']:.3f} | {r['train_gain_db'] - r['val_gain_db']:+.3f} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / stem}.{{json,md}}")


if __name__ == "__main__":
    main()
