"""Cross-check of the evaluation protocol against an independent NumPy reference.

The reference below is written from MATLAB's documented algorithms, not from :mod:`subpixel`'s code:
``imresize`` (bicubic, antialiased when shrinking, symmetric padding) as one dense interpolation matrix per
axis (so its summation order differs), ``rgb2ycbcr``'s Y, PSNR, and SSIM as Wang et al.'s ``ssim_index``
(11x11 Gaussian window, sigma 1.5, 'valid' filtering). For every image of each set and scale it compares the
LR and bicubic SR pixels and the per-image Y-PSNR/SSIM with ``subpixel.eval`` (default protocol: grey images
as R=G=B), and prints the set means of both.

    python benchmarks/eval_crosscheck.py [--sets Set5,Set14] [--scales 2,3,4] [--data ../shared/data/benchmarks]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from subpixel.eval.datasets import dataset_images
from subpixel.eval.protocol import evaluate, make_lr
from subpixel.models.loader import load


def cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def axis_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """``(n_out, n_in)`` matrix of one axis: output = matrix @ input (MATLAB's contributions, mirrored edges)."""
    shrink = scale < 1
    width = 4.0 / scale if shrink else 4.0
    taps = math.ceil(width) + 2
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    m = np.zeros((n_out, n_in))
    for j in range(n_out):
        u = (j + 1) / scale + 0.5 * (1 - 1 / scale)  # MATLAB's 1-based output coordinate in the input
        ks = np.arange(math.floor(u - width / 2), math.floor(u - width / 2) + taps)
        w = scale * cubic(scale * (u - ks)) if shrink else cubic(u - ks)
        np.add.at(m[j], mirror[np.mod(ks - 1, 2 * n_in)], w / w.sum())
    return m


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` of a uint8 ``(H, W, 3)`` image: rounded to uint8 after each pass."""
    x = img.astype(np.float64)
    for axis in (0, 1):  # equal scales: height first, as MATLAB does
        m = axis_matrix(x.shape[axis], math.ceil(scale * x.shape[axis] - 1e-9), scale)
        x = np.moveaxis(np.tensordot(m, np.moveaxis(x, axis, 0), axes=(1, 0)), 0, axis)
        x = np.clip(np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5)), 0, 255)
    return x.astype(np.uint8)


def y_channel(rgb: np.ndarray) -> np.ndarray:
    r = rgb.astype(np.float64) / 255
    return 16 + 65.481 * r[..., 0] + 128.553 * r[..., 1] + 24.966 * r[..., 2]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a - b) ** 2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    r = np.arange(11) - 5
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(x: np.ndarray) -> np.ndarray:
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(x, g.shape), g)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--data", default="../shared/data/benchmarks", help="folder holding the sets")
    args = parser.parse_args()
    for name in args.sets.split(","):
        for s in map(int, args.scales.split(",")):
            model = load("bicubic", scale=s, device="cpu")
            ours = {r.name: r for r in evaluate(model, Path(args.data) / name).images}
            lr_px = sr_px = 0
            d_psnr = d_ssim = 0.0
            ref = []
            for path in dataset_images(Path(args.data) / name):
                with Image.open(path) as im:
                    hr = np.asarray(im.convert("RGB"))
                hr = hr[: hr.shape[0] - hr.shape[0] % s, : hr.shape[1] - hr.shape[1] % s]
                lr, lr_ours = imresize(hr, 1 / s), make_lr(hr, s)
                sr = imresize(lr, s)
                lr_px += int((lr != lr_ours).sum())
                sr_px += int((sr != model.upscale(lr_ours)).sum())
                a, b = y_channel(sr)[s:-s, s:-s], y_channel(hr)[s:-s, s:-s]
                ref.append((psnr(a, b), ssim(a, b)))
                d_psnr = max(d_psnr, abs(ref[-1][0] - ours[path.stem].psnr))
                d_ssim = max(d_ssim, abs(ref[-1][1] - ours[path.stem].ssim))
            mean = np.mean(ref, axis=0)
            print(f"{name} x{s}: reference {mean[0]:.4f} / {mean[1]:.5f}; pixels differing: LR {lr_px}, SR {sr_px}; "
                  f"max |dPSNR| {d_psnr:.1e} dB, max |dSSIM| {d_ssim:.1e}", flush=True)


if __name__ == "__main__":
    main()
