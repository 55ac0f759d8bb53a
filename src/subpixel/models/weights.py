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

from subpixel.errors import SubpixelError, first_line
from subpixel.io.atomic import write_atomic
from subpixel.models.base import SRNet
from subpixel.models.registry import architectures, build

__all__ = ["ShippedModel", "shipped_models", "find_shipped", "card_path", "read_card", "load_net", "save_weights",
           "state_dict_on_cpu", "is_weights_path", "check_state", "WEIGHTS_DIR"]

WEIGHTS_DIR = Path(str(resources.files("subpixel") / "weights"))


def is_weights_path(name: str | Path) -> bool:
    """Whether ``name`` names a ``.safetensors`` weights file (by its suffix, in any case), not a model name."""
    return Path(name).suffix.lower() == ".safetensors"


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
    """Parse the card of ``weights`` (clear error when absent or malformed, see :func:`_check_card`)."""
    path = card_path(weights)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubpixelError(f"no model card {path.name} beside {weights}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubpixelError(f"model card {path} is not valid JSON: {err}") from None
    _check_card(card, path)
    return card


def _check_card(card: object, path: Path) -> None:
    """Refuse a card that is not an object with a registered ``architecture`` name, a positive whole ``scale``
    (made an int) and, if present, an object of ``arch_args``."""
    if not isinstance(card, dict):
        raise SubpixelError(f"model card {path} must be a JSON object, not {type(card).__name__}")
    for key in ("architecture", "scale"):
        if key not in card:
            raise SubpixelError(f"model card {path} lacks {key!r}")
    arch, scale = card["architecture"], card["scale"]
    known = architectures()
    if not isinstance(arch, str) or arch not in known:
        raise SubpixelError(f"model card {path}: architecture must be one of {', '.join(sorted(known))}, "
                            f"got {arch!r}")
    digits = scale.strip() if isinstance(scale, str) else ""
    whole = (isinstance(scale, int) and not isinstance(scale, bool)) or (
        isinstance(scale, float) and scale.is_integer()) or (digits.isascii() and digits.isdecimal())
    if not whole or int(scale) < 1:
        raise SubpixelError(f"model card {path}: scale must be a positive integer, got {scale!r}")
    card["scale"] = int(scale)  # 2.0 or "2" from other tools read as 2, as before cards were checked
    if not isinstance(card.get("arch_args", {}), dict):
        raise SubpixelError(f"model card {path}: arch_args must be a JSON object, got {card['arch_args']!r}")


def shipped_models() -> list[ShippedModel]:
    """Every ``<name>_x<scale>.safetensors`` with a card in the package's weights folder."""
    found = []
    for w in sorted(WEIGHTS_DIR.glob("*.safetensors")):
        card = read_card(w)
        found.append(ShippedModel(card.get("name", w.stem.rsplit("_x", 1)[0]), card["scale"], w, card))
    return found


def find_shipped(name: str, scale: int) -> ShippedModel | None:
    """The shipped model ``name`` at ``scale``, if the package has it."""
    return next((m for m in shipped_models() if m.name == name and m.scale == scale), None)


def load_net(weights: Path, card: dict[str, Any] | None = None) -> tuple[SRNet, dict[str, Any]]:
    """Build the card's architecture and load ``weights`` into it (every tensor present, shaped, finite)."""
    card = card or read_card(weights)
    net = _build(card, weights)
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own types for corrupt headers
        raise SubpixelError(f"cannot read weights {weights}: {err}") from None
    check_state(net.state_dict(), state, f"weights {weights} do not fit {card['architecture']} x{net.scale}")
    net.load_state_dict(state)
    return net.eval(), card


def _build(card: dict[str, Any], weights: Path) -> SRNet:
    """The card's network; a builder's complaint about its arguments is a user error naming the card."""
    args = card.get("arch_args", {})
    try:
        return build(card["architecture"], card["scale"], **args)
    except Exception as err:  # builders raise TypeError/ValueError for arguments they do not take
        raise SubpixelError(f"model card {card_path(weights)}: cannot build {card['architecture']} "
                            f"x{card['scale']}: {first_line(err)}") from err


def check_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], unfit: str,
                optional: tuple[str, ...] = ()) -> None:
    """Raise ``unfit`` plus the first tensor of ``state`` that is missing, extra, misshapen, not floating point
    where ``own``'s is, or not finite in ``own``'s dtype (what it will hold once loaded). Tensors of ``own``
    whose names start with a prefix in ``optional`` may be missing (they keep their own values)."""
    for key, ref in own.items():
        tensor = state.get(key)
        if tensor is None:
            if key.startswith(optional):
                continue
            raise SubpixelError(f"{unfit}: tensor {key} is missing")
        if tensor.shape != ref.shape:
            raise SubpixelError(f"{unfit}: tensor {key} has shape {list(tensor.shape)}, not {list(ref.shape)}")
        if ref.dtype.is_floating_point and not tensor.dtype.is_floating_point:
            raise SubpixelError(f"{unfit}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')}, "
                                "not floating point")
        loaded = tensor.to(ref.dtype) if ref.dtype.is_floating_point else tensor  # float8 has no isfinite
        if loaded.dtype.is_floating_point and not bool(torch.isfinite(loaded).all()):
            raise SubpixelError(f"{unfit}: tensor {key} holds non-finite values (NaN or infinity)")
    extra = next((key for key in state if key not in own), None)
    if extra is not None:
        raise SubpixelError(f"{unfit}: unexpected tensor {extra}")


def save_weights(net: SRNet, path: Path, card: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) and its card atomically, with the permissions of any new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_atomic(path, save(state))
    write_atomic(card_path(path), json.dumps(card, indent=2) + "\n")


def state_dict_on_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
