"""Weights (``.safetensors``) and model cards (JSON beside them); shipped-weights discovery.

A model card holds at least ``name``, ``architecture``, ``arch_args``, ``scale``; trained models
add ``params``, ``training`` and ``metrics``. Loading uses safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from subpixel.errors import SubpixelError
from subpixel.io.atomic import write_atomic
from subpixel.models.base import SRNet
from subpixel.models.registry import build

__all__ = ["ShippedModel", "shipped_models", "find_shipped", "card_path", "read_card", "load_net", "save_weights",
           "state_dict_on_cpu", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(str(resources.files("subpixel") / "weights"))


@dataclass(frozen=True)
class ShippedModel:
    """A model whose weights ship inside the package."""

    name: str
    scale: int
    weights: Path
    card: dict[str, Any]


def card_path(weights: Path) -> Path:
    """The model card beside a weights file."""
    return weights.with_suffix(".json")


def read_card(weights: Path) -> dict[str, Any]:
    """Parse the card of ``weights`` (clear error when absent or malformed)."""
    path = card_path(weights)
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise SubpixelError(f"no model card {path.name} beside {weights}") from None
    except json.JSONDecodeError as err:
        raise SubpixelError(f"model card {path} is not valid JSON: {err}") from None
    for key in ("architecture", "scale"):
        if key not in card:
            raise SubpixelError(f"model card {path} lacks {key!r}")
    return card


def shipped_models() -> list[ShippedModel]:
    """Every ``<name>_x<scale>.safetensors`` with a card in the package's weights folder."""
    found = []
    for w in sorted(WEIGHTS_DIR.glob("*.safetensors")):
        card = read_card(w)
        found.append(ShippedModel(card.get("name", w.stem.rsplit("_x", 1)[0]), int(card["scale"]), w, card))
    return found


def find_shipped(name: str, scale: int) -> ShippedModel | None:
    """The shipped model ``name`` at ``scale``, if the package has it."""
    return next((m for m in shipped_models() if m.name == name and m.scale == scale), None)


def load_net(weights: Path, card: dict[str, Any] | None = None) -> tuple[SRNet, dict[str, Any]]:
    """Build the card's architecture and load ``weights`` into it (strict)."""
    card = card or read_card(weights)
    net = build(card["architecture"], int(card["scale"]), **card.get("arch_args", {}))
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own types for corrupt headers
        raise SubpixelError(f"cannot read weights {weights}: {err}") from None
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SubpixelError(f"weights {weights} do not fit {card['architecture']}: "
                            f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return net.eval(), card


def save_weights(net: SRNet, path: Path, card: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) and its card atomically, with the permissions of any new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_atomic(path, save(state))
    write_atomic(card_path(path), json.dumps(card, indent=2) + "\n")


def state_dict_on_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
