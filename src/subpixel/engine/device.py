"""Device and precision resolution shared by every runtime."""

from __future__ import annotations

import torch

from subpixel.errors import SubpixelError

__all__ = ["resolve_device", "engine_device", "PRECISIONS", "torch_dtype", "cpu_has_native_bf16"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise SubpixelError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SubpixelError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SubpixelError("--device cuda asked for, but no CUDA GPU is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        have = ", ".join(f"cuda:{i}" for i in range(torch.cuda.device_count()))
        raise SubpixelError(f"--device {name}: no such GPU; available: {have}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SubpixelError("--device mps asked for, but MPS is not available")
    return dev


def engine_device(engine: str, device: str | torch.device = "auto") -> torch.device:
    """The device ``engine`` runs on: :func:`resolve_device` of ``device`` (a ``torch.device`` is checked as its
    name is), except that ``auto`` means cpu for the ``onnx`` engine (ONNX Runtime runs on the CPU only)."""
    return resolve_device("cpu" if engine == "onnx" and str(device) == "auto" else str(device))


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name (fp32, fp16, bf16)."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise SubpixelError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}") from None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere it is emulated, slowly."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)
