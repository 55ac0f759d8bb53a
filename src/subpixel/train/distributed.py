"""Multi-process (DDP) setup from ``torchrun``'s environment: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from subpixel.engine.device import resolve_device
from subpixel.errors import SubpixelError

__all__ = ["DistInfo", "distributed", "all_gather_cpu", "any_rank", "any_rank_later", "average_gradients", "barrier"]

# a gloo group beside NCCL's (set by distributed()): flags agreed on every step (any_rank_later) go between
# the hosts without touching the GPU, so they neither wait for its queued work nor make the host wait for it
_host_group: Any = None


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job and its training device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and exports."""
        return self.rank == 0


@contextmanager
def distributed(device: str = "auto") -> Iterator[DistInfo]:
    """Join the process group when launched by ``torchrun`` (NCCL on CUDA, else gloo); single process otherwise.

    Under DDP each rank uses ``cuda:LOCAL_RANK`` when CUDA is picked.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        yield DistInfo(0, 1, 0, dev)
        return
    if dev.type == "mps":
        raise SubpixelError("multi-process training needs CUDA or the CPU, not MPS")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    global _host_group
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        if dev.type == "cuda" and dist.is_gloo_available():
            _host_group = dist.new_group(backend="gloo")
        yield DistInfo(rank, world, local_rank, dev)
    finally:
        _host_group = None
        dist.destroy_process_group()


def all_gather_cpu(t: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's copy of the same-shape tensor ``t``, on the CPU, in rank order."""
    if info.world == 1:
        return [t.cpu()]
    local = t.to(info.device)
    out = [torch.empty_like(local) for _ in range(info.world)]
    dist.all_gather(out, local)
    return [x.cpu() for x in out]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.world > 1:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any (a collective: every rank must call it)."""
    return any_rank_later(flag, info)()


def any_rank_later(flag: bool, info: DistInfo) -> Callable[[], bool]:
    """:func:`any_rank` run in the background: call the result for the answer (waiting for it if need be).

    One float all-reduced between the hosts (gloo, also beside NCCL), so a step's work overlaps it.
    """
    if info.world == 1:
        return lambda: flag
    on_host = _host_group is not None or info.device.type == "cpu"
    t = torch.tensor([float(flag)], device="cpu" if on_host else info.device)
    work = dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_host_group, async_op=True)

    def answer() -> bool:
        work.wait()
        return bool(t.item())

    return answer


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Replace every gradient by its mean over the ranks, in one all-reduce (no-op in a single process).

    For networks that a ``DistributedDataParallel`` wrapper does not fit (FRVSR runs its modules many
    times per step); every rank must hold gradients for the same parameters.
    """
    if info.world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))
