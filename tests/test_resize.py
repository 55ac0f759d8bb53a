"""MATLAB-compatible imresize: sizes, kernels, integer rounding, numpy/torch agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subpixel.ops.resize import (
    _resize_axis,
    contributions,
    imresize,
    imresize_np,
    output_size,
    round_to,
    upscale_bicubic,
)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2.0, 3.0, 4.0, 1.7])
def test_weights_sum_to_one_and_indices_in_range(scale: float) -> None:
    idx, w = contributions(37, output_size(37, scale), scale, True, "bicubic")
    assert torch.allclose(w.sum(1), torch.ones(w.shape[0], dtype=torch.float64))
    assert idx.min() >= 0 and idx.max() < 37


def test_output_size_is_matlab_ceil() -> None:
    x = torch.rand(1, 3, 17, 10)
    assert imresize(x, scale=0.5).shape[-2:] == (9, 5)
    assert imresize(x, scale=3).shape[-2:] == (51, 30)
    assert imresize(x, size=(5, 7)).shape[-2:] == (5, 7)


def test_constant_image_stays_constant() -> None:
    x = torch.full((1, 1, 20, 20), 0.37, dtype=torch.float64)
    for s in (0.25, 0.5, 2, 3):
        assert torch.allclose(imresize(x, scale=s), torch.full_like(imresize(x, scale=s), 0.37))


def test_downscale_is_antialiased() -> None:
    # a Nyquist checkerboard averages to grey only with the widened (antialiasing) kernel
    x = torch.from_numpy((np.indices((36, 36)).sum(0) % 2).astype(np.float64))
    assert imresize(x, scale=1 / 3).std() < 0.05
    assert imresize(x, scale=1 / 3, antialias=False).std() > 0.3


def test_integer_path_rounds_after_each_pass() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 18, 3), dtype=np.uint8)
    out = imresize_np(img, scale=0.5)
    assert out.dtype == np.uint8
    # reference: float passes with MATLAB rounding in between, height first
    t = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)
    h = torch.floor(imresize(t, size=(12, 18)) + 0.5).clamp(0, 255)
    ref = torch.floor(imresize(h, size=(12, 9)) + 0.5).clamp(0, 255).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, ref.astype(np.uint8))
    # and it is not the same as a single float resize rounded at the end
    once = np.floor(imresize_np(img.astype(np.float64), scale=0.5) + 0.5)
    assert (once != out).any()


def test_uint16_kept() -> None:
    img = np.random.default_rng(1).integers(0, 65536, (10, 12), dtype=np.uint16)
    out = imresize_np(img, scale=2)
    assert out.dtype == np.uint16 and out.shape == (20, 24)


def test_batched_tensor_matches_numpy_per_image() -> None:
    rng = np.random.default_rng(2)
    batch = rng.random((3, 3, 15, 21))
    out = imresize(torch.from_numpy(batch), scale=1 / 3)
    for i in range(3):
        ref = imresize_np(batch[i].transpose(1, 2, 0), scale=1 / 3).transpose(2, 0, 1)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-12)


def test_half_precision_computed_in_float32() -> None:
    x = torch.rand(1, 3, 8, 8)
    out = imresize(x.half(), scale=2)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), imresize(x, scale=2), atol=2e-3, rtol=0)


def test_lanczos_differs_from_bicubic_but_keeps_constants() -> None:
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    assert not torch.allclose(imresize(x, scale=2, kernel="lanczos3"), imresize(x, scale=2))
    c = torch.ones(1, 1, 12, 12, dtype=torch.float64)
    assert torch.allclose(imresize(c, scale=2, kernel="lanczos3"), torch.ones(1, 1, 24, 24, dtype=torch.float64))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (5, 9), (1, 2, 2), (1, 7), (2, 6, 1), (1, 1)])
def test_polyphase_upscale_equals_the_separable_resize(scale: int, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, dtype=torch.float64)
    h, w = shape[-2:]
    ref = _resize_axis(x, x.dim() - 2, h * scale, float(scale), True, "bicubic")
    ref = _resize_axis(ref, x.dim() - 1, w * scale, float(scale), True, "bicubic")
    out = upscale_bicubic(x, scale)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(imresize(x, scale=scale), ref, atol=1e-12, rtol=0)  # imresize takes this path


def test_polyphase_upscale_refuses_what_it_cannot_do() -> None:
    for bad, scale in ((torch.zeros(4, 4, dtype=torch.uint8), 2), (torch.rand(4, 4), 1), (torch.rand(0, 4), 2),
                       (torch.rand(5), 2)):
        with pytest.raises(ValueError):
            upscale_bicubic(bad, scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = torch.rand(2, 3, 40, 30, dtype=torch.float64)
    torch.testing.assert_close(imresize(x.cuda(), scale=0.25).cpu(), imresize(x, scale=0.25))


def test_errors() -> None:
    with pytest.raises(ValueError):
        imresize(torch.rand(1, 4, 4))
    with pytest.raises(ValueError):
        imresize(torch.rand(1, 0, 4), scale=2)
    with pytest.raises(ValueError):
        imresize(torch.rand(1, 4, 4), scale=2, kernel="box")


def test_round_to_rounds_half_away_from_zero_like_matlab() -> None:
    v = torch.tensor([-2.5, -0.5, -1.49, -0.49999999999999994, 0.49999999999999994, 0.5, 2.5, 254.5, 1e6, -1e6],
                     dtype=torch.float64)
    assert round_to(v, torch.int16).tolist() == [-3, -1, -1, 0, 0, 1, 3, 255, 32767, -32768]
    assert round_to(v, torch.uint8).tolist() == [0, 0, 0, 0, 0, 1, 3, 255, 255, 0]
    # MATLAB: imresize(int16([-1 -2]), [1 1]) is -2 (the mean -1.5 rounds away from zero)
    x = torch.tensor([[-1, -2]], dtype=torch.int16)
    assert imresize(x, size=(1, 1)).tolist() == [[-2]]
    assert imresize(-x, size=(1, 1)).tolist() == [[2]]


@pytest.mark.parametrize("size", [(6.5, 8), (0, 4), (-2, 4), (4,), (4, 4, 4), ("4", 4), (True, 4), (float("nan"), 4),
                                  (float("inf"), 4), 8])
def test_size_must_be_two_whole_numbers(size: object) -> None:
    with pytest.raises(ValueError, match="size must be two whole numbers >= 1"):
        imresize(torch.rand(1, 4, 4), size=size)  # type: ignore[arg-type]


def test_whole_float_sizes_are_fine() -> None:
    x = torch.rand(1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(imresize(x, size=(8.0, 6.0)), imresize(x, size=(8, 6)))  # type: ignore[arg-type]
    assert imresize(x, size=(np.int64(3), 5)).shape == (1, 3, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [2.5, 1.5, float("nan"), float("inf"), True])
def test_polyphase_upscale_needs_a_whole_scale(scale: float) -> None:
    with pytest.raises(ValueError, match="integer scale >= 2"):
        upscale_bicubic(torch.rand(1, 1, 4, 4), scale)  # type: ignore[arg-type]
    assert upscale_bicubic(torch.rand(1, 1, 4, 4), 2.0).shape == (1, 1, 8, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
@pytest.mark.parametrize("kwargs", [{"scale": 1}, {"size": (4, 5)}])
def test_scale_one_returns_a_copy(dtype: torch.dtype, kwargs: dict) -> None:
    x = (torch.rand(1, 4, 5) * 200).to(dtype)
    before = x.clone()
    out = imresize(x, **kwargs)
    assert out is not x and out.dtype == dtype
    torch.testing.assert_close(out, before, atol=0, rtol=0)
    out.mul_(0)
    torch.testing.assert_close(x, before, atol=0, rtol=0)


def test_output_size_is_matlabs_ceil_in_doubles() -> None:
    assert imresize(torch.rand(1, 50, 25, dtype=torch.float64), scale=1.1).shape[-2:] == (56, 28)  # 55.00000000000001


def test_a_non_finite_pixel_spreads_no_further_than_matlabs_taps() -> None:
    """MATLAB drops taps whose weight is zero everywhere; the polyphase convolution would multiply NaN by them."""
    x = np.zeros((8, 8), np.float64)
    x[4, 4] = np.nan
    assert int(np.isnan(imresize_np(x, scale=2)).sum()) == 64  # 4 taps per axis reach it: 8 x 8 outputs
