"""Random aligned LR/HR crops from whole images held in device memory, made by batched gathers.

Every image of a set is packed into one flat buffer per resolution, one int32 word per RGB pixel
(the fourth byte unused), so a crop is a 1-D gather of whole pixels. A batch draws image
indices, crop origins and one of the 8 flips/90-degree rotations from the sampler's own
generator. A flipped or rotated crop is still an affine walk through the flat buffer, so its
indices are ``start + i * step_i + j * step_j`` and augmenting costs nothing extra. The HR crop is
always ``scale`` times the LR crop at the aligned position; nothing is ever resized.

Crops are made for a chunk of batches at once (as many as fit in ``chunk_bytes``), so the few
dozen small kernels that make them are launched once per chunk, not once per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from subpixel.data.pairs import Pair
from subpixel.errors import SubpixelError

__all__ = ["PatchSampler", "DIHEDRAL"]

_DRAW = 1 << 31  # crop origins are drawn in [0, 2**31) and reduced modulo the valid range
_MAX_CHUNK = 64


def _dihedral() -> torch.Tensor:
    """``(8, 6)``: for transform ``t`` (bit 0 flips rows, bit 1 flips columns, bit 2 transposes), the source
    pixel of output ``(i, j)`` in a ``P x P`` crop is ``(fa*(P-1) + ai*i + aj*j, fb*(P-1) + bi*i + bj*j)``;
    the columns are ``fa, ai, aj, fb, bi, bj``."""
    rows = []
    for t in range(8):
        a, b = ([0, 0, 1], [0, 1, 0]) if t & 4 else ([0, 1, 0], [0, 0, 1])
        if t & 1:
            a = [1, -a[1], -a[2]]
        if t & 2:
            b = [1, -b[1], -b[2]]
        rows.append(a + b)
    return torch.tensor(rows)


DIHEDRAL = _dihedral()


def _pack(images: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(3, h, w)`` -> flat int32 pixels (RGB + a spare byte) on ``device``, and each image's offset."""
    sizes = torch.tensor([im.shape[1] * im.shape[2] for im in images])
    offsets = torch.cumsum(sizes, 0) - sizes
    rgbx = torch.zeros(int(sizes.sum()), 4, dtype=torch.uint8)
    rgbx[:, :3] = torch.cat([im.permute(1, 2, 0).reshape(-1, 3) for im in images])
    return rgbx.view(torch.int32).view(-1).to(device), offsets.to(device)


class PatchSampler:
    """Batches of ``(lr, hr)`` float crops in [0, 1]: ``(B, 3, patch, patch)`` and ``(B, 3, patch*s, patch*s)``.

    Images whose LR side is below ``patch`` are left out (listed in ``skipped``). The crop stream
    is a function of ``seed`` and the chunk length alone; :meth:`get_state`/:meth:`set_state` save
    and restore it. Batches are views into the current chunk: do not modify them in place.
    """

    def __init__(self, pairs: Sequence[Pair], scale: int, patch: int, batch: int, *, augment: bool = True,
                 device: torch.device | str = "cpu", seed: int = 0, chunk_bytes: int = 256 * 2**20) -> None:
        device = torch.device(device)
        usable = [p for p in pairs if min(p.lr.shape[-2:]) >= patch]
        self.skipped = [p.name for p in pairs if min(p.lr.shape[-2:]) < patch]
        if not usable:
            raise SubpixelError(f"no training image has an LR side of at least data.patch={patch} pixels")
        self.scale, self.patch, self.batch, self.augment = scale, patch, batch, augment
        self.num_images = len(usable)
        self._lr, self._lr_off = _pack([p.lr for p in usable], device)
        self._hr, self._hr_off = _pack([p.hr for p in usable], device)
        self._h = torch.tensor([p.lr.shape[1] for p in usable], device=device)
        self._w = torch.tensor([p.lr.shape[2] for p in usable], device=device)
        self._dihedral = DIHEDRAL.to(device)
        self._ramp_lr = torch.arange(patch, device=device)
        self._ramp_hr = torch.arange(patch * scale, device=device)
        per_batch = 4 * 3 * batch * patch * patch * (1 + scale * scale)
        self.chunk = max(1, min(_MAX_CHUNK, chunk_bytes // per_batch))
        self.generator = torch.Generator(device=device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Start the crop stream afresh from ``seed``."""
        self.generator.manual_seed(seed)
        self._chunk_start = self.generator.get_state()
        self._position = self.chunk  # batches of the current chunk already handed out; full: make a new one
        self._lr_chunk = self._hr_chunk = torch.empty(0)

    def get_state(self) -> torch.Tensor:
        """Where the crop stream is: the generator state at the current chunk's start (or now, once the
        chunk is used up), then the position in the chunk as 8 bytes; a CPU uint8 tensor."""
        start = self.generator.get_state() if self._position == self.chunk else self._chunk_start
        position = torch.tensor([self._position], dtype=torch.int64).view(torch.uint8)
        return torch.cat([start, position])

    def set_state(self, state: torch.Tensor) -> bool:
        """Continue the crop stream from a :meth:`get_state` result; False, with nothing changed, when it is
        not this generator's kind of state (one saved on another device type: CPU and CUDA states differ)."""
        state = state.cpu()
        if state.numel() - 8 != self.generator.get_state().numel():
            return False
        self.generator.set_state(state[:-8].clone())
        self._chunk_start = state[:-8].clone()
        self._position = int(state[-8:].clone().view(torch.int64))
        if self._position < self.chunk:
            self._refill()
        return True

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of aligned, augmented crops on the sampler's device."""
        if self._position == self.chunk:
            self._chunk_start = self.generator.get_state()
            self._position = 0
            self._refill()
        i = self._position
        self._position += 1
        return self._lr_chunk[i], self._hr_chunk[i]

    def _refill(self) -> None:
        """Make the crops of a whole chunk from the generator's current state."""
        g, dev, n, p, s = self.generator, self._lr.device, self.chunk * self.batch, self.patch, self.scale
        k = torch.randint(self.num_images, (n,), generator=g, device=dev)
        origin = torch.randint(_DRAW, (2, n), generator=g, device=dev)
        w = self._w[k]
        y = origin[0] % (self._h[k] - p + 1)
        x = origin[1] % (w - p + 1)
        t = torch.randint(8, (n,), generator=g, device=dev) if self.augment else torch.zeros_like(k)
        coef = self._dihedral[t]
        lr = self._gather(self._lr, self._lr_off[k], w, y, x, coef, self._ramp_lr)
        hr = self._gather(self._hr, self._hr_off[k], w * s, y * s, x * s, coef, self._ramp_hr)
        self._lr_chunk = lr.unflatten(0, (self.chunk, self.batch))
        self._hr_chunk = hr.unflatten(0, (self.chunk, self.batch))

    @staticmethod
    def _gather(flat: torch.Tensor, offset: torch.Tensor, width: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                coef: torch.Tensor, ramp: torch.Tensor) -> torch.Tensor:
        """Crops ``(B, 3, P, P)`` whose un-augmented top-left pixel is ``(y, x)`` in images of ``width``."""
        last = ramp.numel() - 1
        fa, ai, aj, fb, bi, bj = coef.unbind(1)
        start = offset + (y + fa * last) * width + x + fb * last
        step_i, step_j = ai * width + bi, aj * width + bj
        idx = (start[:, None] + step_i[:, None] * ramp)[:, :, None] + (step_j[:, None] * ramp)[:, None, :]
        crops = flat[idx].view(torch.uint8).unflatten(-1, (-1, 4))[..., :3].permute(0, 3, 1, 2)
        return crops.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
