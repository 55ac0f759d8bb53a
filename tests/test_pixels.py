"""Float-to-integer pixel quantization (``subpixel.ops.pixels``): one rounding rule for every output path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subpixel.ops import quantize, quantize_np

# Exact ties (float32(k.5 / 255) * 255 is exactly k.5, so half-even would give 0, 2, 2, 254 for the first four), values
# just off a tie, out-of-range values that must clamp, and the ends.
CASES_U8 = [(0.5 / 255, 1), (1.5 / 255, 2), (2.5 / 255, 3), (254.5 / 255, 255), (0.49 / 255, 0), (0.51 / 255, 1),
            (-0.25, 0), (-1e-9, 0), (1.0, 255), (1.5, 255), (float("inf"), 255), (float("-inf"), 0), (0.0, 0)]


@pytest.mark.parametrize("inplace", [False, True])
def test_quantize_rounds_ties_up_and_clamps(inplace: bool) -> None:
    x = torch.tensor([v for v, _ in CASES_U8], dtype=torch.float32)
    kept = x.clone()
    q = quantize(x, inplace=inplace)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert q.tolist() == [want for _, want in CASES_U8]
    if not inplace:
        assert torch.equal(x, kept)  # the input is left as it is


def test_quantize_uint16_and_numpy_twin_agree() -> None:
    x = torch.tensor([0.5 / 65535, 1.5 / 65535, 2.5 / 65535, 65534.5 / 65535, -0.1, 1.2, 1.0, 0.0])
    q = quantize(x, torch.uint16)
    assert q.dtype == torch.uint16 and q.tolist() == [1, 2, 3, 65535, 0, 65535, 65535, 0]
    np.testing.assert_array_equal(quantize_np(x.numpy(), np.uint16), q.numpy())
    rand = torch.rand(4, 3, 17, 19, dtype=torch.float64) * 1.2 - 0.1  # float64 in: computed in float32 as well
    for tdt, ndt in ((torch.uint8, np.uint8), (torch.uint16, np.uint16)):
        np.testing.assert_array_equal(quantize_np(rand.numpy(), ndt), quantize(rand, tdt).numpy())
    with pytest.raises(ValueError, match="uint8 or .*uint16"):
        quantize(x, torch.int32)
    with pytest.raises(ValueError, match="uint8 or .*uint16"):
        quantize_np(x.numpy(), np.int16)
