"""Export a run's best weights as ``.safetensors`` with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet
from subpixel.models.registry import build
from subpixel.models.weights import card_path, is_weights_path, read_card, save_weights
from subpixel.train.checkpoint import BEST, CHECKPOINT_DIR, latest_checkpoint, load_checkpoint
from subpixel.train.config import parse_config
from subpixel.train.monitor import THROUGHPUT_FILE, overall_throughput, read_sessions

__all__ = ["export_best"]


def export_best(run_dir: Path, path: Path, notes: str | None = None) -> Path:
    """Write the run's best validated weights (the EMA when enabled) and their card to ``path``.

    A run that never validated exports its last checkpoint (EMA weights when enabled). The card
    holds the architecture, its arguments, scale, parameter count, the training provenance, the run's
    measured speed (``throughput.json``) and ``notes`` (default: the recipe's); ``metrics`` is left
    empty for the evaluation to fill in, unless ``path`` already holds these very weights (a re-export),
    whose measured metrics are kept.
    """
    run_dir, path = Path(run_dir), Path(path)
    if not is_weights_path(path):
        raise SubpixelError(f"export path must end in .safetensors, got {path.name}")
    best_file = run_dir / CHECKPOINT_DIR / BEST
    if best_file.is_file():
        ckpt = load_checkpoint(best_file)
        weights, validation = ckpt["weights"], {"psnr_y": ckpt["psnr"], "ssim_y": ckpt["ssim"]}
    else:
        last = latest_checkpoint(run_dir)
        if last is None:
            raise SubpixelError(f"no checkpoint in {run_dir} to export")
        ckpt = load_checkpoint(last)
        weights, validation = ckpt["ema"] if ckpt["ema"] is not None else ckpt["model"], None
    cfg = parse_config(ckpt["config"])
    net = build(cfg.model.name, cfg.model.scale, **cfg.model.args)
    net.load_state_dict(weights)
    net = net.deploy().eval()
    meta: dict[str, Any] = dict(ckpt["meta"])
    card = {
        "name": cfg.model.name,
        "architecture": cfg.model.name,
        "arch_args": getattr(net, "arch_args", cfg.model.args),
        "scale": cfg.model.scale,
        "params": net.num_parameters(),
        "training": {
            "data": meta.pop("data"),
            "recipe": ckpt["config"],
            "iterations": ckpt["iteration"],
            "wall_minutes": round(ckpt["wall_seconds"] / 60, 2),
            "ema": cfg.train.ema > 0,
            "validation": validation,
            **meta,
        },
        "metrics": {},
    }
    sessions = read_sessions(run_dir / THROUGHPUT_FILE)
    if sessions:
        card["training"]["throughput"] = overall_throughput(sessions)
    notes = cfg.notes if notes is None else notes
    if notes:
        card["notes"] = notes
    card["metrics"] = _metrics_of_same_weights(path, net)
    save_weights(net, path, card)
    return path


def _metrics_of_same_weights(path: Path, net: SRNet) -> dict[str, Any]:
    """The measured metrics of the card at ``path`` when its weights are ``net``'s (a re-export), else none."""
    if not (path.is_file() and card_path(path).is_file()):
        return {}
    try:
        old, metrics = load_file(str(path)), read_card(path).get("metrics", {})
    except Exception:  # an unreadable earlier export is simply replaced
        return {}
    new = net.state_dict()
    same = old.keys() == new.keys() and all(torch.equal(old[k], new[k].cpu()) for k in new)
    return metrics if same else {}
