"""Tiled inference equals untiled; simulated out-of-memory halves the tile; memory budget sizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import subpixel
from subpixel.ops.resize import imresize
from subpixel.ops.tiling import tile_size_for_budget, tiled_forward, tiled_imresize
from subpixel.upscaler import Upscaler


def test_tiled_equals_untiled_on_1000x700(tiny_net) -> None:
    x = torch.rand(1, 3, 700, 1000)
    with torch.inference_mode():
        full = tiny_net(x)
        tiled, info = tiled_forward(tiny_net, x, 2, tile=192, pad=tiny_net.receptive_field, overlap=8)
    assert info.tiles_run == 4 * 6 and info.halvings == 0
    assert (tiled - full).abs().max().item() < 1e-4


@pytest.mark.parametrize("oom", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
], ids=["cuda", "cpu-allocator", "python"])
def test_simulated_oom_halves_tile_and_keeps_output(tiny_net, oom: BaseException) -> None:
    calls: list[int] = []

    def flaky(t: torch.Tensor) -> torch.Tensor:
        calls.append(max(t.shape[-2:]))
        if max(t.shape[-2:]) > 80:  # tiles above this "do not fit"
            raise oom
        return tiny_net(t)

    x = torch.rand(1, 3, 150, 130)
    with torch.inference_mode():
        ref = tiny_net(x)
        out, info = tiled_forward(flaky, x, 2, tile=128, pad=4)
    assert info.tile == 64 and info.halvings == 1
    assert (out - ref).abs().max().item() < 1e-4


def test_non_oom_errors_propagate(tiny_net) -> None:
    def broken(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    try:
        tiled_forward(broken, torch.rand(1, 3, 40, 40), 2, tile=16, pad=3)
    except RuntimeError as err:
        assert "shape mismatch" in str(err)
    else:
        raise AssertionError("expected the error to propagate")


def test_budget_tile_size_grows_with_budget() -> None:
    small = tile_size_for_budget(64 * 2**20, 64, 4)
    large = tile_size_for_budget(1024 * 2**20, 64, 4)
    assert 16 <= small < large and large % 8 == 0


def test_upscaler_tiles_large_inputs_and_matches(tiny_net) -> None:
    model = Upscaler(tiny_net, name="tiny", device="cpu")
    x = torch.rand(1, 3, 90, 70)
    full = model.upscale_tensor(x, tile=0)
    tiled = model.upscale_tensor(x, tile=32)
    assert model.last_tile_info is not None and model.last_tile_info.tiles_run == 9
    assert (full - tiled).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 3])
def test_exact_interpolation_is_tiled_with_the_untiled_pixels(name: str, scale: int) -> None:
    model = subpixel.load(name, scale=scale)
    rng = np.random.default_rng(scale)
    for image in (rng.integers(0, 256, (37, 50, 3), dtype=np.uint8), rng.integers(0, 65536, (41, 19), np.uint16)):
        whole = model.upscale(image, tile=0)
        assert model.last_tile_info is not None and model.last_tile_info.tiles_run == 1
        calls: list[tuple[int, int]] = []
        tiled = model.upscale(image, tile=16, progress=lambda done, total, seen=calls: seen.append((done, total)))
        assert model.last_tile_info.tile == 16 and model.last_tile_info.tiles_run == 3 * (4 if image.ndim == 3 else 2)
        assert calls[-1] == (model.last_tile_info.tiles_run,) * 2
        assert tiled.dtype == whole.dtype and tiled.flags.c_contiguous
        np.testing.assert_array_equal(tiled, whole)  # bit for bit


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32, torch.float64, torch.float16])
def test_tiled_imresize_to_any_size_gives_the_untiled_pixels(dtype: torch.dtype) -> None:
    x = torch.rand(3, 23, 19, generator=torch.Generator().manual_seed(0))
    x = x.to(dtype) if dtype.is_floating_point else (x * torch.iinfo(dtype).max).to(dtype)
    for kernel in ("bicubic", "lanczos3"):
        for size in [(35, 28), (11, 9), (23, 40), (60, 19), (46, 38)]:  # up, down, one axis alone, unequal, x2
            out, info = tiled_imresize(x, size, kernel, 7)
            assert torch.equal(out, imresize(x, size=size, kernel=kernel)), (kernel, size)
            polyphase = size == (46, 38) and dtype.is_floating_point and kernel == "bicubic"  # convolved whole
            assert info.tiles_run == (1 if polyphase else len(range(0, size[0], round(7 * size[0] / 23)))
                                      * len(range(0, size[1], round(7 * size[1] / 19))))
