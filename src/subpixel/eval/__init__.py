"""Evaluation: the field's PSNR/SSIM protocols over benchmark sets."""

from subpixel.eval.datasets import STANDARD_SETS, resolve_dataset
from subpixel.eval.metrics import psnr, shave, ssim
from subpixel.eval.protocol import PROTOCOLS, SetResult, evaluate, make_lr, modcrop, score

__all__ = ["STANDARD_SETS", "PROTOCOLS", "SetResult", "evaluate", "make_lr", "modcrop", "psnr", "resolve_dataset",
           "score", "shave", "ssim"]
