"""Warm starts: a run that begins from earlier weights (``model.init`` in a recipe) instead of random ones."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet
from subpixel.models.weights import card_path, check_state, read_card
from subpixel.train.config import ConfigError, resolve_weights_file

__all__ = ["warm_start", "warn_if_init_changed"]


# arguments that choose a form of the same function (training vs folded, recurrent vs its ablation)
_FORM_ARGS = {"collapsed", "reparameterized", "recurrent"}


def _check_card(net: SRNet, arch: str | None, card: dict[str, Any], entry: str, key: str) -> None:
    """Refuse weights whose card names another architecture, scale or architecture arguments."""
    where = f"{key} {entry!r} is"
    if arch is not None and card.get("architecture") not in (None, arch):
        raise ConfigError(f"{where} a {card['architecture']} x{card.get('scale')} model; the recipe trains {arch}")
    if int(card.get("scale", net.scale)) != net.scale:
        raise ConfigError(f"{where} a x{card['scale']} model; the recipe trains x{net.scale}")
    ours, theirs = getattr(net, "arch_args", {}), card.get("arch_args", {})
    differ = sorted(k for k in ours.keys() & theirs.keys() if k not in _FORM_ARGS and ours[k] != theirs[k])
    if differ:
        pairs = ", ".join(f"{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in differ)
        raise ConfigError(f"{where} built with other arguments ({pairs}); match model.args to its card")


def warm_start(net: SRNet, entry: str, fresh: tuple[str, ...] = (), key: str = "model.init",
               arch: str | None = None) -> dict[str, Any]:
    """Load the ``.safetensors`` weights named by ``entry`` into ``net`` (every tensor, exact shapes, floating
    point where ``net``'s are, finite: :func:`~subpixel.models.weights.check_state`).

    Tensors of ``net`` whose names start with a prefix in ``fresh`` may be absent from the file and
    keep their initial values (e.g. the flow network of an FRVSR started from its ablation's
    weights); ``key`` names the recipe setting in errors. When a model card lies beside the file, its
    architecture must be ``arch`` (the recipe's registry name, if given), its scale ``net``'s and its
    architecture arguments ``net``'s, apart from those that only choose a form (collapsed,
    reparameterized, recurrent).

    Returns the provenance the model card keeps: the path as the recipe gives it, the file's SHA256
    and, when a model card lies beside it, the iterations, wall minutes, device and commit of that earlier run
    and its own ``init`` (so a run of several warm-started stages keeps the whole chain).
    """
    path = resolve_weights_file(entry)
    card = read_card(path) if card_path(path).is_file() else None
    if card is not None:
        _check_card(net, arch, card, entry, key)
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own types for corrupt headers
        raise ConfigError(f"{key} {entry!r} is not readable safetensors: {err}") from None
    own = net.state_dict()
    try:  # every tensor present (but those ``fresh``), none extra, each shaped, floating point and finite
        check_state(own, state, f"{key} {entry!r} does not fit the recipe's model", optional=fresh)
    except SubpixelError as err:
        # the file may hold the folded inference form (other tensor names or shapes)
        folds = type(net).deploy is not SRNet.deploy and {k: v.shape for k, v in state.items()} != \
            {k: v.shape for k, v in own.items() if k in state or not k.startswith(fresh)}
        hint = "; folded (deployed) weights cannot start the expanded training network" if folds else ""
        raise ConfigError(f"{err}{hint}") from None
    net.load_state_dict(state, strict=not fresh)
    info: dict[str, Any] = {"weights": entry, "sha256": _sha256(path)}
    if card is not None:
        training = card.get("training", {})
        info.update({k: training[k] for k in ("iterations", "wall_minutes", "device", "git_commit", "init")
                     if k in training})
    return info


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warn_if_init_changed(entry: str, recorded: dict[str, Any] | None, key: str = "model.init") -> None:
    """On resume, where the weights started is the checkpoint's ``recorded`` provenance and the file is not read
    again: warn when the file ``entry`` now holds other weights (a missing file is fine)."""
    try:
        path = resolve_weights_file(entry)
    except ConfigError:
        return
    if recorded is not None and _sha256(path) != recorded.get("sha256"):
        warnings.warn(f"{key} {entry!r} has changed since this run started from it; the model card keeps the "
                      "provenance of the weights it did start from", stacklevel=3)
