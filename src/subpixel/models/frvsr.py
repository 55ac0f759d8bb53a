"""FRVSR: frame-recurrent video super-resolution (Sajjadi, Vemulapalli & Brown, CVPR 2018).

For each LR frame ``x_t`` the network

1. estimates the LR flow from ``x_t`` to the previous frame ``x_{t-1}`` with FNet (an
   encoder-decoder that refines a Lucas-Kanade estimate by up to ``max_flow`` LR pixels),
2. upsamples that flow bilinearly to HR (values times ``scale``) and warps its previous HR
   estimate with it (``grid_sample``),
3. folds the warped estimate to LR size (``pixel_unshuffle``: ``3 * scale**2`` channels),
   concatenates it with ``x_t`` and runs a residual SR network whose output is added to a
   bicubic upsampling of ``x_t``.

The first frame of a sequence sees a black previous estimate; ``forward(x)`` treats every image
as such a first frame, so the model also works as a frame-wise :class:`SRNet`.
A new recurrent network starts as its ablation built from the same seed: the SR network draws
the same initial weights (it is built before FNet) and its weights on the folded estimate are
zero, so the recurrent input enters only as training finds it useful (FNet starts as the
Lucas-Kanade estimate it refines). A recurrent run and its ablation then differ by the recurrence alone.
``recurrent=False`` builds the ablation: the same SR network, fed zeros instead of the warped
estimate, without FNet.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.models.base import SRNet
from subpixel.models.registry import register
from subpixel.ops.flow import lucas_kanade, upsample_flow, warp

__all__ = ["FRVSR", "FNet", "FRVSRState", "warp", "upsample_flow", "FLOW_ARG_RULES", "check_flow_args"]

# FNet's arguments that are no channel counts (those the registry checks) and what each asks for
FLOW_ARG_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_flow": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < math.inf,
                 "a positive number"),
    "lk_levels": (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0,
                  "an integer >= 0"),
}


def check_flow_args(args: dict[str, Any], label: str = "frvsr: ") -> None:
    """Refuse a ``max_flow`` (must be finite and > 0) or ``lk_levels`` (an integer >= 0) in ``args`` that breaks
    :data:`FLOW_ARG_RULES`, with a :class:`SubpixelError` starting with ``label``, then the argument's name."""
    for key, (valid, what) in FLOW_ARG_RULES.items():
        if key in args and not valid(args[key]):
            raise SubpixelError(f"{label}{key} must be {what}, got {args[key]!r}")


class FRVSRState(NamedTuple):
    """What FRVSR carries from one frame to the next."""

    lr: torch.Tensor  # previous LR frame (N, 3, h, w)
    sr: torch.Tensor  # previous HR estimate (N, 3, s*h, s*w)


def _conv_pair(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


class FNet(nn.Module):
    """Flow from a frame to its predecessor: ``(current, previous) -> (N, 2, h, w)`` LR pixels.

    The paper's encoder-decoder (``channels`` are the encoder widths, each level halves the
    resolution; the decoder mirrors them at twice the width), changed in two measured ways
    (``benchmarks/results/frvsr_x4_fnet_design_cpu_2026-12-01.md``): it refines a parameter-free
    pyramidal Lucas-Kanade estimate (``lk_levels`` levels; 0 learns the flow from scratch) instead of
    starting from nothing, and it sees the current frame, the previous frame warped by that estimate,
    their difference (amplified) and the estimate itself. Its output is a ``tanh`` correction of up
    to ``max_flow`` pixels whose last convolution starts at zero, so a new FNet returns the
    Lucas-Kanade flow. Inputs are padded to a multiple of ``2 ** len(channels)`` and the flow is
    cropped back.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), max_flow: float = 8.0, lk_levels: int = 2) -> None:
        super().__init__()
        check_flow_args({"max_flow": max_flow, "lk_levels": lk_levels}, label="FNet: ")
        self.max_flow = float(max_flow)
        self.lk_levels = int(lk_levels)
        self.levels = len(channels)
        enc, cin = [], 11  # current, warped previous, their difference, initial flow
        for c in channels:
            enc.append(_conv_pair(cin, c))
            cin = c
        dec = []
        for c in reversed(channels):
            dec.append(_conv_pair(cin, 2 * c))
            cin = 2 * c
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.ModuleList(dec)
        self.head = nn.Sequential(nn.Conv2d(cin, channels[0], 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(channels[0], 2, 3, padding=1))
        with torch.no_grad():
            self.head[-1].weight.zero_()
            self.head[-1].bias.zero_()

    def initial_flow(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The estimate FNet refines: Lucas-Kanade's (no gradient), or zero with ``lk_levels=0``.

        On the ``meta`` device (shape-only passes such as :func:`~subpixel.models.complexity.count_macs`), where
        Lucas-Kanade cannot run, the zero flow stands in: a meta tensor has its shape and dtype and no values.
        """
        if not self.lk_levels or current.device.type == "meta":
            return current.new_zeros(current.shape[0], 2, *current.shape[-2:])
        with torch.no_grad():
            return lucas_kanade(current, previous, levels=self.lk_levels, max_flow=self.max_flow).to(current.dtype)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        h, w = current.shape[-2:]
        init = self.initial_flow(current, previous)
        moved = warp(previous, init) if self.lk_levels else previous
        x = torch.cat([(current - 0.5) * 4, (moved - 0.5) * 4, (current - moved) * 16, init], dim=1)
        m = 2**self.levels
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        for block in self.encoder:
            x = F.max_pool2d(block(x), 2)
        for block in self.decoder:
            x = F.interpolate(block(x), scale_factor=2, mode="bilinear", align_corners=False)
        return init + torch.tanh(self.head(x)[..., :h, :w]) * self.max_flow


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register("frvsr", scales=(2, 4), summary="FRVSR: frame-recurrent video SR (flow-warped previous estimate)")
class FRVSR(SRNet):
    """Frame-recurrent video super-resolution (Sajjadi et al. 2018), small by default."""

    def __init__(self, scale: int, channels: int = 32, blocks: int = 6,
                 flow_channels: tuple[int, ...] | list[int] = (16, 32, 64), max_flow: float = 8.0, lk_levels: int = 2,
                 recurrent: bool = True) -> None:
        super().__init__(scale)
        check_flow_args({"max_flow": max_flow, "lk_levels": lk_levels})  # the ablation too: its card keeps them
        self.recurrent = bool(recurrent)
        s2 = 3 * scale * scale
        # the SR network first, so that a recurrent network and its ablation draw the same initial SR weights
        self.head = nn.Sequential(nn.Conv2d(3 + s2, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*(_ResBlock(channels) for _ in range(blocks)))
        self.tail = nn.Sequential(nn.Conv2d(channels, s2, 3, padding=1), nn.PixelShuffle(scale))
        self.fnet = FNet(tuple(flow_channels), max_flow, lk_levels) if self.recurrent else None
        self.receptive_field = 2 * blocks + 2  # frame-wise: 3x3 convs (head, 2 per block, tail)
        with torch.no_grad():
            self.head[0].weight[:, 3:].zero_()

    def _sr(self, lr: torch.Tensor, prev_hr: torch.Tensor) -> torch.Tensor:
        folded = F.pixel_unshuffle(prev_hr, self.scale)
        out = self.tail(self.body(self.head(torch.cat([lr, folded], dim=1))))
        return out + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def step_with_flow(self, lr: torch.Tensor, state: FRVSRState | None
                       ) -> tuple[torch.Tensor, FRVSRState, torch.Tensor | None]:
        """One frame: ``(sr, new state, LR flow to the previous frame or None)``."""
        n, _, h, w = lr.shape
        s = self.scale
        flow = None
        if state is None or self.fnet is None:
            prev = lr.new_zeros(n, 3, h * s, w * s)
        else:
            flow = self.fnet(lr, state.lr)
            prev = warp(state.sr, upsample_flow(flow, s))
        sr = self._sr(lr, prev)
        return sr, FRVSRState(lr, sr), flow

    def step(self, lr: torch.Tensor, state: FRVSRState | None = None) -> tuple[torch.Tensor, FRVSRState]:
        """Super-resolve frame ``lr`` ``(N, 3, h, w)`` given the state of the previous one (None: first)."""
        sr, state, _ = self.step_with_flow(lr, state)
        return sr, state

    def forward_sequence(self, lr: torch.Tensor, return_flows: bool = False
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, T, 3, h, w)`` -> ``(N, T, 3, s*h, s*w)``; with ``return_flows`` also the LR flows
        ``(N, T-1, 2, h, w)`` from each frame to its predecessor (None without FNet)."""
        if lr.dim() != 5:
            raise ValueError(f"expected (N, T, 3, h, w), got shape {tuple(lr.shape)}")
        state, outs, flows = None, [], []
        for t in range(lr.shape[1]):
            sr, state, flow = self.step_with_flow(lr[:, t], state)
            outs.append(sr)
            if flow is not None:
                flows.append(flow)
        out = torch.stack(outs, dim=1)
        if not return_flows:
            return out
        return out, (torch.stack(flows, dim=1) if flows else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, None)[0]

    def per_frame_forward(self, x: torch.Tensor) -> torch.Tensor:
        """A later frame of a sequence (FNet, warp and the SR network), which every frame but the first costs;
        :meth:`forward` is a first frame, without FNet. The ablation (``recurrent=False``) runs :meth:`forward`."""
        if self.fnet is None:
            return self(x)
        n, _, h, w = x.shape
        state = FRVSRState(x, x.new_zeros(n, 3, h * self.scale, w * self.scale))
        return self.step(x, state)[0]
