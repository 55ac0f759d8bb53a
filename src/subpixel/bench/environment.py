"""What the benchmark ran on: versions, CPU and GPU models, threads."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch

__all__ = ["environment", "cpu_model", "load_average", "code_version"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _opencv_version() -> str | None:
    """The cv2 that is imported (``cv2.__version__``), else the installed OpenCV wheel's version."""
    try:
        import cv2

        return str(cv2.__version__)
    except (ImportError, AttributeError):
        pass
    for package in ("opencv-contrib-python-headless", "opencv-contrib-python", "opencv-python-headless",
                    "opencv-python"):
        if (version := _version(package)) is not None:
            return version
    return None


def _usable_cpus() -> int | None:
    """CPUs this process may run on (its affinity mask, e.g. a container's share), else all logical CPUs."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cpu_capability() -> str | None:
    """The CPU instruction set torch's kernels use (e.g. AVX2, AVX512)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), where the OS reports them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def code_version() -> tuple[str | None, bool | None]:
    """This checkout's git commit and whether its tracked files have changes; ``(None, None)`` when unknown
    (an installed package), from :func:`subpixel.train.provenance.git_commit`."""
    from subpixel.train.provenance import git_commit

    commit = git_commit()
    if not commit:
        return None, None
    return commit.removesuffix("-dirty"), commit.endswith("-dirty")


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    """Versions, code commit, hardware and the load at the start, for the results files."""
    commit, dirty = code_version()
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "subpixel": _version("subpixel"),
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "opencv": _opencv_version(),
        "upscale-ncnn-py": _version("upscale-ncnn-py"),
        "cpu": cpu_model(),
        "cpu_capability": _cpu_capability(),
        "cpu_count": _usable_cpus(),
        "cpu_count_total": os.cpu_count(),
        "threads": threads,
        "load_average_start": load_average(),
        "load_average_end": None,  # set when the run ends
        "device": str(device),
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env
