"""How well does an FRVSR model's FNet estimate motion? End-point error against the exact flow.

Synthetic training clips know their camera motion (:func:`subpixel.data.clips.exact_flow`), so FNet's
LR flow can be scored directly: mean end-point error (LR pixels, 4-pixel border left out) over
``--clips`` clips, beside the error of the estimate FNet refines (Lucas-Kanade, or zero motion for an
FNet built with ``lk_levels=0``) and of predicting no motion at all. An FNet no better than zero flow
feeds the SR network a misaligned previous estimate.

    python benchmarks/frvsr_flow_epe.py runs/frvsr_x4/frvsr_x4.safetensors [--clips 40] [--data DIR]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import subpixel
from subpixel.data.clips import ClipSampler, Motion, exact_flow
from subpixel.models.frvsr import FRVSR
from subpixel.train.config import resolve_data_folder


def flow_epe(net: FRVSR, data: str, clips: int, frames: int = 10, lr_size: int = 32, seed: int = 123) -> dict:
    """Mean EPE of ``net.fnet``, of its initial estimate and of zero flow on ``clips`` clips from ``data``."""
    if net.fnet is None:
        raise SystemExit("this FRVSR has no FNet (an ablation)")
    s = net.scale
    sampler = ClipSampler([resolve_data_folder(data)], frames, lr_size * s, s, Motion(), seed)
    learned, initial, still_err = [], [], []
    inner = (slice(None), slice(4, -4), slice(4, -4))
    for step in range(clips):
        lr, _, affines = sampler.batch_with_affines(step, 1)
        lr = lr[0].float() / 255
        truth = exact_flow(affines[0], lr_size, s)
        with torch.no_grad():
            est = net.fnet(lr[1:], lr[:-1])
            init = net.fnet.initial_flow(lr[1:], lr[:-1])
        learned.append(float((est - truth).norm(dim=1)[inner].mean()))
        initial.append(float((init - truth).norm(dim=1)[inner].mean()))
        still_err.append(float(truth.norm(dim=1)[inner].mean()))
    return {"clips": clips, "fnet_epe": float(np.mean(learned)), "initial_epe": float(np.mean(initial)),
            "zero_flow_epe": float(np.mean(still_err))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="an FRVSR .safetensors file")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--data", default="../shared/data/train/BSD200", help="folder of stills")
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = subpixel.load(args.weights, device="cpu").net.eval()
    if not isinstance(net, FRVSR):
        raise SystemExit(f"{args.weights} is not an FRVSR model")
    print(json.dumps({"weights": args.weights, "data": args.data, **flow_epe(net, args.data, args.clips)}))


if __name__ == "__main__":
    main()
