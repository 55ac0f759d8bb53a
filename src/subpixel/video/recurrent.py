"""A frame processor for recurrent video models (FRVSR): frames in order, state carried between calls."""

from __future__ import annotations

import torch

from subpixel.engine.device import resolve_device, torch_dtype
from subpixel.models.frvsr import FRVSR, FRVSRState

__all__ = ["RecurrentProcessor"]


class RecurrentProcessor:
    """Runs an :class:`FRVSR` frame by frame; the state survives across ``process`` calls.

    ``process(batch)``: ``(N, 3, H, W)`` float RGB in [0, 1], the next ``N`` frames in display
    order -> ``(N, 3, sH, sW)`` float32 (not clamped) on the input's device. ``reset()`` starts a
    new sequence (call it at segment starts and scene cuts); a change of frame size does too.
    ``precision``: fp32, fp16 or bf16 (autocast; the recurrent state is kept in float32).
    Always eager torch (``engine``), on whole frames.
    """

    engine = "torch"

    def __init__(self, net: FRVSR, device: str | torch.device = "auto", precision: str = "fp32") -> None:
        if not isinstance(net, FRVSR):
            raise TypeError(f"RecurrentProcessor needs an FRVSR network, not {type(net).__name__}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = torch_dtype(precision)
        self.net = net.eval().to(self.device)
        self.name = f"{'frvsr' if net.recurrent else 'frvsr-norec'} x{net.scale} {precision}"
        self._state: FRVSRState | None = None

    @property
    def scale(self) -> int:
        return self.net.scale

    def reset(self) -> None:
        """Forget the previous frames: the next frame is the first of a sequence."""
        self._state = None

    @torch.inference_mode()
    def process(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) batch of frames, got shape {tuple(batch.shape)}")
        if self._state is not None and self._state.lr.shape[-2:] != batch.shape[-2:]:
            self._state = None
        outs = []
        for frame in batch.to(self.device, torch.float32).split(1):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                _, state = self.net.step(frame, self._state)
            self._state = FRVSRState(state.lr, state.sr.float())
            outs.append(self._state.sr)
        return torch.cat(outs).to(batch.device)
