"""FRVSR: the model, synthetic clips, the recurrent processor, video evaluation and training."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

import subpixel
from subpixel.cli import cli
from subpixel.data.clips import ClipSampler, Motion, exact_flow, make_clip, render_frames
from subpixel.data.pairs import fingerprint
from subpixel.errors import SubpixelError
from subpixel.eval.video import evaluate_video, format_video_report
from subpixel.models import frvsr as frvsr_model
from subpixel.models import registry
from subpixel.models.frvsr import FRVSR, FNet, upsample_flow, warp
from subpixel.models.registry import build
from subpixel.models.weights import load_net, read_card
from subpixel.ops.flow import lucas_kanade
from subpixel.ops.resize import imresize
from subpixel.train import frvsr as frvsr_train
from subpixel.train.budget import IterationBudget
from subpixel.train.checkpoint import latest_checkpoint
from subpixel.train.distributed import DistInfo
from subpixel.train.frvsr import FRVSRConfig, frvsr_loss, train_frvsr
from subpixel.train.warm_start import warm_start
from subpixel.upscaler import Upscaler
from subpixel.video.pipeline import SCENE_CUT_THRESHOLD, FrameProcessor, as_processor
from subpixel.video.recurrent import RecurrentProcessor
from tests.conftest import free_ports

TINY = {"channels": 8, "blocks": 1, "flow_channels": [4, 8]}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors run fastest on one thread, and far faster than several on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def wake_recurrent_path(net: FRVSR) -> FRVSR:
    """Give the zero-initialised recurrent path (folded-estimate weights, FNet's last conv) values."""
    if net.fnet is not None:
        with torch.no_grad():
            net.head[0].weight[:, 3:].normal_(std=0.05)
            net.fnet.head[-1].weight.normal_(std=0.05)
    return net


def tiny_frvsr(scale: int = 2, recurrent: bool = True, fresh: bool = False) -> FRVSR:
    """A tiny FRVSR; unless ``fresh``, its recurrent path is woken so that tests see it act."""
    torch.manual_seed(0)
    net = build("frvsr", scale, recurrent=recurrent, **TINY)
    assert isinstance(net, FRVSR)
    return (net if fresh else wake_recurrent_path(net)).eval()


def smooth_still(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A uint8 ``(3, h, w)`` still with structure at several scales (flow can lock onto it)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    img = img + 0.15 * torch.rand(3, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(scale: int) -> None:
    net = tiny_frvsr(scale)
    with torch.no_grad():
        assert net(torch.rand(2, 3, 12, 10)).shape == (2, 3, 12 * scale, 10 * scale)
        sr, flows = net.forward_sequence(torch.rand(2, 3, 3, 12, 10), return_flows=True)
    assert sr.shape == (2, 3, 3, 12 * scale, 10 * scale)
    assert flows.shape == (2, 2, 2, 12, 10)
    with pytest.raises(SubpixelError):
        build("frvsr", 3)


def test_new_recurrent_network_starts_as_its_ablation() -> None:
    net, ablation = tiny_frvsr(2, True, fresh=True), tiny_frvsr(2, False, fresh=True)
    shared = ablation.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in net.state_dict().items() if not k.startswith("fnet."))
    lr = torch.rand(1, 4, 3, 16, 16)
    with torch.no_grad():
        sr, flows = net.forward_sequence(lr, return_flows=True)
        assert torch.equal(flows[:, 1], lucas_kanade(lr[:, 2], lr[:, 1]))  # FNet starts as the estimate it refines
        assert torch.equal(tiny_frvsr(2, True, fresh=True).fnet.initial_flow(lr[:, 2], lr[:, 1]), flows[:, 1])
        assert torch.allclose(sr, ablation.forward_sequence(lr), atol=1e-6)
        assert not torch.allclose(sr, wake_recurrent_path(net).forward_sequence(lr), atol=1e-4)


def test_recurrent_input_is_used_and_ablation_ignores_it() -> None:
    lr = torch.rand(1, 3, 3, 16, 16)
    changed = lr.clone()
    changed[:, 1] = torch.rand(1, 3, 16, 16)
    for recurrent in (True, False):
        net = tiny_frvsr(2, recurrent)
        with torch.no_grad():
            a, b = net.forward_sequence(lr), net.forward_sequence(changed)
        differs = not torch.allclose(a[:, 2], b[:, 2])
        assert differs == recurrent
        if not recurrent:
            assert torch.allclose(a[:, 2], net(lr[:, 2]), atol=1e-6)
            assert net.forward_sequence(lr, return_flows=True)[1] is None


def test_step_matches_forward_sequence() -> None:
    net = tiny_frvsr(4)
    lr = torch.rand(2, 4, 3, 10, 12)
    with torch.no_grad():
        whole = net.forward_sequence(lr)
        state, steps = None, []
        for t in range(4):
            sr, state = net.step(lr[:, t], state)
            steps.append(sr)
    assert torch.allclose(torch.stack(steps, 1), whole, atol=1e-6)
    assert torch.allclose(whole[:, 0], net(lr[:, 0]), atol=1e-6)


def test_fnet_refines_lucas_kanade_or_learns_from_scratch() -> None:
    g = torch.Generator().manual_seed(5)
    clip = make_clip(smooth_still(160, 160), 3, 64, 4, Motion(speed=3.0, accel=0.2, zoom=0.01, rotation=0.5), g)
    lr, truth = clip.lr.float() / 255, exact_flow(clip.affines, 16, 4)
    inner = (..., slice(3, -3), slice(3, -3))
    lk = lucas_kanade(lr[1:], lr[:-1])
    assert (lk - truth).norm(dim=1)[inner].mean() < 0.3 * truth.norm(dim=1)[inner].mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # solved in float32 whatever the autocast state
        assert torch.equal(lucas_kanade(lr[1:], lr[:-1]), lk)
    torch.manual_seed(0)
    fnet = FNet((4, 8), lk_levels=2)
    with torch.no_grad():
        assert torch.equal(fnet(lr[1:], lr[:-1]), lk)
        fnet.head[-1].bias.fill_(0.01)
        assert torch.allclose(fnet(lr[1:], lr[:-1]) - lk, torch.full_like(lk, 8 * math.tanh(0.01)), atol=1e-6)
    scratch = FNet((4, 8), lk_levels=0)
    assert torch.equal(scratch(lr[1:], lr[:-1]), torch.zeros_like(lk))


def test_warp_integer_shift_is_exact_inside() -> None:
    img = torch.rand(1, 3, 20, 24)
    flow = torch.zeros(1, 2, 20, 24)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # sample 3 px right, 2 px up
    out = warp(img, flow)
    assert torch.allclose(out[..., 2:, :-3], img[..., :-2, 3:], atol=1e-5)
    up = upsample_flow(flow, 4)
    assert up.shape == (1, 2, 80, 96)
    assert torch.allclose(up[:, 0], torch.full_like(up[:, 0], 12.0))


def test_clip_frames_are_aligned_and_moving() -> None:
    still = smooth_still(120, 140)
    g = torch.Generator().manual_seed(3)
    clip = make_clip(still, 5, 32, 4, Motion(speed=2.0, accel=0.2, zoom=0.01, rotation=0.5), g)
    assert clip.hr.shape == (5, 3, 32, 32) and clip.lr.shape == (5, 3, 8, 8)
    assert clip.hr.dtype == clip.lr.dtype == torch.uint8
    assert torch.equal(clip.lr, imresize(clip.hr, scale=0.25))
    assert torch.equal(clip.hr[2:3], render_frames(still, clip.affines[2:3], 32))
    assert all(not torch.equal(clip.hr[t], clip.hr[t + 1]) for t in range(4))
    assert (clip.affines[1:, :, 2] - clip.affines[:-1, :, 2]).abs().max() > 0.01
    # an integer translation renders an exact crop of the still
    shift = torch.tensor([[[1.0, 0.0, 17.0], [0.0, 1.0, 9.0]]], dtype=torch.float64)
    assert torch.equal(render_frames(still, shift, 32)[0], still[:, 9:41, 17:49])


def test_exact_flow_aligns_frames() -> None:
    shift = torch.tensor([[[1.0, 0.0, 10.0], [0.0, 1.0, 12.0]], [[1.0, 0.0, 14.0], [0.0, 1.0, 10.0]]],
                         dtype=torch.float64)  # frame 1 shows the still 4 px right, 2 px up of frame 0
    flow = exact_flow(shift, 8, 2)
    assert flow.shape == (1, 2, 8, 8)
    assert torch.allclose(flow[0, 0], torch.full((8, 8), 2.0)) and torch.allclose(flow[0, 1], torch.full((8, 8), -1.0))
    g = torch.Generator().manual_seed(5)
    clip = make_clip(smooth_still(160, 160), 4, 64, 4, Motion(speed=3.0, accel=0.2, zoom=0.01, rotation=0.5), g)
    lr = clip.lr.float() / 255
    flow = exact_flow(clip.affines, 16, 4)
    inner = (..., slice(3, -3), slice(3, -3))
    aligned = (warp(lr[:-1], flow) - lr[1:])[inner].abs().mean()
    assert aligned < 0.5 * (lr[:-1] - lr[1:])[inner].abs().mean()


def test_clip_sampler_is_deterministic(tmp_path: Path) -> None:
    Image.fromarray(smooth_still(90, 100).permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    Image.fromarray(smooth_still(20, 20).permute(1, 2, 0).numpy()).save(tmp_path / "small.png")  # skipped
    sampler = ClipSampler([tmp_path], frames=3, size=32, scale=2, seed=1)
    assert len(sampler.stills) == 1
    lr, hr = sampler.batch(5, 2)
    assert lr.shape == (2, 3, 3, 16, 16) and hr.shape == (2, 3, 3, 32, 32)
    assert torch.equal(sampler.batch(5, 2)[1], hr)
    assert not torch.equal(sampler.batch(6, 2)[1], hr)
    lr2, hr2, moves = sampler.batch_with_affines(5, 2)
    assert torch.equal(lr2, lr) and torch.equal(hr2, hr) and moves.shape == (2, 3, 2, 3)
    assert torch.equal(render_frames(sampler.stills[0], moves[1], 32), hr[1])


def test_recurrent_processor_carries_state_and_resets() -> None:
    net = tiny_frvsr(2)
    frames = torch.rand(5, 3, 12, 12)
    with torch.no_grad():
        expected = net.forward_sequence(frames[None])[0]
    proc = RecurrentProcessor(net, device="cpu")
    assert isinstance(proc, FrameProcessor) and proc.scale == 2
    out = torch.cat([proc.process(frames[:2]), proc.process(frames[2:])])
    assert torch.allclose(out, expected, atol=1e-5)
    proc.reset()
    assert torch.allclose(proc.process(frames[3:4]), net(frames[3:4]), atol=1e-5)


def test_recurrent_processor_starts_afresh_at_a_scene_cut() -> None:
    net = tiny_frvsr(2)
    torch.manual_seed(0)
    scene_a = torch.rand(1, 3, 12, 12).expand(3, -1, -1, -1) * 0.5  # a still scene, then a cut to another
    scene_a = scene_a + 0.01 * torch.arange(3).view(3, 1, 1, 1)  # a slow fade: no cut
    scene_b = 0.5 + torch.rand(1, 3, 12, 12).expand(2, -1, -1, -1) * 0.5
    frames = torch.cat([scene_a, scene_b])
    with torch.no_grad():
        fresh = net(scene_b[:1])
    plain = RecurrentProcessor(net, device="cpu").process(frames)
    assert not torch.allclose(plain[3:4], fresh, atol=1e-4)  # without detection: fed the warped scene A
    proc = RecurrentProcessor(net, device="cpu", cut_threshold=10)
    out = proc.process(frames)
    assert proc.cuts == 1 and torch.allclose(out[3:4], fresh, atol=1e-5)
    assert torch.allclose(out[:3], plain[:3], atol=1e-6)  # the fade before the cut is one scene
    with pytest.raises(ValueError, match="cut_threshold"):
        RecurrentProcessor(net, device="cpu", cut_threshold=0)
    video = as_processor(Upscaler(net, name="frvsr", device="cpu"))  # subpixel video detects cuts
    assert isinstance(video, RecurrentProcessor) and video.cut_threshold == SCENE_CUT_THRESHOLD


def test_scene_cuts_found_after_flashes_and_one_frame_shots_not_in_steady_pans() -> None:
    torch.manual_seed(0)
    a, b, c, white = torch.rand(1, 3, 12, 12) * 0.3, 0.35 + torch.rand(1, 3, 12, 12) * 0.3, \
        0.7 + torch.rand(1, 3, 12, 12) * 0.3, torch.ones(1, 3, 12, 12)

    def cuts(*frames: torch.Tensor) -> list[int]:
        proc, found = RecurrentProcessor(tiny_frvsr(2), device="cpu", cut_threshold=10), []
        for frame in frames:
            before = proc.cuts
            proc.process(frame)
            found.append(proc.cuts - before)
        return found

    assert cuts(a, a, white, a, a) == [0, 0, 1, 1, 0]  # a flash: back to A is a cut too
    assert cuts(a, a, b, c, c) == [0, 0, 1, 1, 0]  # a one-frame shot
    texture = torch.rand(1, 3, 12, 12) * 0.7
    pan = [torch.roll(texture, 2 * k, dims=3) for k in range(5)]  # the same large change (17%) every frame
    assert cuts(*pan) == [0] * 5


def _clip_folder(root: Path, name: str, frames: int = 4) -> None:
    still = smooth_still(80, 90, seed=len(name))
    folder = root / name
    folder.mkdir(parents=True)
    for t in range(frames):
        crop = still[:, 4 + t: 52 + t, 6 + 2 * t: 62 + 2 * t]  # 48 x 56, moving right and down
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(folder / f"{t:08d}.png")


class _Identity:
    name = "identity"

    def process(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def reset(self) -> None:
        pass


def test_video_eval_identity_and_recurrent(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    _clip_folder(tmp_path, "pan")
    _clip_folder(tmp_path, "drift", frames=3)
    result = evaluate_video(_Identity(), tmp_path, scale=1, progress=False)
    assert [c.name for c in result.clips] == ["drift", "pan"] and result.frames == 7
    assert math.isinf(result.psnr) and math.isinf(result.psnr_all_frames) and result.ssim == pytest.approx(1.0)
    assert result.warp_error is not None and math.isfinite(result.warp_error)
    assert result.warp_error == pytest.approx(result.warp_error_gt)
    assert result.warp_error_gt < 2.0  # flow explains a pure translation
    report = format_video_report(result)
    assert "| pan | 4 | inf |" in report and "mean of clips" in report

    plain = evaluate_video(_Identity(), tmp_path, scale=1, temporal=False, progress=False)
    assert plain.warp_error is None and "| pan | 4 | inf | 1.0000 | — | — |" in format_video_report(plain)

    net = tiny_frvsr(2)
    rec = evaluate_video(lambda: RecurrentProcessor(net, device="cpu"), tmp_path, scale=2, progress=False)
    assert all(math.isfinite(c.psnr) and c.warp_error is not None for c in rec.clips)
    assert rec.model == "frvsr x2 fp32" and rec.to_dict()["psnr"] == pytest.approx(rec.psnr)
    # an FRVSR Upscaler (what `subpixel eval --video` loads) runs recurrently, not frame by frame
    via_upscaler = evaluate_video(subpixel.Upscaler(net, name="frvsr", device="cpu"), tmp_path, scale=2,
                                  progress=False)
    assert via_upscaler.psnr == pytest.approx(rec.psnr, abs=1e-3)  # memory format differs: float noise only
    assert via_upscaler.warp_error == pytest.approx(rec.warp_error, abs=1e-3)

    bicubic = evaluate_video(subpixel.load("bicubic", scale=2), tmp_path, scale=2, clips=["pan"], progress=False)
    assert bicubic.model == "bicubic" and 15 < bicubic.psnr < 60 and bicubic.frames == 4
    with pytest.raises(SubpixelError, match="x2"):
        evaluate_video(subpixel.load("bicubic", scale=2), tmp_path, scale=4, progress=False)


def test_video_eval_without_opencv_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clip_folder(tmp_path, "pan", frames=2)
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes ``import cv2`` fail
    with pytest.raises(SubpixelError, match="OpenCV"):
        evaluate_video(_Identity(), tmp_path, scale=1, progress=False)


def _frames(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """A clip of smooth frames of the given (height, width)s."""
    folder.mkdir(parents=True)
    for t, (h, w) in enumerate(sizes):
        Image.fromarray(smooth_still(h, w).permute(1, 2, 0).numpy()).save(folder / f"{t}.png")
    return folder.parent


def test_video_eval_refuses_frames_too_small_or_of_another_size(tmp_path: Path) -> None:
    tiny = _frames(tmp_path / "tiny" / "c", [(16, 16)] * 2)
    with pytest.raises(SubpixelError, match=r"0\.png: too small to evaluate at x4"):
        evaluate_video(subpixel.load("bicubic", scale=4), tiny, scale=4, temporal=False, progress=False)
    varying = _frames(tmp_path / "var" / "c", [(48, 48), (48, 52)])
    with pytest.raises(SubpixelError, match=r"1\.png: frame size 52x48 differs from the clip's first frame 0\.png"):
        evaluate_video(subpixel.load("bicubic", scale=2), varying, scale=2, temporal=False, progress=False)


def test_video_warping_error_is_the_mean_of_the_clips_that_have_one(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    _clip_folder(tmp_path, "pan", frames=3)
    _clip_folder(tmp_path, "still", frames=1)  # one frame: no warping error
    result = evaluate_video(_Identity(), tmp_path, scale=1, progress=False)
    pan = result.clips[0]
    assert result.clips[1].warp_error is None and pan.warp_error is not None
    assert result.warp_error == pan.warp_error and result.warp_error_gt == pan.warp_error_gt
    assert "means over the 1 of 2 clips that have one" in format_video_report(result)


def test_eval_video_runs_bicubic_once_whatever_its_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("subpixel.eval.video.has_opencv", lambda: False)
    _clip_folder(tmp_path, "pan", frames=2)
    res = CliRunner().invoke(cli, ["eval", "--video", str(tmp_path), "-m", "Bicubic", "-s", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.stdout)] == ["bicubic"]


def _recipe(tmp_path: Path, iters: int) -> FRVSRConfig:
    data = tmp_path / "stills"
    if not data.is_dir():
        data.mkdir()
        for i in range(2):
            Image.fromarray(smooth_still(70, 80, seed=i).permute(1, 2, 0).numpy()).save(data / f"{i}.png")
    return FRVSRConfig.from_dict({
        "data": [str(data)], "scale": 2, "arch": TINY, "frames": 3, "patch": 12, "batch": 2, "iters": iters,
        "lr": "1e-3", "ckpt_every": 2, "device": "cpu", "motion": {"speed": 1.5},
    })


def _on_batch(monkeypatch: pytest.MonkeyPatch, call: int, action: Callable[[], None]) -> None:
    """Make the clip sampler run ``action`` as it draws its ``call``-th batch (1-based)."""
    real, calls = ClipSampler.batch_with_affines, []

    def batch(self: ClipSampler, step: int, n: int, part: tuple[int, int] = (0, 1)
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        calls.append(step)
        if len(calls) == call:
            action()
        return real(self, step, n, part)

    monkeypatch.setattr(frvsr_train.ClipSampler, "batch_with_affines", batch)


def _crash() -> None:
    raise KeyboardInterrupt


def test_training_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _recipe(tmp_path, iters=4)
    whole = load_file(str(train_frvsr(cfg, tmp_path / "whole", progress=False)))

    _on_batch(monkeypatch, 4, _crash)  # step 3: a crash before it completes
    with pytest.raises(KeyboardInterrupt):
        train_frvsr(cfg, tmp_path / "resumed", progress=False)
    assert latest_checkpoint(tmp_path / "resumed").name == "iter_00000002.pt"
    monkeypatch.undo()
    weights = train_frvsr(cfg, tmp_path / "resumed", progress=False)
    resumed = load_file(str(weights))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert weights.name == "frvsr_x2.safetensors" and weights.with_suffix(".json").is_file()

    other = FRVSRConfig.from_dict({**cfg.to_dict(), "seed": 1})
    with pytest.raises(SubpixelError, match="different recipe"):
        train_frvsr(other, tmp_path / "resumed", progress=False)


def test_an_existing_run_needs_resume_and_ctrl_c_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=5).to_dict(), "ckpt_every": 0})
    whole = load_file(str(train_frvsr(cfg, tmp_path / "whole", progress=False)))
    with pytest.raises(SubpixelError, match="--resume"):  # a finished run is not silently trained again
        train_frvsr(cfg, tmp_path / "whole", resume=False, progress=False)
    _on_batch(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C mid-step 3: it completes
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt) as stop:
        train_frvsr(cfg, tmp_path / "cut")
    assert latest_checkpoint(tmp_path / "cut").name == "iter_00000003.pt"
    assert stop.value.details == {"run_dir": str(tmp_path / "cut"), "iteration": 3,  # the --json error's
                                  "checkpoint": str(latest_checkpoint(tmp_path / "cut"))}
    out, err = capsys.readouterr()  # the message goes with the progress bar: stdout is left to results (--json)
    assert "interrupted: checkpoint at iteration 3" in err and "interrupted" not in out
    monkeypatch.undo()
    resumed = load_file(str(train_frvsr(cfg, tmp_path / "cut", progress=False)))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    speed = json.loads((tmp_path / "cut/throughput.json").read_text())  # the interrupted session counts too
    assert [(r["from_iteration"], r["to_iteration"]) for r in speed["sessions"]] == [(0, 3), (3, 5)]


def test_time_limit_stops_at_a_log_step_with_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=6).to_dict(), "log_every": 3, "ckpt_every": 0})
    assert train_frvsr(cfg, tmp_path / "run", time_limit=0.0) is None
    out, err = capsys.readouterr()
    assert "time limit reached at iteration 3" in err and "time limit" not in out
    assert latest_checkpoint(tmp_path / "run").name == "iter_00000003.pt"
    weights = train_frvsr(cfg, tmp_path / "run", progress=False)
    assert weights is not None and latest_checkpoint(tmp_path / "run").name == "iter_00000006.pt"
    speed = json.loads((tmp_path / "run/throughput.json").read_text())
    assert [(r["from_iteration"], r["to_iteration"]) for r in speed["sessions"]] == [(0, 3), (3, 6)]
    assert 0 <= speed["overall"]["data_wait_share"] <= 1 and speed["overall"]["iters_per_s"] > 0
    assert read_card(weights)["training"]["throughput"] == speed["overall"]


def test_resume_refuses_changed_stills_and_a_checkpoint_past_iters(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=2).to_dict(), "ckpt_every": 1})
    train_frvsr(cfg, tmp_path / "run", progress=False)
    with pytest.raises(SubpixelError, match="past iters"):
        train_frvsr(FRVSRConfig.from_dict({**cfg.to_dict(), "iters": 1}), tmp_path / "run", progress=False)
    Image.fromarray(smooth_still(70, 80, seed=5).permute(1, 2, 0).numpy()).save(Path(cfg.data[0]) / "new.png")
    with pytest.raises(SubpixelError, match="stills differ .* changed or renamed, folders included"):
        train_frvsr(FRVSRConfig.from_dict({**cfg.to_dict(), "iters": 3}), tmp_path / "run", progress=False)


def test_card_fingerprints_the_stills(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=1).to_dict(), "ckpt_every": 0})
    data = load_net(train_frvsr(cfg, tmp_path / "run", progress=False))[1]["training"]["data"]
    stills = sorted(Path(cfg.data[0]).glob("*.png"))
    assert data["stills"] == len(stills) == 2 and data["sha256"] == fingerprint(stills)


def test_ema_weights_are_exported(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=3).to_dict(), "ema": 0.5, "ckpt_every": 0})
    weights = load_file(str(train_frvsr(cfg, tmp_path / "run", progress=False)))
    ckpt = torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)
    assert all(torch.equal(weights[k], ckpt["ema"][k]) for k in weights)
    assert any(not torch.equal(weights[k], ckpt["model"][k]) for k in weights)
    with pytest.raises(SubpixelError, match="ema"):
        FRVSRConfig.from_dict({**cfg.to_dict(), "ema": 1.0})


@pytest.mark.filterwarnings("ignore:amp bf16 on a CPU")
def test_bf16_autocast_trains_and_fp16_needs_cuda(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=2).to_dict(), "ckpt_every": 0})
    full = load_file(str(train_frvsr(cfg, tmp_path / "fp32", progress=False)))
    bf16 = FRVSRConfig.from_dict({**cfg.to_dict(), "amp": "bf16"})
    half = load_file(str(train_frvsr(bf16, tmp_path / "bf16", progress=False)))
    assert all(torch.isfinite(v).all() for v in half.values())
    assert any(not torch.equal(full[k], half[k]) for k in full)  # the network really ran in bf16
    with pytest.raises(SubpixelError, match="fp16 needs CUDA"):
        train_frvsr(FRVSRConfig.from_dict({**cfg.to_dict(), "amp": "fp16"}), tmp_path / "fp16", progress=False)
    with pytest.raises(SubpixelError, match="amp: expected one of off, bf16, fp16"):
        FRVSRConfig.from_dict({**cfg.to_dict(), "amp": "int8"})


def test_a_bare_off_for_amp_reads_as_off_as_in_image_recipes(tmp_path: Path) -> None:
    raw = yaml.safe_load("amp: off")  # YAML 1.1: false
    assert FRVSRConfig.from_dict({**_recipe(tmp_path, iters=1).to_dict(), **raw}).amp == "off"


def test_checkpoint_from_before_a_new_recipe_key_resumes(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=4).to_dict(), "ckpt_every": 2})
    train_frvsr(cfg, tmp_path / "run", progress=False)
    ckpt_file = tmp_path / "run/checkpoints/iter_00000004.pt"
    ckpt = torch.load(ckpt_file, weights_only=True)
    del ckpt["config"]["amp"], ckpt["scaler"]  # as written before ``amp`` existed
    torch.save(ckpt, ckpt_file)
    longer = FRVSRConfig.from_dict({**cfg.to_dict(), "iters": 5})
    assert train_frvsr(longer, tmp_path / "run", progress=False) is not None
    assert latest_checkpoint(tmp_path / "run").name == "iter_00000005.pt"


def test_ablation_trains_without_fnet(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=1).to_dict(), "recurrent": False})
    weights = train_frvsr(cfg, tmp_path / "norec", progress=False)
    assert weights.name == "frvsr-norec_x2.safetensors"
    assert not any(k.startswith("fnet.") for k in load_file(str(weights)))
    net, card = load_net(weights)
    assert isinstance(net, FRVSR) and not net.recurrent and card["arch_args"]["recurrent"] is False


def test_recurrent_run_starts_from_its_ablation(tmp_path: Path) -> None:
    base = _recipe(tmp_path, iters=2).to_dict()
    ablation = train_frvsr(FRVSRConfig.from_dict({**base, "recurrent": False}), tmp_path / "norec", progress=False)
    trained, _ = load_net(ablation)
    net = build("frvsr", 2, **TINY)
    warm_start(net, str(ablation), fresh=("fnet.",))
    lr = torch.rand(1, 3, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(net.forward_sequence(lr), trained.forward_sequence(lr), atol=1e-6)
    weights = train_frvsr(FRVSRConfig.from_dict({**base, "init": str(ablation)}), tmp_path / "rec", progress=False)
    init = load_net(weights)[1]["training"]["init"]
    assert init["weights"] == str(ablation) and init["iterations"] == 2
    with pytest.raises(SubpixelError, match="does not fit") as err:  # an ablation cannot start from FNet weights
        train_frvsr(FRVSRConfig.from_dict({**base, "recurrent": False, "init": str(weights)}), tmp_path / "x",
                    progress=False)
    assert "folded" not in str(err.value)  # the hint about folded weights is for re-parameterizable models only


def test_fnet_pretraining_alone_and_on_the_true_flow(tmp_path: Path) -> None:
    base = _recipe(tmp_path, iters=2).to_dict()
    torch.manual_seed(0)
    fresh = build("frvsr", 2, **TINY).state_dict()  # what train_frvsr builds from seed 0
    weights = load_file(str(train_frvsr(FRVSRConfig.from_dict({**base, "sr_weight": 0, "flow_loss": "exact"}),
                                        tmp_path / "fnet", progress=False)))
    assert all(torch.equal(weights[k], fresh[k]) for k in fresh if not k.startswith("fnet."))  # SR untouched
    assert not torch.equal(weights["fnet.head.2.weight"], fresh["fnet.head.2.weight"])
    logged = json.loads((tmp_path / "fnet" / "log.jsonl").read_text().splitlines()[-1])
    assert "flow_epe" in logged and "sr_l1" not in logged
    card = load_net(tmp_path / "fnet" / "frvsr_x2.safetensors")[1]
    assert card["training"]["loss"] == "1 x end-point error against the true flow"
    # the flow term against the true flow is zero for the true flow
    cfg = FRVSRConfig.from_dict(base)
    sampler = ClipSampler([Path(d) for d in cfg.data], 3, 24, 2, Motion(speed=1.5), 0)
    lr_u8, hr_u8, moves = sampler.batch_with_affines(0, 2)
    true_flow = exact_flow(moves, 12, 2).flatten(0, 1)
    assert torch.allclose(true_flow, torch.cat([exact_flow(m, 12, 2) for m in moves]), atol=1e-6)  # batched
    net = build("frvsr", 2, **TINY)
    net.fnet.forward = lambda cur, prev: true_flow  # type: ignore[method-assign]
    _, parts = frvsr_loss(net, lr_u8.float() / 255, hr_u8.float() / 255, 1.0, 0.0, true_flow)
    assert parts["flow_epe"] == 0 and "sr_l1" not in parts
    for bad in ({"sr_weight": 0, "recurrent": False}, {"sr_weight": 0, "flow_weight": 0}, {"flow_loss": "l2"}):
        with pytest.raises(SubpixelError):
            FRVSRConfig.from_dict({**base, **bad})


def _frvsr_rank(rank: int, world: int, port: int, raw: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train_frvsr(FRVSRConfig.from_dict(raw), Path(out) / "ddp", progress=False)


def test_two_processes_train_as_one(tmp_path: Path, free_port: int) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=3).to_dict(), "ema": 0.5})
    sampler = ClipSampler([Path(d) for d in cfg.data], 3, 24, 2, Motion(speed=1.5), 0)
    whole = sampler.batch_with_affines(5, 2)
    halves = [sampler.batch_with_affines(5, 2, part=(k, 2)) for k in range(2)]
    assert all(torch.equal(torch.cat([h[i] for h in halves]), whole[i]) for i in range(3))  # ranks split the batch
    with pytest.raises(ValueError):
        sampler.batch_with_affines(5, 3, part=(0, 2))

    single = load_file(str(train_frvsr(cfg, tmp_path / "one", progress=False)))
    mp.spawn(_frvsr_rank, args=(2, free_port, cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    ddp = load_file(str(tmp_path / "ddp" / "frvsr_x2.safetensors"))  # rank 0 alone exports
    assert single.keys() == ddp.keys()
    assert all(torch.allclose(single[k], ddp[k], atol=1e-5) for k in single)  # averaged gradients = one batch
    assert json.loads((tmp_path / "ddp" / "throughput.json").read_text())["sessions"][0]["world_size"] == 2
    rank0 = DistInfo(0, 2, 0, torch.device("cpu"))  # the checks that run before any collective
    odd = FRVSRConfig.from_dict({**cfg.to_dict(), "batch": 3})
    with pytest.raises(SubpixelError, match="split evenly"):
        frvsr_train._train(odd, tmp_path / "odd", rank0, True, False, None, None)
    with pytest.raises(SubpixelError, match="single process"):
        frvsr_train._train(cfg, tmp_path / "odd", rank0, True, False, None, IterationBudget(60))


def _frvsr_ctrl_c_rank(rank: int, world: int, ports: list[int], raw: dict, out: str) -> None:
    """A run whose rank 1 alone gets Ctrl-C in step 3, then its resumption."""
    os.environ.update(MASTER_ADDR="127.0.0.1", WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      TORCHELASTIC_RUN_ID="test")  # as under torchrun, whose agent echoes the Ctrl-C it gets
    torch.set_num_threads(1)
    real, calls = ClipSampler.batch_with_affines, []

    def batch(self: ClipSampler, step: int, n: int, part: tuple[int, int] = (0, 1)
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        calls.append(step)
        if rank == 1 and len(calls) == 3:  # mid-step 3, on one rank: the terminal's Ctrl-C and torchrun's echo
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, step, n, part)

    ClipSampler.batch_with_affines = batch  # type: ignore[method-assign]
    os.environ["MASTER_PORT"] = str(ports[0])
    stopped = None
    try:
        train_frvsr(FRVSRConfig.from_dict(raw), Path(out) / "ddp", progress=False)
    except KeyboardInterrupt as err:
        stopped = f"{type(err).__name__}: {err}"
    ClipSampler.batch_with_affines = real  # type: ignore[method-assign]
    last = latest_checkpoint(Path(out) / "ddp")
    record = {"stopped": stopped, "steps": len(calls), "kept": last.name if last else None}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))
    os.environ["MASTER_PORT"] = str(ports[1])
    train_frvsr(FRVSRConfig.from_dict(raw), Path(out) / "ddp", progress=False)


def test_ctrl_c_on_one_rank_stops_both_after_the_same_step(tmp_path: Path) -> None:
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=6).to_dict(), "ckpt_every": 0})
    single = load_file(str(train_frvsr(cfg, tmp_path / "one", progress=False)))
    context = mp.spawn(_frvsr_ctrl_c_rank, args=(2, free_ports(2), cfg.to_dict(), str(tmp_path)), nprocs=2,
                       join=False)
    end = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > end:  # a rank left waiting in a collective for one that is gone
            for process in context.processes:
                process.kill()
            pytest.fail("the processes still ran after 240 s")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0 (no progress bar) says "interrupted" for the job; rank 1 stays silent
    assert [r["stopped"] for r in ranks] == ["Interrupted: interrupted", "Interrupted: "]
    # both stopped after step 4 (step 3's vote had begun when Ctrl-C came), whose checkpoint rank 0 wrote
    assert [r["steps"] for r in ranks] == [4, 4] and ranks[0]["kept"] == "iter_00000004.pt"
    ddp = load_file(str(tmp_path / "ddp" / "frvsr_x2.safetensors"))  # the resumed job ends as one process would
    assert single.keys() == ddp.keys()
    assert all(torch.allclose(single[k], ddp[k], atol=1e-5) for k in single)
    sessions = json.loads((tmp_path / "ddp" / "throughput.json").read_text())["sessions"]
    assert [(s["from_iteration"], s["to_iteration"], s["world_size"]) for s in sessions] == [(0, 4, 2), (4, 6, 2)]


def test_recipe_validation(tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match="unknown"):
        FRVSRConfig.from_dict({"data": ["x"], "bogus": 1})
    with pytest.raises(SubpixelError, match="frames"):
        FRVSRConfig.from_dict({"data": ["x"], "frames": 1})
    with pytest.raises(SubpixelError, match="arch keys"):
        FRVSRConfig.from_dict({"data": ["x"], "arch": {"width": 3}})
    with pytest.raises(SubpixelError, match="iters must be int"):
        FRVSRConfig.from_dict({"data": ["x"], "iters": "many"})
    assert np.isclose(FRVSRConfig.from_dict({"data": ["x"], "lr": "2e-4"}).lr, 2e-4)
    with pytest.raises(SubpixelError, match="lr must be > 0"):
        FRVSRConfig.from_dict({"data": ["x"], "lr": -1})


@pytest.mark.parametrize(("bad", "message"), [
    ({"lr": float("inf")}, "lr must be a finite number, got inf"),
    ({"lr": "nan"}, "lr must be a finite number, got 'nan'"),
    ({"min_lr": "-inf"}, "min_lr must be a finite number"),
    ({"flow_weight": float("nan")}, "flow_weight must be a finite number"),
    ({"seed": 2**64}, "seed must be in [0, 2**64)"),
    ({"seed": -1}, "seed must be in [0, 2**64)"),
    ({"motion": {"speed": "fast"}}, "motion.speed must be a finite number >= 0, got 'fast'"),
    ({"motion": {"zoom": -0.1}}, "motion.zoom must be a finite number >= 0"),
    ({"motion": {"sped": 1}}, "unknown motion setting 'sped'"),
    ({"arch": {"channels": "8"}}, "arch.channels must be a positive integer, got '8'"),
    ({"arch": {"blocks": 0}}, "arch.blocks must be a positive integer, got 0"),
    ({"arch": {"flow_channels": [4, 0]}}, "arch.flow_channels must be a non-empty list of positive integers"),
    ({"arch": {"max_flow": float("inf")}}, "arch.max_flow must be a positive number"),
    ({"arch": {"lk_levels": -1}}, "arch.lk_levels must be an integer >= 0"),
])
def test_bad_values_are_one_line_recipe_errors(bad: dict, message: str) -> None:
    with pytest.raises(SubpixelError, match=f"^FRVSR recipe: {re.escape(message)}"):
        FRVSRConfig.from_dict({"data": ["x"], **bad})


def test_every_arch_argument_is_checked_and_motion_reads_as_floats() -> None:
    counts = {k for k in frvsr_train._ARCH_KEYS if k in registry._COUNT_ARGS}  # checked by the registry
    assert set(frvsr_model.FLOW_ARG_RULES) | counts == frvsr_train._ARCH_KEYS  # the rest by the model's own rules
    assert FRVSRConfig.from_dict({"data": ["x"], "motion": {"zoom": "5e-3", "speed": 2}}).motion == {
        "zoom": 0.005, "speed": 2.0}


def test_a_key_or_a_folder_given_twice_is_refused(tmp_path: Path) -> None:
    raw = _recipe(tmp_path, iters=2).to_dict()
    text = yaml.safe_dump(raw)
    (tmp_path / "r.yaml").write_text(text + "lr: 1.0\n")  # the second would silently win
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, SubpixelError) and not (tmp_path / "run").exists()
    line = len(text.splitlines()) + 1
    assert str(result.exception).endswith(f"r.yaml: key 'lr' given twice (again on line {line})")
    with pytest.raises(SubpixelError, match="^training data lists .*stills twice$"):
        train_frvsr(FRVSRConfig.from_dict({**raw, "data": [raw["data"][0], raw["data"][0] + "/"]}), tmp_path / "run",
                    progress=False)


@pytest.mark.parametrize("export", ["elsewhere/model.safetensors", "run/frvsr_x2.safetensors"])
def test_cli_trains_frvsr_recipes_and_exports(tmp_path: Path, export: str) -> None:
    raw = _recipe(tmp_path, iters=2).to_dict()
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    args = ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--export", str(tmp_path / export)]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["iteration"], summary["iters"], summary["complete"], summary["export"]) == (
        2, 2, True, str(tmp_path / export))
    assert summary["throughput"]["to_iteration"] == 2 and summary["best_validation"] is None
    net, card = load_net(tmp_path / export)  # the run's own weights path too (what tools/device/train.sh asks)
    assert isinstance(net, FRVSR) and card["training"]["recipe"]["iters"] == 2


def test_a_failed_export_leaves_the_earlier_one_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(tmp_path, iters=1).to_dict()))
    export = tmp_path / "out" / "m.safetensors"
    export.parent.mkdir()
    export.write_bytes(b"old weights")
    export.with_suffix(".json").write_text("old card")
    replace = os.replace

    def full_disk(src: Path, dst: Path) -> None:
        if Path(dst).parent == export.parent:
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    args = ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--export", str(export), "--resume"]
    assert isinstance(CliRunner().invoke(cli, args).exception, OSError)
    assert export.read_bytes() == b"old weights" and export.with_suffix(".json").read_text() == "old card"
    assert sorted(p.name for p in export.parent.iterdir()) == ["m.json", "m.safetensors"]  # no temporary file
    monkeypatch.undo()
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert export.read_bytes() == (tmp_path / "run/frvsr_x2.safetensors").read_bytes()
    assert read_card(export) == read_card(tmp_path / "run/frvsr_x2.safetensors")


def test_a_resumed_run_keeps_its_provenance_and_wall_time(tmp_path: Path) -> None:
    base = {**_recipe(tmp_path, iters=2).to_dict(), "ckpt_every": 0}
    ablation = train_frvsr(FRVSRConfig.from_dict({**base, "recurrent": False}), tmp_path / "norec", progress=False)
    sha = hashlib.sha256(ablation.read_bytes()).hexdigest()
    ticks = iter(range(10**6))
    budget = IterationBudget(40.0, warmup=1, window=2, margin=1.0, clock=lambda: float(next(ticks)))
    cfg = FRVSRConfig.from_dict({**base, "init": str(ablation), "iters": 100, "log_every": 5})
    assert train_frvsr(cfg, tmp_path / "run", progress=False, time_limit=0.0, budget=budget) is None
    ckpt_file = latest_checkpoint(tmp_path / "run")
    ckpt = torch.load(ckpt_file, weights_only=True)
    assert ckpt_file.name == "iter_00000005.pt" and ckpt["meta"]["wall_seconds"] > 0
    ckpt["meta"]["wall_seconds"] = 600.0  # as if the first session had trained for ten minutes
    torch.save(ckpt, ckpt_file)
    ablation.unlink()  # not needed to resume
    weights = train_frvsr(FRVSRConfig.from_dict({**base, "init": str(ablation), "iters": budget.fits[-1][1],
                                                 "log_every": 5}), tmp_path / "run", progress=False)
    training = read_card(weights)["training"]
    assert training["init"]["sha256"] == sha and training["budget"] == budget.record()
    assert 10 < training["wall_minutes"] < 11


def test_a_budget_run_resumed_without_budget_ends_at_its_fitted_total(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    ticks = iter(range(10**6))
    budget = IterationBudget(20.0, warmup=1, window=2, margin=1.0, clock=lambda: float(next(ticks)))
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=4).to_dict(), "log_every": 5})
    assert train_frvsr(cfg, tmp_path / "run", progress=False, time_limit=0.0, budget=budget) is None
    total = budget.fits[-1][1]
    assert latest_checkpoint(tmp_path / "run").name == "iter_00000005.pt" and total > 5  # past the recipe's 4
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=4).to_dict(), "log_every": 5})
    assert train_frvsr(cfg, tmp_path / "run") is not None
    assert cfg.iters == total and latest_checkpoint(tmp_path / "run").name == f"iter_{total:08d}.pt"
    assert f"iters {total} (the --budget fit of checkpoint iter_00000005.pt), not the recipe's 4" \
        in capsys.readouterr().err


def test_a_diverging_run_stops_before_checkpointing_non_finite_weights(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frvsr_train, "learning_rate", lambda it, total, lr, schedule: float("inf") if it >= 2 else 1e-3)
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=6).to_dict(), "log_every": 3})
    with pytest.raises(SubpixelError, match="^training diverged: the weights are not finite after iteration 3 "):
        train_frvsr(cfg, tmp_path / "run", progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "iter_00000002.pt"


def test_budget_and_an_ablation_that_follows_it_train_the_same_iterations(tmp_path: Path) -> None:
    ticks = iter(range(10**6))
    lead = IterationBudget(12.0, warmup=1, window=2, margin=1.0, clock=lambda: float(next(ticks)))
    cfg = FRVSRConfig.from_dict({**_recipe(tmp_path, iters=100).to_dict(), "ckpt_every": 0})  # checkpoints pause it
    weights = train_frvsr(cfg, tmp_path / "lead", progress=False, budget=lead)
    total = lead.fits[-1][1]
    assert weights is not None and total < 100 and latest_checkpoint(tmp_path / "lead").name == f"iter_{total:08d}.pt"
    assert read_card(weights)["training"]["recipe"]["iters"] == total
    norec = FRVSRConfig.from_dict({**cfg.to_dict(), "iters": 100, "recurrent": False})
    follow = IterationBudget(12.0, follow=tmp_path / "lead")
    ablation = train_frvsr(norec, tmp_path / "norec", progress=False, budget=follow)
    assert ablation is not None and read_card(ablation)["training"]["budget"] == {
        "seconds": 12.0, "fits": [[1, total]], "total": total, "follows": "lead"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_flow": -8.0}, "max_flow must be a positive number, got -8.0"),
    ({"max_flow": 0}, "max_flow must be a positive number, got 0"),
    ({"max_flow": float("nan")}, "max_flow must be a positive number, got nan"),
    ({"max_flow": float("inf")}, "max_flow must be a positive number, got inf"),
    ({"max_flow": "8"}, "max_flow must be a positive number, got '8'"),
    ({"max_flow": True}, "max_flow must be a positive number, got True"),
    ({"lk_levels": -3}, "lk_levels must be an integer >= 0, got -3"),
    ({"lk_levels": 1.5}, "lk_levels must be an integer >= 0, got 1.5"),
    ({"lk_levels": True}, "lk_levels must be an integer >= 0, got True"),
])
@pytest.mark.parametrize("recurrent", [True, False])
def test_the_model_checks_its_flow_arguments(kwargs: dict, message: str, recurrent: bool, tmp_path: Path) -> None:
    with pytest.raises(SubpixelError, match=f"^frvsr: {re.escape(message)}$"):
        build("frvsr", 2, channels=8, blocks=1, recurrent=recurrent, **kwargs)
    with pytest.raises(SubpixelError, match=f"^frvsr: {re.escape(message)}$"):
        subpixel.load("frvsr", 2, pretrained=False, device="cpu", engine="torch", channels=8, blocks=1, **kwargs)
    if recurrent:
        with pytest.raises(SubpixelError, match=f"^FNet: {re.escape(message)}$"):
            FNet((4, 8), **kwargs)
    # a card with such arguments is refused when read, naming the card
    good = build("frvsr", 2, channels=8, blocks=1, recurrent=recurrent)
    weights = tmp_path / "frvsr_x2.safetensors"
    save_file(good.state_dict(), str(weights))
    card = {"name": "frvsr", "architecture": "frvsr", "scale": 2,
            "arch_args": {"channels": 8, "blocks": 1, "recurrent": recurrent, **kwargs}}
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(SubpixelError, match=f"cannot build frvsr x2: frvsr: {re.escape(message)}"):
        load_net(weights)


def test_good_flow_arguments_build() -> None:
    net = build("frvsr", 2, channels=8, blocks=1, max_flow=1, lk_levels=0)
    assert net.fnet is not None and (net.fnet.max_flow, net.fnet.lk_levels) == (1.0, 0)
    assert FNet((4,), max_flow=0.5, lk_levels=np.int64(3)).lk_levels == 3


def test_the_log_keeps_only_this_runs_history(tmp_path: Path) -> None:
    """Lines a run killed before its first checkpoint (or after its last) logged are dropped, as TensorBoard's are."""
    cfg = _recipe(tmp_path, iters=2).to_dict()
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"iteration": 1, "loss": 9}\n{"iteration": 7, "loss": 9}\n{"iterat')
    train_frvsr(FRVSRConfig.from_dict({**cfg, "log_every": 1}), run, progress=False)
    assert [json.loads(x)["iteration"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[0])["loss"] != 9
    (run / "log.jsonl").write_text((run / "log.jsonl").read_text() + '{"iteration": 3, "loss": 9}\n')
    train_frvsr(FRVSRConfig.from_dict({**cfg, "log_every": 1, "iters": 3}), run, resume=True, progress=False)
    assert [json.loads(x)["iteration"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[2])["loss"] != 9


def test_evaluate_finds_vid4_before_training_and_scores_without_opencv(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {**_recipe(tmp_path, iters=2).to_dict(), "evaluate": True}
    monkeypatch.setenv("SUBPIXEL_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubpixelError, match="dataset 'Vid4' not found"):
        train_frvsr(FRVSRConfig.from_dict(cfg), tmp_path / "none", progress=False)
    assert not (tmp_path / "none" / "checkpoints").exists()  # refused before any training
    monkeypatch.setenv("SUBPIXEL_DATA", str(tmp_path / "data"))
    _clip_folder(tmp_path / "data" / "video" / "Vid4", "pan", frames=2)
    monkeypatch.setattr("subpixel.eval.video.has_opencv", lambda: False)
    weights = train_frvsr(FRVSRConfig.from_dict(cfg), tmp_path / "run", progress=False)
    vid4 = load_net(weights)[1]["metrics"]["Vid4"]
    assert vid4["psnr"] > 0 and vid4["warp_error"] is None


def test_a_new_frame_size_starts_the_cut_detector_afresh_too() -> None:
    proc = RecurrentProcessor(tiny_frvsr(2), device="cpu", cut_threshold=10)

    def cuts(levels: list[float], side: int) -> list[int]:
        found = []
        for level in levels:
            before = proc.cuts
            proc.process(torch.full((1, 3, side, side), level))
            found.append(proc.cuts - before)
        return found

    assert cuts([0.5, 0.5, 0.8], 16) == [0, 0, 1]
    assert cuts([0.5, 0.62, 0.62], 24) == [0, 0, 0]  # as after reset(): the 12% change is a first difference
