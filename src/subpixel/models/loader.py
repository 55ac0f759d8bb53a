"""``subpixel.load``: a name, a shipped model or a weights path -> :class:`Upscaler`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from subpixel.engine.device import engine_device
from subpixel.errors import SubpixelError
from subpixel.models.registry import architectures, build, check_scale, get_spec
from subpixel.models.weights import is_weights_path, load_net, shipped_models
from subpixel.upscaler import Upscaler

__all__ = ["load", "available_scales", "best_shipped", "not_a_model"]


def available_scales(name: str) -> list[int] | None:
    """Scales with shipped weights for ``name`` (``None``: any scale, for interpolation)."""
    spec = architectures().get(name)
    if spec is not None and spec.interpolation:
        return None
    return sorted(m.scale for m in shipped_models() if m.name == name)


def best_shipped(scale: int) -> str:
    """The shipped network with the best Set5 figure on its card at ``scale``; bicubic when none ships."""
    best, best_psnr = "bicubic", float("-inf")
    for m in shipped_models():
        value = m.card.get("metrics", {}).get("Set5", {}).get("psnr", float("-inf"))
        if m.scale == scale and value > best_psnr:
            best, best_psnr = m.name, value
    return best


def load(
    name_or_path: str | Path,
    scale: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    engine: str = "auto",
    pretrained: bool = True,
    **arch_args: Any,
) -> Upscaler:
    """Load a model ready to upscale.

    ``name_or_path``: a built-in (``bicubic``, ``lanczos``), a shipped model (``espcn`` ...),
    ``auto`` (the shipped model with the best Set5 figure at the scale, else bicubic), or a
    ``.safetensors`` file with its JSON card beside it. ``pretrained=False`` builds a
    registered architecture with random weights (for speed benchmarks and training); with a weights
    file it raises :class:`SubpixelError`.
    ``scale``: required to match a weights file's scale; ``None`` takes the file's (else 4).
    ``engine``: ``auto``, ``torch``, ``torch-compile``, ``torch-cudagraph`` (CUDA) or ``onnx``
    (see :mod:`subpixel.engine`).
    ``arch_args`` (architecture arguments) apply only with ``pretrained=False`` or to interpolation models;
    with weights, whose card fixes the architecture, they raise :class:`SubpixelError`.
    Loading leaves torch's random number generators (CPU and the target device's) as they were.
    """
    dev = engine_device(engine, device)
    devices = [] if dev.type == "cpu" else [dev]
    # device_type must name a real type even when no device is forked (torch 2.6 has no None)
    with torch.random.fork_rng(devices=devices, device_type=dev.type if devices else "cuda"):
        return _load(name_or_path, scale, dev, precision, engine, pretrained, **arch_args)


def _load(name_or_path: str | Path, scale: int | None, device: torch.device, precision: str, engine: str,
          pretrained: bool, **arch_args: Any) -> Upscaler:
    """:func:`load` on a resolved device (random weights, export and probes may draw random numbers)."""
    from subpixel.engine import make_engine

    if scale is not None:
        scale = check_scale(scale)
    path = Path(name_or_path)
    if is_weights_path(path):
        if not path.is_file():
            raise SubpixelError(f"weights file not found: {path}")
        if not pretrained:
            raise SubpixelError(f"pretrained=False does not apply to a weights file ({path.name}); pass an "
                                "architecture name for random weights")
        _refuse_arch_args(arch_args, path.name)
        net, card = load_net(path)
        name = path.stem  # the file's own name: a run's export is not labelled as the shipped model it trains
        if scale is not None and scale != net.scale:
            raise SubpixelError(f"{path.name} is a x{net.scale} model; x{scale} was asked for")
    else:
        name = str(name_or_path).lower()
        scale = 4 if scale is None else scale
        if name == "auto":
            name = best_shipped(scale)
        spec = get_spec(name) if name in architectures() else None
        shipped = [m for m in shipped_models() if m.name == name]
        if spec is not None and (spec.interpolation or not pretrained):
            net, card = build(name, scale, **arch_args), {"name": name, "architecture": name, "scale": scale}
        elif shipped:
            _refuse_arch_args(arch_args, f"the shipped {name!r} weights")
            match = [m for m in shipped if m.scale == scale]
            if not match:
                have = ", ".join(f"x{m.scale}" for m in shipped)
                raise SubpixelError(f"model {name!r} has no x{scale} weights (available: {have})")
            net, card = load_net(match[0].weights, match[0].card)
        elif spec is not None:
            raise SubpixelError(f"architecture {name!r} has no shipped weights; train it (subpixel train) "
                                "or pass a .safetensors path")
        else:
            raise SubpixelError(not_a_model(path, name))
    net = net.deploy()
    runtime = make_engine(net, engine=engine, device=device, precision=precision)
    return Upscaler(net, name=name, card=card, engine=runtime)


def _refuse_arch_args(arch_args: dict[str, Any], weights: str) -> None:
    """Raise if architecture arguments were given for ``weights``, whose card fixes the architecture."""
    if arch_args:
        names = ", ".join(sorted(arch_args))
        raise SubpixelError(f"unexpected argument(s) {names} for {weights}: architecture arguments apply only "
                            "with pretrained=False or to interpolation models")


def not_a_model(path: Path, name: str) -> str:
    """Why ``name`` loads nothing: an ONNX file, another file (only .safetensors are read, never pickles), a typo."""
    if path.suffix.lower() == ".onnx":
        return (f"{path}: ONNX files are not loadable as models; pass the .safetensors weights file it was "
                "exported from, with its .json card (the onnx engine exports its own)")
    if path.is_file():
        return (f"{path}: not a model file; subpixel loads only .safetensors weights with a .json card beside them "
                "(never pickled .pt/.pth files)")
    known = sorted({m.name for m in shipped_models()} | set(architectures()))
    return f"unknown model {name!r}; known: {', '.join(known)}"
