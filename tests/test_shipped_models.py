"""Every shipped model's card matches its weights: Set5 recomputed on the CPU within 0.01 dB."""

from __future__ import annotations

from pathlib import Path

import pytest

import subpixel
from subpixel.eval import evaluate
from subpixel.models.weights import shipped_models

SHIPPED = shipped_models()
REQUIRED_CARD_KEYS = ("name", "architecture", "arch_args", "scale", "params", "training", "metrics")


@pytest.mark.parametrize("model", SHIPPED, ids=[f"{m.name}_x{m.scale}" for m in SHIPPED])
def test_card_is_complete(model) -> None:
    for key in REQUIRED_CARD_KEYS:
        assert key in model.card, key
    training = model.card["training"]
    for key in ("data", "recipe", "iterations", "wall_minutes", "device", "torch"):
        assert key in training, key
    assert "seed" in training["recipe"] and "sha256" in str(training["data"]).lower()
    assert model.card["params"] == subpixel.load(model.weights).net.num_parameters()


@pytest.mark.parametrize("model", SHIPPED, ids=[f"{m.name}_x{m.scale}" for m in SHIPPED])
def test_set5_matches_card(model, shared_data: Path) -> None:
    card = model.card["metrics"]["Set5"]
    res = evaluate(subpixel.load(model.weights, device="cpu", engine="torch"), shared_data / "benchmarks" / "Set5")
    assert abs(res.psnr - card["psnr"]) <= 0.01, (res.psnr, card["psnr"])
    assert abs(res.ssim - card["ssim"]) <= 0.0005, (res.ssim, card["ssim"])


def test_auto_loads_the_best_shipped_model_at_the_scale() -> None:
    for scale in sorted({m.scale for m in SHIPPED}):
        at_scale = [m for m in SHIPPED if m.scale == scale]
        best = max(at_scale, key=lambda m: m.card["metrics"]["Set5"]["psnr"])
        assert subpixel.load("auto", scale=scale, device="cpu", engine="torch").name == best.name
    assert subpixel.load("AUTO", scale=7, device="cpu").name == "bicubic"  # nothing ships at x7
