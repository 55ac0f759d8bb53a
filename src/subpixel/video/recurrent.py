"""A frame processor for recurrent video models (FRVSR): frames in order, state carried between calls."""

from __future__ import annotations

import torch

from subpixel.engine.device import resolve_device, torch_dtype
from subpixel.models.frvsr import FRVSR, FRVSRState

__all__ = ["RecurrentProcessor"]

_FIRST_CHANGE_FACTOR = 3  # the first change of a sequence is a cut above this many times the threshold


class RecurrentProcessor:
    """Runs an :class:`FRVSR` frame by frame; the state survives across ``process`` calls.

    ``process(batch)``: ``(N, 3, H, W)`` float RGB in [0, 1], the next ``N`` frames in display
    order -> ``(N, 3, sH, sW)`` float32 (not clamped) on the input's device. ``reset()`` starts a
    new sequence (call it at segment starts); a change of frame size does too, and so does a scene cut when
    ``cut_threshold`` is set (else the first frame after a cut would be fed the warped last frame of the
    scene before). ``precision``: fp32, fp16 or bf16 (autocast; the recurrent state is kept in float32).
    Always eager torch (``engine``), on whole frames.

    Scene cuts: the mean absolute luma difference to the previous frame, in percent of full range; a frame
    is a cut when that difference exceeds ``cut_threshold`` and has grown by as much since the previous
    frame's (a steady fast pan changes every frame a lot, but evenly), or is still above it right after a
    cut (a flash, a one-frame shot: the next frame is a cut too); the first difference of a sequence, with
    nothing to compare, must exceed three times ``cut_threshold``. 10 suits most footage.
    """

    engine = "torch"

    def __init__(self, net: FRVSR, device: str | torch.device = "auto", precision: str = "fp32",
                 cut_threshold: float | None = None) -> None:
        if not isinstance(net, FRVSR):
            raise TypeError(f"RecurrentProcessor needs an FRVSR network, not {type(net).__name__}")
        if cut_threshold is not None and not 0 < cut_threshold < 100:
            raise ValueError(f"cut_threshold must be in (0, 100) percent, got {cut_threshold}")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = torch_dtype(precision)
        self.net = net.eval().to(self.device)
        self.name = f"{'frvsr' if net.recurrent else 'frvsr-norec'} x{net.scale} {precision}"
        self.cut_threshold = cut_threshold
        self.cuts = 0  # scene cuts detected (state resets) since construction
        self._state: FRVSRState | None = None
        self.reset()

    @property
    def scale(self) -> int:
        return self.net.scale

    def reset(self) -> None:
        """Forget the previous frames: the next frame is the first of a sequence."""
        self._state = None
        self._last_change: float | None = None  # the mean luma change between the last two frames, percent
        self._after_cut = False

    def _is_cut(self, frame: torch.Tensor) -> bool:
        """Whether ``frame`` starts a new scene (see the class docstring); updates the running difference."""
        if self.cut_threshold is None or self._state is None:
            return False
        luma = torch.tensor([0.299, 0.587, 0.114], device=frame.device).view(1, 3, 1, 1)
        change = 100 * float(((frame - self._state.lr) * luma).sum(1).abs().mean())
        last, limit = self._last_change, self.cut_threshold
        if last is None:  # the first change of a sequence: nothing to compare it with but a larger limit
            cut = change > _FIRST_CHANGE_FACTOR * limit
        else:  # a jump in change; or a change still large right after a cut (a flash, a one-frame shot)
            cut = change > limit and (change - last > limit or self._after_cut)
        self._last_change, self._after_cut = change, cut
        return cut

    @torch.inference_mode()
    def process(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) batch of frames, got shape {tuple(batch.shape)}")
        if self._state is not None and self._state.lr.shape[-2:] != batch.shape[-2:]:
            self.reset()  # a new sequence: its cut detector starts afresh too
        outs = []
        for frame in batch.to(self.device, torch.float32).split(1):
            if self._is_cut(frame):
                self._state = None  # the cut's difference stays the one the next frame's is compared with
                self.cuts += 1
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                _, state = self.net.step(frame, self._state)
            self._state = FRVSRState(state.lr, state.sr.float())
            outs.append(self._state.sr)
        return torch.cat(outs).to(batch.device)
