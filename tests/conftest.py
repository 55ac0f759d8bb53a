"""Shared fixtures: the ../shared data folder (required in CI), tiny models, a free port for gloo jobs, the
console entry point run in-process."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from subpixel.models.base import SRNet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skipped outside CI when absent, a failure in CI."""
    data = SHARED / "data"
    if not data.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{data} is missing in CI")
        pytest.skip("../shared/data is not present")
    return data


def run_main() -> int | str | None:
    """Run ``subpixel.cli.main`` (the console entry point, on ``sys.argv``) to its exit; its exit code. The SIGINT
    handler is put back after (main ignores SIGINT once interrupted, as the shell's exit is near)."""
    from subpixel.cli import main

    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as code:
            main()
    finally:
        signal.signal(signal.SIGINT, handler)
    return code.value.code


class TinyConvNet(SRNet):
    """A small random conv net with a known receptive field (3 convs of 3x3 -> 3 px)."""

    receptive_field = 3

    def __init__(self, scale: int = 2, width: int = 8) -> None:
        super().__init__(scale)
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def tiny_net() -> TinyConvNet:
    torch.manual_seed(0)
    return TinyConvNet(scale=2).eval()


@pytest.fixture
def free_port() -> int:
    """A free local TCP port (MASTER_PORT of a multi-process test job)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on this host now (for the rendezvous of multi-process tests)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
