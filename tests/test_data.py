"""Training data: pairs made as in evaluation, the held-out split, and the in-memory patch sampler."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

from subpixel.data import clips
from subpixel.data.clips import ClipSampler, Motion, clip_affines
from subpixel.data.pairs import Pair, fingerprint, load_pair, load_pairs, split_images
from subpixel.data.patches import DIHEDRAL, PatchSampler
from subpixel.errors import SubpixelError
from subpixel.eval.protocol import load_hr, make_lr, modcrop
from subpixel.ops.resize import imresize


def _write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0, suffix: str = ".png") -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i:02d}{suffix}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _nearest_pairs(sizes: list[tuple[int, int]], scale: int) -> list[Pair]:
    """Pairs whose HR is the nearest-neighbour upscale of a random LR: alignment is checkable exactly."""
    gen = torch.Generator().manual_seed(1)
    pairs = []
    for i, (h, w) in enumerate(sizes):
        lr = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        pairs.append(Pair(lr, lr.repeat_interleave(scale, 1).repeat_interleave(scale, 2), f"p{i}"))
    return pairs


def _transform(x: torch.Tensor, t: int) -> torch.Tensor:
    """The dihedral transform ``t`` of :data:`DIHEDRAL` applied to the last two axes."""
    if t & 4:
        x = x.transpose(-1, -2)
    if t & 1:
        x = x.flip(-2)
    if t & 2:
        x = x.flip(-1)
    return x


def test_load_pair_matches_evaluation(tmp_path: Path) -> None:
    (path,) = _write_images(tmp_path, [(23, 31)])
    pair = load_pair(path, 3)
    hr = modcrop(np.asarray(Image.open(path).convert("RGB")), 3)
    assert pair.hr.dtype == pair.lr.dtype == torch.uint8
    assert tuple(pair.hr.shape) == (3, 21, 30) and tuple(pair.lr.shape) == (3, 7, 10)
    assert np.array_equal(pair.hr.permute(1, 2, 0).numpy(), hr)
    assert np.array_equal(pair.lr.permute(1, 2, 0).numpy(), make_lr(hr, 3))
    assert torch.equal(pair.lr, imresize(pair.hr, scale=1 / 3))
    assert pair.name == f"{tmp_path.name}/{path.name}"


def test_load_pairs_keeps_order(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, [(10, 12), (14, 8), (9, 9)])
    pairs = load_pairs(paths, 2, workers=2)
    assert [p.name.split("/")[1] for p in pairs] == [p.name for p in paths]
    assert [tuple(p.hr.shape[1:]) for p in pairs] == [(10, 12), (14, 8), (8, 8)]


def test_split_is_deterministic_and_spread(tmp_path: Path) -> None:
    a = _write_images(tmp_path / "a", [(8, 8)] * 6)
    b = _write_images(tmp_path / "b", [(8, 8)] * 4, suffix=".jpg")
    split = split_images([tmp_path / "a", tmp_path / "b"], val_count=2)
    assert split.val == [a[2], b[1]]
    assert split.train == [p for p in a + b if p not in split.val]
    assert split_images([tmp_path / "a", tmp_path / "b"], val_count=2) == split
    assert split_images([tmp_path / "a"], val_count=0).val == []


def test_split_by_names(tmp_path: Path) -> None:
    a = _write_images(tmp_path / "a", [(8, 8)] * 3)
    b = _write_images(tmp_path / "b", [(8, 8)] * 3, seed=1)  # other pixels than a's: no held-out twin
    folders = [tmp_path / "a", tmp_path / "b"]
    split = split_images(folders, val_count=5, val_names=["a/img01.png", "b/img02"])
    assert split.val == [a[1], b[2]] and len(split.train) == 4
    with pytest.raises(SubpixelError, match="ambiguous"):
        split_images(folders, val_names=["img00.png"])
    with pytest.raises(SubpixelError, match="matches no training image"):
        split_images(folders, val_names=["nope"])
    with pytest.raises(SubpixelError, match="leaves no training images"):
        split_images(folders, val_count=6)


def test_split_refuses_a_folder_or_a_validation_image_given_twice(tmp_path: Path) -> None:
    a = _write_images(tmp_path / "a", [(8, 8)] * 3)
    with pytest.raises(SubpixelError, match=r"^data.train lists .*a twice$"):
        split_images([tmp_path / "a", tmp_path / "a" / ".." / "a"], val_count=1)
    with pytest.raises(SubpixelError, match=r"^data.val_names: 'a/img01.png' names img01.png again$"):
        split_images([tmp_path / "a"], val_names=["img01", "a/img01.png"])
    assert split_images([tmp_path / "a"], val_names=["img01", "img02"]).val == a[1:]


def test_fingerprint_covers_names_and_bytes(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, [(8, 8), (8, 8)])
    first = fingerprint(paths)
    assert first == fingerprint(paths) and len(first) == 64
    assert fingerprint(paths[::-1]) != first
    paths[1].write_bytes(paths[1].read_bytes() + b"\0")
    assert fingerprint(paths) != first


def test_sampler_crops_are_aligned_and_augmented() -> None:
    scale, patch = 3, 4
    pairs = _nearest_pairs([(9, 11), (6, 7), (12, 5)], scale)
    sampler = PatchSampler(pairs, scale, patch, batch=64, seed=0)
    seen = set()
    for _ in range(8):
        lr, hr = sampler.sample()
        assert lr.shape == (64, 3, patch, patch) and hr.shape == (64, 3, patch * scale, patch * scale)
        assert lr.dtype == hr.dtype == torch.float32 and lr.is_contiguous()
        lr8, hr8 = (lr * 255).round().to(torch.uint8), (hr * 255).round().to(torch.uint8)
        # aligned: the HR crop is exactly the nearest upscale of the LR crop
        assert torch.equal(hr8, lr8.repeat_interleave(scale, 2).repeat_interleave(scale, 3))
        for crop in lr8:
            undo = [t for t in range(8) for p in pairs if _occurs(_transform(crop, t), p.lr)]
            assert undo, "a crop is not a flipped/rotated window of any image"
            seen.add(undo[0])
    assert len(seen) == 8


def _inverse(t: int) -> int:
    """Inverse of :func:`_transform` ``t`` (flips undo themselves; after a transpose they swap axes)."""
    return t if not t & 4 else 4 | ((t & 1) << 1) | ((t & 2) >> 1)


def _occurs(window: torch.Tensor, image: torch.Tensor) -> bool:
    p = window.shape[-1]
    tiles = image.unfold(1, p, 1).unfold(2, p, 1)  # (3, H-p+1, W-p+1, p, p)
    return bool((tiles == window[:, None, None]).flatten(3).all(-1).all(0).any())


def test_dihedral_table_matches_transforms() -> None:
    img = torch.arange(25).view(5, 5)
    i, j = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    for t, (fa, ai, aj, fb, bi, bj) in enumerate(DIHEDRAL.tolist()):
        gathered = img[fa * 4 + ai * i + aj * j, fb * 4 + bi * i + bj * j]
        assert torch.equal(gathered, _transform(img, _inverse(t)))


def test_sampler_without_augment_is_upright() -> None:
    pairs = _nearest_pairs([(8, 8)], 2)
    sampler = PatchSampler(pairs, 2, 3, batch=16, augment=False, seed=3)
    lr, _ = sampler.sample()
    for crop in (lr * 255).round().to(torch.uint8):
        assert _occurs(crop, pairs[0].lr)


def test_sampler_stream_is_seeded_and_restorable() -> None:
    pairs = _nearest_pairs([(10, 10), (12, 9)], 2)
    a = PatchSampler(pairs, 2, 4, batch=8, seed=7)
    b = PatchSampler(pairs, 2, 4, batch=8, seed=7)
    other = PatchSampler(pairs, 2, 4, batch=8, seed=8)
    first = a.sample()
    assert torch.equal(first[0], b.sample()[0])
    assert not torch.equal(first[0], other.sample()[0])
    state = a.get_state()
    expected = a.sample()
    b.set_state(state)
    got = b.sample()
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    other.reseed(7)
    assert torch.equal(other.sample()[0], first[0])


@pytest.mark.parametrize("chunk", [1, 3])
def test_sampler_state_round_trips_at_every_position(chunk: int) -> None:
    pairs = _nearest_pairs([(10, 10), (12, 9)], 2)
    per_batch = 4 * 3 * 2 * 4 * 4 * 5
    make = lambda: PatchSampler(pairs, 2, 4, batch=2, seed=5, chunk_bytes=chunk * per_batch)  # noqa: E731
    straight = make()
    assert straight.chunk == chunk
    stream = [straight.sample()[1] for _ in range(8)]
    walker = make()
    for i in range(8):
        restored = make()
        restored.set_state(walker.get_state())
        assert torch.equal(restored.sample()[1], stream[i]), i
        assert torch.equal(walker.sample()[1], stream[i]), i


def test_sampler_skips_small_images() -> None:
    pairs = _nearest_pairs([(10, 10), (3, 20)], 2)
    sampler = PatchSampler(pairs, 2, 4, batch=4)
    assert sampler.skipped == ["p1"] and sampler.num_images == 1
    assert sampler._lr.numel() + sampler._hr.numel() == 100 + 400  # only the 10x10 image is packed
    with pytest.raises(SubpixelError, match="data.patch=11"):
        PatchSampler(pairs, 2, 11, batch=4)


@pytest.mark.shared
def test_shared_training_folders_split(shared_data: Path) -> None:
    root = shared_data / "train"
    folders = [root / n for n in ("T91", "BSD200", "BSDS500_test")]
    split = split_images(folders, val_count=10)
    assert len(split.train) + len(split.val) == 491 and len(split.val) == 10
    assert {p.parent.name for p in split.val} == {"T91", "BSD200", "BSDS500_test"}


def test_a_held_out_image_s_byte_twin_is_left_out_of_training(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "a", [(12, 12)] * 5)
    twin = tmp_path / "a" / "twin.png"
    twin.write_bytes(paths[1].read_bytes())  # the same image under another name (as T91's t36 and t65)
    with pytest.warns(UserWarning, match=r"1 training images .* same content .*: a/twin.png \(= a/img01.png\)"):
        split = split_images([tmp_path / "a"], val_names=["img01"])
    assert split.val == [paths[1]] and twin not in split.train and len(split.train) == 4
    with pytest.warns(UserWarning, match="twin.png"):
        assert twin not in split_images([tmp_path / "a"], val_count=2).train  # held out: img01 and img04
    # the split's file hashes are reused by the fingerprint, which reads no file again
    files = split.train + split.val
    assert split.digests.keys() == set(files) | {twin}
    assert fingerprint(files, split.digests) == fingerprint(files)
    twin.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert split_images([tmp_path / "a"], val_names=["img01"]).train == [paths[0], *paths[2:]]


# --- clips from stills ---------------------------------------------------------------------------------------


def _stills(folder: Path, sides: list[int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, side in enumerate(sides):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"s{i}_{side}.png")


def test_every_camera_move_fits_a_still_of_the_roomy_side() -> None:
    assert clips.roomy_side(10, 128, Motion()) == 179  # shipped FRVSR x4 clips (patch 32): 452 of 479 stills
    g = torch.Generator().manual_seed(0)
    for frames, size, motion in ((10, 128, Motion()), (6, 32, Motion(speed=1, accel=2, zoom=0.05, rotation=60))):
        side = clips.roomy_side(frames, size, motion)
        for _ in range(1500):
            clip_affines((side, side), frames, size, motion, g)  # never raises
    # the bound is reached: the fastest move along x, zooming in and turning (the extreme of each random draw)
    corners = torch.tensor([[0.0, 0.0], [127.0, 0.0], [0.0, 127.0], [127.0, 127.0]], dtype=torch.float64) - 63.5
    turn, span = math.radians(0.3), []
    for t in range(10):
        z = math.exp(0.005 * t)
        rot = z * torch.tensor([[math.cos(turn * t), -math.sin(turn * t)], [math.sin(turn * t), math.cos(turn * t)]],
                               dtype=torch.float64)
        span.append((corners @ rot.T)[:, 0] + 3.0 * t + 0.125 * t * t)
    reach = torch.stack(span)
    assert clips.motion_extent(10, 128, Motion()) == pytest.approx((reach.max() - reach.min()).item())


def test_clip_stills_too_small_for_the_motion_are_refused_up_front(tmp_path: Path) -> None:
    _stills(tmp_path / "small", [150, 150, 150])  # hold a 128px crop, but not every 10-frame move: died at step 331
    with pytest.raises(SubpixelError, match="needs a side of 179 pixels, the largest still has 150"):
        ClipSampler([tmp_path / "small"], frames=10, size=128, scale=4, seed=1)


def test_clip_draws_always_succeed_and_small_stills_are_warned_about(tmp_path: Path) -> None:
    _stills(tmp_path / "s", [40, 150, 150, 180])
    with pytest.warns(UserWarning, match=r"1 stills have a side under 134 pixels .*: s/s0_40.png"):
        sampler = ClipSampler([tmp_path / "s"], frames=10, size=128, scale=4, seed=1)
    assert [p.name for p in sampler.skipped] == ["s0_40.png"] and len(sampler.stills) == 3
    g = torch.Generator().manual_seed(0)
    for _ in range(50):  # with no redraw left the still comes from those that hold every move: never a failure
        still, _ = sampler._draw(g, attempts=0)
        assert still.shape == (3, 180, 180)


def test_training_stills_skip_hidden_files_and_keep_name_order(tmp_path: Path) -> None:
    """Training lists folders in plain name order, as it always has (a run's data fingerprint, held-out slice
    and crop streams depend on it), not in the natural order evaluation uses for frames."""
    rng = np.random.default_rng(0)
    for name in ("s10.png", "s9.png", "s2.png"):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "._s9.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # not an image
    sampler = ClipSampler([tmp_path], frames=2, size=32, scale=2)
    assert [p.name for p in sampler.paths] == ["s10.png", "s2.png", "s9.png"]
    split = split_images([tmp_path], val_count=1)
    held = {p.name for p in split.val}
    names = [n for n in ("s10.png", "s2.png", "s9.png") if n not in held]
    assert len(held) == 1 and [p.name for p in split.train] == names


def _png16(path: Path, pixels: np.ndarray) -> None:
    h, w = pixels.shape[:2]
    with open(path, "wb") as f:
        png.Writer(w, h, bitdepth=16, greyscale=pixels.ndim == 2).write(f, pixels.reshape(h, -1).tolist())


def test_clip_stills_decode_16_bit_and_grey_as_evaluation_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (48, 52), dtype=np.uint16)
    colour = rng.integers(0, 65536, (50, 48, 3), dtype=np.uint16)
    _png16(tmp_path / "grey16.png", grey)
    _png16(tmp_path / "rgb16.png", colour)
    Image.fromarray(rng.integers(0, 256, (49, 50), dtype=np.uint8), "L").save(tmp_path / "grey8.png")
    sampler = ClipSampler([tmp_path], frames=2, size=32, scale=2)
    assert [p.name for p in sampler.paths] == ["grey16.png", "grey8.png", "rgb16.png"]
    for path, still in zip(sampler.paths, sampler.stills):
        assert np.array_equal(still.permute(1, 2, 0).numpy(), load_hr(path)), path.name
    rounded = ((grey.astype(np.int64) + 128) // 257).astype(np.uint8)  # not clipped at 255
    assert np.array_equal(sampler.stills[0].numpy(), np.stack([rounded] * 3))
    assert np.array_equal(sampler.stills[2].permute(1, 2, 0).numpy(), (colour.astype(np.int64) + 128) // 257)
