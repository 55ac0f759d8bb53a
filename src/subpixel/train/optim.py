"""Optimizers and the learning-rate schedule (a pure function of the iteration, so it resumes exactly)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from subpixel.train.config import OptimConfig, ScheduleConfig

__all__ = ["OPTIMIZERS", "build_optimizer", "learning_rate"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named in ``cfg`` over ``params``."""
    return OPTIMIZERS[cfg.name](params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def learning_rate(step: int, total: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """Learning rate for 0-based ``step`` of ``total``: linear warmup, then the named schedule."""
    if step < cfg.warmup:
        return base_lr * (step + 1) / cfg.warmup
    if cfg.name == "cosine":
        progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "multistep":
        return base_lr * cfg.gamma ** sum(step >= m for m in cfg.milestones)
    return base_lr
