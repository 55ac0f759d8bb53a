"""Training: recipe validation, schedule, losses, validation metric, exact resume, CLI, export and DDP."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from subpixel.cli import cli
from subpixel.data.pairs import load_pairs
from subpixel.data.patches import PatchSampler
from subpixel.errors import SubpixelError
from subpixel.eval.protocol import score
from subpixel.models import registry
from subpixel.models.base import SRNet
from subpixel.models.registry import ArchSpec, architectures
from subpixel.models.weights import load_net, read_card
from subpixel.ops.color import BT601_MATRIX
from subpixel.train import evaluate_pairs, export_best, parse_config, train
from subpixel.train import trainer as trainer_module
from subpixel.train.budget import BUDGET_FILE, IterationBudget
from subpixel.train.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint, prune, save_atomic
from subpixel.train.config import ConfigError, config_to_dict, load_config, read_recipe
from subpixel.train.control import RunControl
from subpixel.train.distributed import DistInfo
from subpixel.train.losses import CharbonnierLoss, build_loss
from subpixel.train.monitor import ScalarLog, read_sessions, record_session
from subpixel.train.optim import learning_rate
from subpixel.train.trainer import Trainer, _stream_seed
from tests.conftest import free_ports, run_main

REPO = Path(__file__).resolve().parents[1]
ARCH = "tiny-train-test"


class TinyNet(SRNet):
    """Two 3x3 convolutions and a pixel shuffle."""

    receptive_field = 2

    def __init__(self, scale: int, width: int = 6) -> None:
        super().__init__(scale)
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


TINY_SPEC = ArchSpec(ARCH, TinyNet, None, "two convolutions and a pixel shuffle (tests only)")


@pytest.fixture(autouse=True, scope="module")
def _tiny_architecture():
    """Register the test network for this module only, so other tests see the real registry."""
    architectures()  # load every real architecture first
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._REGISTRY, ARCH, TINY_SPEC)
        yield


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(folder: Path, count: int = 6, seed: int = 0) -> Path:
    """Smooth random RGB images of a few sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = 20 + 3 * i, 26 - 2 * i
        coarse = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.BICUBIC).save(folder / f"im{i}.png")
    return folder


def _recipe(data: Path, **train: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "model": {"name": ARCH, "scale": 2, "args": {"width": 6}},
        "data": {"train": [str(data)], "val_count": 2, "patch": 6, "batch": 4},
        "loss": {"name": "charbonnier"},
        "optim": {"name": "adamw", "lr": "2e-3", "betas": [0.9, 0.99], "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup": 3, "min_lr": 1e-5},
        "train": {"iters": 20, "ema": 0.9, "grad_clip": 0.5, "val_every": 5, "ckpt_every": 7, "keep_last": 2,
                  "log_every": 4, **train},
    }


def _state(path: Path) -> dict[str, Any]:
    return load_checkpoint(path)


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- recipes -------------------------------------------------------------------------------------------------


def test_every_shipped_recipe_validates() -> None:
    from subpixel.train.frvsr import FRVSRConfig

    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        raw = read_recipe(path)
        if raw.get("model") == "frvsr":
            assert FRVSRConfig.from_dict(raw).scale in (2, 4)
            continue
        cfg = load_config(path)
        assert cfg.model.scale in (2, 3, 4) and cfg.data.patch >= 8, path.name
    cfg = load_config(REPO / "recipes" / "espcn_x3.yaml")
    assert (cfg.model.name, cfg.model.scale, cfg.data.patch, cfg.train.amp) == ("espcn", 3, 32, "bf16")
    assert load_config(REPO / "recipes" / "tiny_test.yaml").train.amp == "off"


def test_config_round_trips(tmp_path: Path) -> None:
    cfg = parse_config(_recipe(tmp_path))
    assert cfg.optim.lr == 2e-3  # a YAML '2e-3' string is a float
    assert parse_config(config_to_dict(cfg)) == cfg
    assert parse_config(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg


def test_any_seed_torch_takes_is_a_valid_seed(tmp_path: Path) -> None:
    for seed in (-1, -(2**63), 2**64 - 1):
        assert parse_config({**_recipe(tmp_path), "seed": seed}).seed == seed


@pytest.mark.parametrize(("section", "patch", "message"), [
    ("train", {"itres": 5}, "unknown key 'itres' in section 'train' (known: iters, amp,"),
    (None, {"trian": {}}, "unknown key 'trian' in the recipe's top level"),
    ("train", {"iters": 1.5}, "train.iters: expected an integer, got float 1.5"),
    ("train", {"iters": True}, "train.iters: expected an integer"),
    ("optim", {"lr": "fast"}, "optim.lr: expected a finite number, got str 'fast'"),
    ("optim", {"betas": [0.9]}, "optim.betas: expected a list of 2 values"),
    ("optim", {"name": "sgd"}, "optim.name: expected one of adam, adamw, got 'sgd'"),
    ("train", {"amp": "fp8"}, "train.amp: expected one of off, bf16, fp16"),
    ("data", {"train": "folder"}, "data.train: expected a list"),
    ("data", {"train": [3]}, "data.train[0]: expected str"),
    ("model", {"args": [1]}, "model.args: expected a mapping"),
    ("train", {"ema": 1.0}, "train.ema: must be in [0, 1)"),
    ("loss", {"name": "ssim"}, "loss.name: must be one of l1, mse, charbonnier"),
    ("schedule", {"milestones": [5]}, "schedule.milestones: must be empty unless name is multistep"),
    ("schedule", {"name": "multistep", "milestones": [5, 3]}, "schedule.milestones: must be increasing"),
    ("data", {"batch": 0}, "data.batch: must be >= 1"),
    ("optim", {"lr": float("inf")}, "optim.lr: expected a finite number, got float inf"),
    ("optim", {"weight_decay": "nan"}, "optim.weight_decay: expected a finite number, got str 'nan'"),
    ("schedule", {"min_lr": "-inf"}, "schedule.min_lr: expected a finite number"),
    ("train", {"grad_clip": 10**400}, "train.grad_clip: expected a finite number"),
    (None, {"seed": 2**64}, "seed: must be in [-2**63, 2**64) (what torch.manual_seed takes)"),
    (None, {"seed": -(2**63) - 1}, "seed: must be in [-2**63, 2**64) (what torch.manual_seed takes)"),
])
def test_config_errors_name_the_key(tmp_path: Path, section: str | None, patch: dict, message: str) -> None:
    raw = _recipe(tmp_path)
    if section is None:
        raw.update(patch)
    else:
        raw[section] = {**raw[section], **patch}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value)


def test_config_missing_and_file_errors(tmp_path: Path) -> None:
    raw = _recipe(tmp_path)
    del raw["model"]["scale"]
    with pytest.raises(ConfigError, match="missing key 'scale' in section 'model'"):
        parse_config(raw)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nmodel: espcn\n  scale: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML: mapping values are not allowed here "
                                          r"\(line 3, column 8\)$"):  # one line, where PyYAML prints five
        load_config(bad)
    bad.write_text("train: {amp: off}\n")
    with pytest.raises(ConfigError, match="bad.yaml: missing key 'model' in the recipe's top level"):
        load_config(bad)
    raw = _recipe(tmp_path)
    raw["train"]["amp"] = yaml.safe_load("off")  # YAML 1.1 reads a bare `off` as false
    assert parse_config(raw).train.amp == "off"


def test_a_recipe_whose_schedule_outlasts_it_is_refused_and_a_short_trial_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    raw = _recipe(Path("data"), iters=3)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(cli, ["train", "r.yaml", "--out", "run", "--quiet"])
    assert isinstance(res.exception, ConfigError) and not (tmp_path / "run").exists()
    assert str(res.exception) == ("r.yaml: schedule.warmup 3 is not below train.iters 3: the learning rate never "
                                  "leaves warmup")
    res = CliRunner().invoke(cli, ["train", "r.yaml", "--out", "long", "--max-iters", "5", "--quiet"])  # run as 5
    assert res.exit_code == 0 and list_checkpoints(tmp_path / "long")[-1].name.endswith("00000005.pt")
    raw["train"]["iters"] = 20  # a --max-iters trial shorter than the warmup runs, with a warning
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    with pytest.warns(UserWarning, match="^schedule.warmup 3 is not below train.iters 2"):
        res = CliRunner().invoke(cli, ["train", "r.yaml", "--out", "run", "--max-iters", "2", "--quiet"],
                                 catch_exceptions=False)
    assert res.exit_code == 0 and list_checkpoints(tmp_path / "run")[-1].name.endswith("00000002.pt")
    raw["schedule"] = {"name": "multistep", "milestones": [5, 20]}
    with pytest.warns(UserWarning, match=r"^schedule.milestones \[20\] are not below train.iters 20"):
        train(parse_config(raw), tmp_path / "run2", device="cpu", quiet=True, until=1)
    # a budget's short fit keeps its deadline: a warning, not an error
    ticks = iter(range(10**6))
    budget = IterationBudget(20.0, warmup=3, window=5, margin=1.0, clock=lambda: float(next(ticks)))  # 1 s a step
    raw = _recipe(Path("data"), iters=500, val_every=0)
    raw["schedule"]["warmup"] = 100
    with pytest.warns(UserWarning, match="iteration budget: schedule.warmup 100 is not below train.iters"):
        result = train(parse_config(raw), tmp_path / "b", device="cpu", quiet=True, budget=budget,
                       export=tmp_path / "b.safetensors")
    assert result.iteration == budget.fits[-1][1] < 100 and (tmp_path / "b.safetensors").is_file()


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(_recipe(tmp_path), sort_keys=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text + "optim: {name: adam, lr: 5.0e-2}\n")  # a second section would replace the first
    line = len(text.splitlines()) + 1
    with pytest.raises(ConfigError, match=rf"r.yaml: key 'optim' given twice \(again on line {line}\)$"):
        load_config(recipe)
    recipe.write_text(text.replace("  lr: 2e-3\n", "  lr: 2e-3\n  lr: 1e-3\n"))
    with pytest.raises(ConfigError, match="key 'lr' given twice"):
        load_config(recipe)
    recipe.write_text("base: &b {lr: 1.0e-3, name: adam}\nother: {<<: *b, lr: 2.0e-3}\n")  # a merge key may override
    assert read_recipe(recipe)["other"] == {"lr": 2e-3, "name": "adam"}
    recipe.write_text("base: &b {a: 1}\nd:\n  inner: &i\n    <<: *b\n    a: 2\nx:\n  <<: *i\n")  # merges of merges
    assert read_recipe(recipe) == yaml.safe_load(recipe.read_text())


def test_bad_model_arguments_are_one_line_config_errors(tmp_path: Path) -> None:
    cpu = DistInfo(0, 1, 0, torch.device("cpu"))
    for model, message in [
        ({"name": ARCH, "scale": 2, "args": {"width": 2.5}}, "model.args do not fit 'tiny-train-test': out_channels"),
        ({"name": "sprint", "scale": 2, "args": {"blocks": -1}}, "model: sprint: blocks must be a positive integer"),
        ({"name": "espcn", "scale": 5}, "model: espcn supports scales 2, 3, 4, not x5"),
    ]:
        with pytest.raises(ConfigError, match=f"^{message}"):  # before any data is read
            Trainer(parse_config({**_recipe(tmp_path / "absent"), "model": model}), tmp_path / "run", cpu)


# --- schedule, losses, validation ----------------------------------------------------------------------------


def test_learning_rate_schedules(tmp_path: Path) -> None:
    raw = _recipe(tmp_path)
    raw["schedule"] = {"name": "cosine", "warmup": 4, "min_lr": 1e-4}
    s = parse_config(raw).schedule
    assert learning_rate(0, 104, 1e-2, s) == pytest.approx(2.5e-3)
    assert learning_rate(3, 104, 1e-2, s) == pytest.approx(1e-2)
    assert learning_rate(4, 104, 1e-2, s) == pytest.approx(1e-2)
    assert learning_rate(54, 104, 1e-2, s) == pytest.approx((1e-2 + 1e-4) / 2)
    assert learning_rate(104, 104, 1e-2, s) == pytest.approx(1e-4)
    raw["schedule"] = {"name": "multistep", "milestones": [10, 20], "gamma": 0.1}
    raw["train"]["iters"] = 30
    s = parse_config(raw).schedule
    assert [learning_rate(i, 30, 1.0, s) for i in (9, 10, 19, 20)] == pytest.approx([1, 0.1, 0.1, 0.01])


def test_losses() -> None:
    sr, hr = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert build_loss("l1", {})(sr, hr).item() == pytest.approx(0.5)
    assert build_loss("mse", {})(sr, hr).item() == pytest.approx(0.25)
    assert build_loss("charbonnier", {"eps": 0.0})(sr, hr).item() == pytest.approx(0.5)
    assert CharbonnierLoss(1e-3)(hr, hr).item() == pytest.approx(1e-3)
    with pytest.raises(SubpixelError, match="loss.args for 'l1'"):
        build_loss("l1", {"eps": 1})


@pytest.mark.parametrize(("name", "args", "message"), [
    ("charbonnier", {"eps": "abc"}, "could not convert string to float"),
    ("charbonnier", {"eps": float("inf")}, "must be a finite scalar, got inf"),
    ("l1", {"reduction": "none"}, r"must be a finite scalar, got shape \(1, [13], 2, 2\)"),
    ("mse", {"reduction": "bogus"}, "bogus is not a valid value"),
])
def test_loss_arguments_that_break_the_loss_are_config_errors(name: str, args: dict, message: str) -> None:
    for channels in ("rgb", "y"):
        with pytest.raises(ConfigError, match=rf"^loss.args for '{name}': .*{message}"):
            build_loss(name, args, channels)
    assert build_loss("l1", {"reduction": "sum"})(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)).item() == 12


def test_luma_loss_sees_luma_and_ignores_chroma() -> None:
    hr = torch.rand(2, 3, 5, 4)
    r, g, _ = BT601_MATRIX[0]
    chroma_only = torch.tensor([g, -r, 0.0]).view(1, 3, 1, 1) / 255  # orthogonal to the luma weights
    luma = build_loss("l1", {}, channels="y")
    assert luma(hr + chroma_only, hr).item() == pytest.approx(0.0, abs=1e-6)
    assert build_loss("l1", {})(hr + chroma_only, hr).item() > 0.1
    # every channel up by 0.1: Y, in [0, 1] units, rises by 0.1 * 219/255
    assert luma(hr + 0.1, hr).item() == pytest.approx(0.1 * 219 / 255, rel=1e-4)
    with pytest.raises(SubpixelError, match="channels"):
        build_loss("l1", {}, channels="cbcr")
    assert parse_config({**_recipe(Path("x")), "loss": {"name": "l1", "channels": "y"}}).loss.channels == "y"
    with pytest.raises(ConfigError, match="loss.channels"):
        parse_config({**_recipe(Path("x")), "loss": {"name": "l1", "channels": "cbcr"}})


class _Nearest(SRNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3)


def test_evaluate_pairs_follows_the_protocol(tmp_path: Path) -> None:
    pairs = load_pairs(sorted(_images(tmp_path, 3).iterdir()), 2)
    net = _Nearest(2).train()
    psnr, ssim = evaluate_pairs(net, pairs, 2, "cpu")
    expected = [score(p.lr.repeat_interleave(2, 1).repeat_interleave(2, 2).permute(1, 2, 0).numpy(),
                      p.hr.permute(1, 2, 0).numpy(), 2) for p in pairs]
    assert psnr == pytest.approx(np.mean([e[0] for e in expected]), abs=1e-9)
    assert ssim == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-9)
    assert net.training  # mode restored


# --- training ------------------------------------------------------------------------------------------------


def test_stopped_and_resumed_run_equals_a_straight_run(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data))
    straight = train(cfg, tmp_path / "a", device="cpu", quiet=True)
    first = train(copy.deepcopy(cfg), tmp_path / "b", device="cpu", quiet=True, until=10)
    assert first.iteration == 10 and list_checkpoints(tmp_path / "b")[-1].name == "iter_00000010.pt"
    resumed = train(copy.deepcopy(cfg), tmp_path / "b", device="cpu", quiet=True, resume=True)
    assert straight.iteration == resumed.iteration == 20
    a, b = _state(tmp_path / "a/checkpoints/iter_00000020.pt"), _state(tmp_path / "b/checkpoints/iter_00000020.pt")
    _assert_same_tensors(a["model"], b["model"])
    _assert_same_tensors(a["ema"], b["ema"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        _assert_same_tensors(sa, sb)
    assert torch.equal(a["sampler"][0], b["sampler"][0])
    assert a["best"] == b["best"] and a["best"]["iteration"] in (5, 10, 15, 20)
    _assert_same_tensors(_state(tmp_path / "a/checkpoints/best.pt")["weights"],
                         _state(tmp_path / "b/checkpoints/best.pt")["weights"])
    _assert_same_tensors(straight.net.state_dict(), resumed.net.state_dict())
    # keep_last=2: steps 14 and 20 remain (10 was written by the stopped run and pruned after)
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == ["iter_00000014.pt", "iter_00000020.pt"]


def test_the_progress_bar_ends_showing_the_final_validation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = parse_config(_recipe(_images(tmp_path / "data"), iters=10, log_every=10, val_every=10))
    result = train(cfg, tmp_path / "run", device="cpu")  # step 10 logs, then validates for the first time
    assert result.best is not None
    assert f"best={result.best['psnr']:.2f}dB" in capsys.readouterr().err.split("\r")[-1]


def _ctrl_c_at_batch(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[[PatchSampler], Any]:
    """Send this process SIGINT as the ``n``-th batch is drawn (mid-step: the step still completes); returns
    the real ``PatchSampler.sample``."""
    real_sample, calls = PatchSampler.sample, []

    def sample(self: PatchSampler) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return real_sample(self)

    monkeypatch.setattr(PatchSampler, "sample", sample)
    return real_sample


def test_ctrl_c_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data, iters=12))
    straight = train(copy.deepcopy(cfg), tmp_path / "a", device="cpu", quiet=True)
    real_sample = _ctrl_c_at_batch(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        train(copy.deepcopy(cfg), tmp_path / "b", device="cpu", quiet=True)
    assert list_checkpoints(tmp_path / "b")[-1].name == "iter_00000009.pt"  # not only ckpt_every's 7
    monkeypatch.setattr(PatchSampler, "sample", real_sample)
    resumed = train(copy.deepcopy(cfg), tmp_path / "b", device="cpu", quiet=True, resume=True)
    _assert_same_tensors(straight.net.state_dict(), resumed.net.state_dict())


def test_an_interrupted_session_records_its_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data, iters=8, val_every=0))
    real_sample, calls = PatchSampler.sample, []

    def ctrl_c_at_5(self: PatchSampler) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real_sample(self)

    monkeypatch.setattr(PatchSampler, "sample", ctrl_c_at_5)
    with pytest.raises(KeyboardInterrupt):
        train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True)
    monkeypatch.setattr(PatchSampler, "sample", real_sample)
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True)
    speed = json.loads((tmp_path / "run/throughput.json").read_text())
    assert [(r["from_iteration"], r["to_iteration"]) for r in speed["sessions"]] == [(0, 5), (5, 8)]
    overall = speed["overall"]
    assert overall["sessions"] == 2 and overall["iterations_measured"] == sum(
        r["iterations"] for r in speed["sessions"]) == 4 + 2  # the first step of each session is not timed
    export_best(tmp_path / "run", tmp_path / "m.safetensors")
    assert read_card(tmp_path / "m.safetensors")["training"]["throughput"] == overall


@pytest.mark.parametrize("torchrun", [False, True])
def test_a_repeated_ctrl_c_stops_at_once_except_torchruns_echo(torchrun: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if torchrun:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # as torchrun's workers have it
    else:
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    control = RunControl(DistInfo(0, 1, 0, torch.device("cpu")))
    stopped_at_once = False
    try:
        with control.session(0):
            assert not control.interrupted()
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C: deferred
            assert control.interrupted()
            os.kill(os.getpid(), signal.SIGINT)  # a second one, or torchrun's agent forwarding the first
            for _ in range(100):  # the handler runs between bytecodes
                pass
            assert control.interrupted()
    except KeyboardInterrupt:
        stopped_at_once = True
    assert stopped_at_once is not torchrun


def test_a_held_out_image_too_small_to_score_is_refused_before_training(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    Image.fromarray(np.full((15, 13, 3), 90, dtype=np.uint8)).save(data / "small.png")  # 14x12 after x2 modcrop
    raw = _recipe(data, iters=4, val_every=2, ckpt_every=2)
    raw["data"].update(val_count=0, val_names=["small"])
    with pytest.raises(SubpixelError, match=r"^held-out validation image .*small.png: too small to evaluate at x2 "
                                            r"\(each side needs at least 15 pixels"):
        train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    assert not (tmp_path / "run").exists()  # refused at construction: no step was trained (and lost)
    raw["data"]["val_names"] = ["im0"]  # 20x26: large enough
    assert train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True).best is not None


def test_resume_refuses_changed_data_and_a_checkpoint_past_the_end(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data, iters=14))
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, until=7)
    with pytest.raises(ConfigError, match="past train.iters"):
        train(parse_config(_recipe(data, iters=5)), tmp_path / "run", device="cpu", quiet=True, resume=True)
    _images(tmp_path / "data", count=7)  # one image more
    with pytest.raises(ConfigError, match="training images differ"):
        train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True)


def test_a_moved_data_folder_with_the_same_images_resumes_with_a_warning(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    train(parse_config(_recipe(data, iters=10)), tmp_path / "run", device="cpu", quiet=True, until=7)
    moved = shutil.copytree(data, tmp_path / "elsewhere" / "data")  # same folder name and files: same SHA-256
    with pytest.warns(UserWarning, match="data.train changed from .* the images are the same"):
        result = train(parse_config(_recipe(moved, iters=10)), tmp_path / "run", device="cpu", quiet=True,
                       resume=True)
    assert result.iteration == 10
    renamed = shutil.copytree(data, tmp_path / "renamed")  # the fingerprint covers the folder's name
    with pytest.raises(ConfigError, match="training images differ .* changed or renamed, folders included"):
        train(parse_config(_recipe(renamed, iters=12)), tmp_path / "run", device="cpu", quiet=True, resume=True)
    (moved / "im0.png").unlink()
    with pytest.raises(ConfigError, match="training images differ"):
        train(parse_config(_recipe(moved, iters=12)), tmp_path / "run", device="cpu", quiet=True, resume=True)


def test_a_crop_stream_state_of_another_device_type_reseeds_with_a_warning(tmp_path: Path) -> None:
    cfg = parse_config(_recipe(_images(tmp_path / "data"), iters=10))
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, until=7)
    path = checkpoint_path(tmp_path / "run", 7)
    ckpt = load_checkpoint(path)
    ckpt["sampler"] = [torch.zeros(16 + 8, dtype=torch.uint8)]  # a CUDA generator's 16-byte state, then the position
    save_atomic(ckpt, path)
    with pytest.warns(UserWarning, match="another device type than cpu: the crop streams restart from new seeds"):
        result = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True)
    assert result.iteration == 10


def test_numeric_strings_in_args_are_numbers_so_both_spellings_resume(tmp_path: Path) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=10)
    raw["loss"]["args"] = {"eps": 1.0e-3}
    assert parse_config({**raw, "loss": {"name": "charbonnier", "args": {"eps": "1e-3", "x": ["2e-1", "y"]}},
                         "model": {**raw["model"], "args": {"width": 6, "mode": "y"}}}
                        ).loss.args == {"eps": 1e-3, "x": [0.2, "y"]}
    train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True, until=7)
    raw["loss"]["args"] = {"eps": "1e-3"}  # as YAML 1.1 reads `eps: 1e-3`
    cfg = parse_config(raw)
    assert cfg.loss.args == {"eps": 1e-3} and cfg.model.args == {"width": 6}
    assert train(cfg, tmp_path / "run", device="cpu", quiet=True, resume=True).iteration == 10


def test_stop_checkpoints_do_not_push_out_scheduled_ones(tmp_path: Path) -> None:
    cfg = parse_config(_recipe(_images(tmp_path / "data")))  # 20 iterations, ckpt_every 7, keep_last 2
    train(copy.deepcopy(cfg), tmp_path / "a", device="cpu", quiet=True)
    for until in (15, 16, None):  # two stops (as Ctrl-C or --time-limit make), then to the end
        train(copy.deepcopy(cfg), tmp_path / "b", device="cpu", quiet=True, until=until, resume=True)
        if until == 16:  # the newest, and the newest scheduled one; the earlier stop is gone
            assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["iter_00000014.pt", "iter_00000016.pt"]
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == [p.name for p in list_checkpoints(tmp_path / "b")] \
        == ["iter_00000014.pt", "iter_00000020.pt"]


def test_prune_keeps_the_newest_and_the_newest_scheduled_checkpoints(tmp_path: Path) -> None:
    for it in (4, 8, 9, 12, 13):
        save_atomic({}, checkpoint_path(tmp_path, it))
    prune(tmp_path, 3, 4)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000008.pt", "iter_00000012.pt",
                                                            "iter_00000013.pt"]
    prune(tmp_path, 3, 0)  # ckpt_every 0: nothing is scheduled, only the newest stays
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000013.pt"]


def test_a_best_checkpoint_from_beyond_the_resume_point_is_dropped(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data, iters=14, val_every=2, ckpt_every=2, keep_last=10))
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, until=8)
    best_file = tmp_path / "run/checkpoints/best.pt"
    best = _state(best_file)
    best["iteration"] = 8  # as if validated at 8 by a run killed before its checkpoint there
    save_atomic(best, best_file)
    for it in (6, 8):
        (tmp_path / f"run/checkpoints/iter_0000000{it}.pt").unlink()
    result = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True, until=5)
    assert result.iteration == 5 and not best_file.exists() and result.best is None
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True)
    assert _state(best_file)["iteration"] > 4  # validated again on this run's own path


def test_bf16_amp_and_multistep_train_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)  # speed is not this test's subject
    raw = _recipe(_images(tmp_path / "data"), iters=6, amp="bf16", ema=0.0, val_every=0, ckpt_every=0)
    raw["schedule"] = {"name": "multistep", "milestones": [3]}
    raw["loss"] = {"name": "l1"}
    result = train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    assert result.iteration == 6 and result.best is not None and result.best["iteration"] == 6
    assert all(torch.isfinite(p).all() for p in result.net.parameters())


def test_bf16_on_a_cpu_without_native_bf16_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=1, amp="bf16", val_every=0, ckpt_every=0)
    raw["schedule"]["warmup"] = 0
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        train(parse_config(raw), tmp_path / "a", device="cpu", quiet=True)
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(parse_config(raw), tmp_path / "b", device="cpu", quiet=True)


def test_warm_start_begins_from_earlier_weights_and_records_them(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    raw = _recipe(data, iters=4, val_every=0)
    train(parse_config(raw), tmp_path / "first", device="cpu", quiet=True)
    first = export_best(tmp_path / "first", tmp_path / "first.safetensors")
    raw["model"]["init"] = str(first)
    trainer = Trainer(parse_config(copy.deepcopy(raw)), tmp_path / "second", DistInfo(0, 1, 0, torch.device("cpu")),
                      quiet=True)
    _assert_same_tensors(trainer.net.state_dict(), load_net(first)[0].state_dict())
    _assert_same_tensors(trainer.ema.net.state_dict(), trainer.net.state_dict())
    init = trainer.meta["init"]
    assert init["weights"] == str(first) and init["iterations"] == 4
    assert init["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    train(parse_config(copy.deepcopy(raw)), tmp_path / "second", device="cpu", quiet=True)
    _, card = load_net(export_best(tmp_path / "second", tmp_path / "second.safetensors"))
    assert card["training"]["init"]["sha256"] == init["sha256"]
    assert card["training"]["recipe"]["model"]["init"] == str(first)
    assert "init" not in init  # the first stage started from scratch
    # a third stage keeps the whole chain: its init carries the second stage's own init
    second = tmp_path / "second.safetensors"
    raw["model"]["init"] = str(second)
    third = Trainer(parse_config(copy.deepcopy(raw)), tmp_path / "third", DistInfo(0, 1, 0, torch.device("cpu")),
                    quiet=True)
    assert third.meta["init"]["weights"] == str(second)
    assert third.meta["init"]["init"]["sha256"] == init["sha256"]
    # a checkpoint written before recipes had model.init resumes (the missing key reads as its default)
    plain = parse_config(_recipe(data, iters=4, val_every=0))
    train(plain, tmp_path / "old", device="cpu", quiet=True, until=2)
    ckpt_file = tmp_path / "old/checkpoints/iter_00000002.pt"
    ckpt = load_checkpoint(ckpt_file)
    del ckpt["config"]["model"]["init"]
    torch.save(ckpt, ckpt_file)
    assert train(plain, tmp_path / "old", device="cpu", quiet=True, resume=True).iteration == 4
    raw["model"]["args"] = {"width": 8}
    with pytest.raises(ConfigError, match="does not fit the recipe's model: tensor .* has shape"):
        train(parse_config(raw), tmp_path / "third", device="cpu", quiet=True)
    raw["model"]["init"] = str(tmp_path / "absent.safetensors")
    with pytest.raises(ConfigError, match="model.init .* not found"):
        train(parse_config(raw), tmp_path / "third", device="cpu", quiet=True)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    raw["model"]["init"] = str(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="not readable safetensors"):
        train(parse_config(raw), tmp_path / "third", device="cpu", quiet=True)


def test_a_warm_start_file_with_non_finite_weights_is_refused_before_training(tmp_path: Path) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=4, val_every=0)
    state = {k: v.detach().clone() for k, v in TinyNet(2).state_dict().items()}
    state["body.0.weight"][0, 0, 0, 0] = float("nan")
    init = tmp_path / "nan.safetensors"
    save_file(state, str(init))
    raw["model"]["init"] = str(init)
    message = f"^model.init '{re.escape(str(init))}' does not fit the recipe's model: tensor body.0.weight holds "
    with pytest.raises(ConfigError, match=message + r"non-finite values \(NaN or infinity\)$"):
        train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    assert not (tmp_path / "run").exists()  # refused before the run began, not "training diverged" later


def test_a_resumed_run_keeps_the_provenance_of_its_start(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    raw = _recipe(data, iters=4, val_every=0)
    train(parse_config(copy.deepcopy(raw)), tmp_path / "first", device="cpu", quiet=True)
    init = export_best(tmp_path / "first", tmp_path / "init.safetensors")
    sha = hashlib.sha256(init.read_bytes()).hexdigest()
    raw["model"]["init"] = str(init)
    train(parse_config(copy.deepcopy(raw)), tmp_path / "run", device="cpu", quiet=True, until=2)
    save_file({k: v + 1 for k, v in load_file(str(init)).items()}, str(init))  # other weights under the same name
    with pytest.warns(UserWarning, match="model.init .* has changed since this run started from it"):
        train(parse_config(copy.deepcopy(raw)), tmp_path / "run", device="cpu", quiet=True, resume=True, until=3)
    init.unlink()  # not needed to resume
    train(parse_config(copy.deepcopy(raw)), tmp_path / "run", device="cpu", quiet=True, resume=True,
          export=tmp_path / "m.safetensors")
    assert read_card(tmp_path / "m.safetensors")["training"]["init"]["sha256"] == sha
    # a budget run stopped early and resumed without --budget (at the fitted train.iters) keeps its budget
    ticks = iter(range(10**6))
    budget = IterationBudget(40.0, warmup=3, window=5, margin=1.0, clock=lambda: float(next(ticks)))
    train(parse_config(_recipe(data, iters=500, val_every=0)), tmp_path / "bud", device="cpu", quiet=True,
          budget=budget, until=12)
    assert budget.fits and list_checkpoints(tmp_path / "bud")[-1].name == "iter_00000012.pt"
    fitted = parse_config(yaml.safe_load((tmp_path / "bud/recipe.yaml").read_text()))
    train(fitted, tmp_path / "bud", device="cpu", quiet=True, resume=True, export=tmp_path / "b.safetensors")
    assert read_card(tmp_path / "b.safetensors")["training"]["budget"] == budget.record()


@pytest.mark.parametrize(("log_every", "ckpt_every", "first_bad_step"), [(4, 2, 5), (3, 4, 4)])  # a save, a log first
def test_a_diverging_run_stops_before_checkpointing_non_finite_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_every: int, ckpt_every: int, first_bad_step: int) -> None:
    real = trainer_module.learning_rate
    monkeypatch.setattr(trainer_module, "learning_rate",
                        lambda step, *args: float("inf") if step >= first_bad_step else real(step, *args))
    cfg = parse_config(_recipe(_images(tmp_path / "data"), iters=20, log_every=log_every, ckpt_every=ckpt_every,
                               val_every=0))
    with pytest.raises(SubpixelError, match="^training diverged: the weights are not finite after iteration 6 "):
        train(cfg, tmp_path / "run", device="cpu", quiet=True)
    last = list_checkpoints(tmp_path / "run")[-1]
    assert last.name == "iter_00000004.pt" and all(torch.isfinite(v).all() for v in _state(last)["model"].values())


def test_warm_start_checks_the_card_before_the_tensors(tmp_path: Path) -> None:
    from subpixel.models.registry import build
    from subpixel.models.weights import save_weights
    from subpixel.train.warm_start import warm_start

    plain = build("espcn", 2, skip="none")
    path = tmp_path / "espcn_x2.safetensors"
    save_weights(plain, path, {"name": "espcn", "architecture": "espcn", "arch_args": plain.arch_args, "scale": 2})
    with pytest.raises(ConfigError, match="is a espcn x2 model; the recipe trains sesr-m5"):
        warm_start(build("sesr-m5", 2), str(path), arch="sesr-m5")
    with pytest.raises(ConfigError, match="x2 model; the recipe trains x3"):
        warm_start(build("espcn", 3, skip="none"), str(path), arch="espcn")
    with pytest.raises(ConfigError, match="skip: 'none' there, 'nearest' here"):  # same tensors, another function
        warm_start(build("espcn", 2, skip="nearest"), str(path), arch="espcn")
    assert warm_start(build("espcn", 2, skip="none"), str(path), arch="espcn")["weights"] == str(path)


def test_a_re_export_of_the_same_weights_keeps_their_metrics(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    cfg = parse_config(_recipe(data, iters=4, val_every=0))
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True)
    out = export_best(tmp_path / "run", tmp_path / "m.safetensors")
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # readable like any file, not 0600
    card = read_card(out)
    card["metrics"] = {"Set5": {"psnr": 30.0}}
    out.with_suffix(".json").write_text(json.dumps(card))
    assert read_card(export_best(tmp_path / "run", out))["metrics"] == {"Set5": {"psnr": 30.0}}
    train(parse_config(_recipe(data, iters=6, val_every=0)), tmp_path / "run", device="cpu", quiet=True, resume=True)
    assert read_card(export_best(tmp_path / "run", out))["metrics"] == {}  # other weights: measure them anew


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_run_dir_guards_and_recipe_changes(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    raw = _recipe(data, iters=4, val_every=0)
    train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    with pytest.raises(SubpixelError, match="already has checkpoints; pass --resume"):
        train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    raw["optim"]["lr"] = 1e-3
    with pytest.raises(ConfigError, match="differs from the checkpoint iter_00000004.pt in optim.lr"):
        train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True, resume=True)
    raw["model"]["args"] = {"depth": 3}
    with pytest.raises(ConfigError, match="model.args do not fit 'tiny-train-test'.*depth"):
        train(parse_config(raw), tmp_path / "other", device="cpu", quiet=True)
    raw["model"] = {"name": "bicubic", "scale": 2}
    with pytest.raises(SubpixelError, match="no trainable parameters"):
        train(parse_config(raw), tmp_path / "other", device="cpu", quiet=True)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        train(parse_config(_recipe(data, amp="fp16")), tmp_path / "fp16", device="cpu", quiet=True)


def test_time_limit_checkpoints_at_a_log_step_and_exports_only_when_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"), iters=12, ckpt_every=0)))
    runner = CliRunner()
    args = ["train", "r.yaml", "--out", "run", "--export", "m.safetensors", "--quiet"]
    first = runner.invoke(cli, [*args, "--time-limit", "1e-9"])
    assert first.exit_code == 0, first.output
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["iter_00000004.pt"]  # log_every=4
    assert not (tmp_path / "m.safetensors").exists()  # not finished: nothing exported
    second = runner.invoke(cli, [*args, "--resume"])
    assert second.exit_code == 0, second.output
    assert list_checkpoints(tmp_path / "run")[-1].name == "iter_00000012.pt"
    assert (tmp_path / "m.safetensors").exists()


def test_cli_trains_resumes_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    raw = _recipe(Path("data"), iters=50, val_every=3, ckpt_every=3)  # relative folder: found from the cwd
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    first = runner.invoke(cli, ["train", "r.yaml", "--out", "run", "--max-iters", "4", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)  # nothing but the summary on stdout
    assert (summary["iteration"], summary["iters"], summary["complete"], summary["export"]) == (4, 4, True, None)
    assert summary["best_validation"]["iteration"] in (3, 4) and summary["throughput"]["iterations"] >= 1
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["iter_00000003.pt", "iter_00000004.pt"]
    assert yaml.safe_load((tmp_path / "run/recipe.yaml").read_text())["train"]["iters"] == 4
    with pytest.warns(UserWarning, match="train.iters changed from 4 to 8"):
        second = runner.invoke(cli, ["train", "r.yaml", "--out", "run", "--resume", "--max-iters", "8",
                                     "--export", "model.safetensors"])
    assert second.exit_code == 0, second.output
    assert "resuming from iter_00000004.pt" in second.output and "throughput:" in second.output
    speed = json.loads((tmp_path / "run/throughput.json").read_text())
    first, last = speed["sessions"]  # one record per session: the resumed chunk does not overwrite the first
    spans = [(s["from_iteration"], s["to_iteration"]) for s in (first, last)]
    assert spans == [(0, 4), (4, 8)]
    assert last["iterations"] >= 1 and 0 <= last["data_wait_share"] <= 1
    assert {"iters_per_s", "data_wait_share", "step_ms_per_iter", "batch", "patch"} <= last.keys()
    overall = speed["overall"]
    assert overall["iterations_measured"] == first["iterations"] + last["iterations"]
    assert min(first["iters_per_s"], last["iters_per_s"]) <= overall["iters_per_s"] <= max(
        first["iters_per_s"], last["iters_per_s"])
    assert read_card(tmp_path / "model.safetensors")["training"]["throughput"] == overall
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        assert list((tmp_path / "run/tb").glob("events.out.tfevents.*"))

    net, card = load_net(tmp_path / "model.safetensors")
    best = load_checkpoint(tmp_path / "run/checkpoints/best.pt")
    _assert_same_tensors(net.state_dict(), best["weights"])
    assert (card["architecture"], card["scale"], card["arch_args"]) == (ARCH, 2, {"width": 6})
    assert card["params"] == net.num_parameters() and card["metrics"] == {}
    training = card["training"]
    assert training["iterations"] == best["iteration"] and training["ema"] is True
    assert training["recipe"]["train"]["iters"] == 8 and training["seed"] == 3
    assert training["data"]["folders"] == ["data"] and len(training["data"]["sha256"]) == 64
    assert len(training["data"]["val_images"]) == 2 and training["data"]["train_images"] == 4
    assert {"git_commit", "torch", "cuda", "device", "wall_minutes"} <= training.keys()
    assert training["validation"]["psnr_y"] == pytest.approx(best["psnr"])


def test_cli_amp_overrides_the_recipe_and_is_recorded(tmp_path: Path) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=2, amp="bf16")
    raw["schedule"]["warmup"] = 0
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--amp", "off",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["amp"] == "off"
    assert _state(tmp_path / "run/checkpoints/iter_00000002.pt")["config"]["train"]["amp"] == "off"


def test_cli_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**_recipe(tmp_path / "missing"), "extra": 1}))
    result = CliRunner().invoke(cli, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, ConfigError) and "unknown key 'extra'" in str(result.exception)
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path / "missing")))
    result = CliRunner().invoke(cli, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, ConfigError) and "data folder" in str(result.exception)
    result = CliRunner().invoke(cli, ["train", str(recipe), "--export", "x.pt"])
    assert result.exit_code == 2 and ".safetensors" in result.output
    result = CliRunner().invoke(cli, ["train", str(recipe), "--device", "gpu0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "'gpu0' is not one of auto, cpu" in result.output


class _Reached(Exception):
    """``subpixel train`` got as far as training."""


def _no_training(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make ``subpixel train`` record its run folder and stop where it would train (it imports train at call time)."""
    runs: list[Path] = []

    def reached(cfg: Any, run_dir: Path, **_: Any) -> None:
        runs.append(Path(run_dir))
        raise _Reached

    monkeypatch.setattr(trainer_module, "train", reached)
    return runs


def test_a_recipe_that_is_not_text_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save("a.png")
    with pytest.raises(ConfigError, match=r"^a.png: not a text \(YAML\) recipe file$"):
        read_recipe(Path("a.png"))
    res = CliRunner().invoke(cli, ["train", "a.png", "--out", "run", "--json"])
    assert isinstance(res.exception, ConfigError) and str(res.exception) == "a.png: not a text (YAML) recipe file"
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_cannot_be_made_or_written_is_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(tmp_path / "data")))  # no data: refused before loading
    (tmp_path / "a.png").write_bytes(b"a file, not a folder")
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "r.yaml", "--out", "a.png/run"])
    assert isinstance(res.exception, SubpixelError)
    assert str(res.exception) == "run folder a.png/run cannot be made: a.png is not a folder (choose another --out)"
    (tmp_path / "runs").write_text("a file where the default run folder's parent goes")
    res = runner.invoke(cli, ["train", "r.yaml"])
    assert isinstance(res.exception, SubpixelError) and "runs is not a folder" in str(res.exception)
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "locked" and writable(path, mode))
    (tmp_path / "locked").mkdir()
    res = runner.invoke(cli, ["train", "r.yaml", "--out", "locked/run"])
    assert isinstance(res.exception, SubpixelError)
    assert str(res.exception) == ("run folder locked/run cannot be written: locked is not writable "
                                  "(choose another --out)")
    assert not (tmp_path / "locked" / "run").exists()


def test_an_export_over_the_run_folders_own_files_is_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"))))
    runs = _no_training(monkeypatch)
    runner = CliRunner()
    for export, clash in [
            ("run/throughput.safetensors", "its model card run/throughput.json would overwrite the run's own "
                                           "throughput.json"),  # its speed record
            ("run/budget.safetensors", "its model card run/budget.json would overwrite the run's own budget.json"),
            ("run/checkpoints/w.safetensors", "its weights run/checkpoints/w.safetensors would go into the run's own "
                                              "checkpoints/ folder"),
            (f"{tmp_path}/run/../run/tb/w.safetensors",
             f"its weights {tmp_path}/run/../run/tb/w.safetensors would go into the run's own tb/ folder")]:
        res = runner.invoke(cli, ["train", "r.yaml", "--out", "run", "--export", export])
        assert isinstance(res.exception, SubpixelError), res.output  # one line, before any training
        assert str(res.exception) == f"--export {export}: {clash} (choose another name or folder)"
    assert not (tmp_path / "run").exists() and runs == []
    for export in ("run/model.safetensors", "run/recipe.safetensors", "elsewhere/throughput.safetensors"):
        assert isinstance(runner.invoke(cli, ["train", "r.yaml", "--out", "run", "--export", export]).exception,
                          _Reached)


def test_a_throughput_file_written_over_is_a_warning_not_a_traceback(tmp_path: Path) -> None:
    session = {"iterations": 3, "iters_per_s": 100.0, "data_wait_share": 0.1, "data_ms_per_iter": 1.0,
               "step_ms_per_iter": 10.0, "device": "cpu"}
    path = tmp_path / "throughput.json"
    for junk in ('{"name": "a model card", "metrics": {}}', "not JSON", "[]", '{"sessions": [{"iterations": "3"}]}',
                 '{"sessions": {}}'):
        path.write_text(junk)
        with pytest.warns(UserWarning, match="throughput.json is not a record of training speed"):
            assert read_sessions(path) == []
    with pytest.warns(UserWarning, match="not a record of training speed"):
        content = record_session(path, session)  # the next session's record replaces it
    assert content["sessions"] == [session] and read_sessions(path) == [session]
    raw = _recipe(_images(tmp_path / "data"), iters=3, val_every=0)
    raw["schedule"]["warmup"] = 0
    train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    (tmp_path / "run/throughput.json").write_text('{"name": "a model card written over it"}')
    with pytest.warns(UserWarning, match="not a record of training speed"):
        export_best(tmp_path / "run", tmp_path / "m.safetensors")
    assert "throughput" not in read_card(tmp_path / "m.safetensors")["training"]


def test_output_aliases_name_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    raw = _recipe(Path("data"), iters=2, val_every=0)
    raw["schedule"]["warmup"] = 0
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(cli, ["train", "r.yaml", "-o", "short", "--quiet"])  # as upscale/video/export
    assert res.exit_code == 0, res.output
    assert list_checkpoints(tmp_path / "short")[-1].name == "iter_00000002.pt"
    runs = _no_training(monkeypatch)
    for flag in ("--output", "--out"):
        assert isinstance(CliRunner().invoke(cli, ["train", "r.yaml", flag, flag.strip("-")]).exception, _Reached)
    assert runs == [Path("output"), Path("out")]


def test_a_follow_folder_that_does_not_exist_yet_is_warned_about(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"))))
    runs = _no_training(monkeypatch)
    with pytest.warns(UserWarning, match=f"^--follow runs/leadr: no such run folder \\(yet\\); without its "
                                         f"{BUDGET_FILE} after the warm-up this run fits its iterations to its own"):
        res = CliRunner().invoke(cli, ["train", "r.yaml", "--budget", "1", "--follow", "runs/leadr", "--quiet"])
    assert isinstance(res.exception, _Reached) and runs == [Path("runs/r")]
    (tmp_path / "runs" / "leader").mkdir(parents=True)  # a leader that has not fitted yet: no warning at start
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = CliRunner().invoke(cli, ["train", "r.yaml", "--budget", "1", "--follow", "runs/leader", "--quiet"])
    assert isinstance(res.exception, _Reached) and len(runs) == 2


def test_stop_messages_go_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"), iters=12, ckpt_every=0, val_every=0)))
    res = CliRunner().invoke(cli, ["train", "r.yaml", "--out", "run", "--time-limit", "1e-9"])
    assert res.exit_code == 0, res.output
    assert "time limit reached at iteration 4" in res.stderr and "time limit" not in res.stdout  # stdout: results
    _ctrl_c_at_batch(monkeypatch, 2)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        train(parse_config(_recipe(Path("data"), iters=12, val_every=0)), tmp_path / "cut", device="cpu")
    out, err = capsys.readouterr()
    assert "interrupted: checkpoint at iteration 2" in err and "interrupted" not in out



def test_ctrl_c_with_json_reports_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"), iters=12, val_every=0)))
    monkeypatch.setattr(sys, "argv", ["subpixel", "train", "r.yaml", "--out", "run", "--json"])
    _ctrl_c_at_batch(monkeypatch, 2)
    exit_code = run_main()
    out, err = capsys.readouterr()
    assert exit_code == 130 and err.count("interrupted") == 1
    assert json.loads(out) == {"error": "interrupted", "run_dir": "run", "iteration": 2,
                               "checkpoint": str(Path("run/checkpoints/iter_00000002.pt"))}
    assert (tmp_path / "run/checkpoints/iter_00000002.pt").is_file()


def test_a_run_resumed_at_its_lowered_iters_validates_before_export(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(_recipe(_images(tmp_path / "data"), iters=8, val_every=0))
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, until=4)  # stopped: nothing validated
    assert not (tmp_path / "run/checkpoints/best.pt").exists()
    real, calls = Trainer.validate, []
    monkeypatch.setattr(Trainer, "validate", lambda self: calls.append(self.iteration) or real(self))
    with pytest.warns(UserWarning, match="train.iters changed from 8 to 4"):
        result = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True, max_iters=4,
                       export=tmp_path / "m.safetensors")
    assert calls == [4] and result.best is not None and result.best["iteration"] == 4
    ckpt = _state(checkpoint_path(tmp_path / "run", 4))
    assert ckpt["best"] == result.best  # a run resumed from it with more iterations knows its best
    _assert_same_tensors(_state(tmp_path / "run/checkpoints/best.pt")["weights"], ckpt["ema"])
    assert read_card(tmp_path / "m.safetensors")["training"]["validation"]["psnr_y"] == result.best["psnr"]
    train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True, max_iters=4)
    assert calls == [4]  # validated already: not again

def test_export_without_validation_uses_last_ema(tmp_path: Path) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=3, val_every=0)
    raw["data"]["val_count"], raw["schedule"]["warmup"] = 0, 0
    train(parse_config(raw), tmp_path / "run", device="cpu", quiet=True)
    out = export_best(tmp_path / "run", tmp_path / "m.safetensors")
    net, card = load_net(out)
    _assert_same_tensors(net.state_dict(), _state(tmp_path / "run/checkpoints/iter_00000003.pt")["ema"])
    assert card["training"]["validation"] is None and card["training"]["iterations"] == 3
    assert "notes" not in card
    _, card = load_net(export_best(tmp_path / "run", tmp_path / "n.safetensors", notes="RGB: measured"))
    assert card["notes"] == "RGB: measured"
    with pytest.raises(SubpixelError, match="no checkpoint"):
        export_best(tmp_path / "empty", tmp_path / "n.safetensors")


def test_missing_tensorboard_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.warns(UserWarning, match="TensorBoard logging is off"):
        log = ScalarLog(tmp_path / "tb")
    log.scalar("x", 1.0, 1)
    log.close()
    assert not (tmp_path / "tb").exists()


def test_a_resumed_session_hides_what_an_earlier_one_logged_after_its_start(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = ScalarLog(tmp_path / "tb")
    for step in range(1, 11):  # a run killed at step 10 after checkpointing at 5
        first.scalar("loss", 1.0, step)
    first.close()
    resumed = ScalarLog(tmp_path / "tb", start=5)
    for step in range(6, 9):
        resumed.scalar("loss", 0.5, step)
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    steps = [(e.step, e.value) for e in events.Scalars("loss")]
    assert steps == [(s, 1.0) for s in range(1, 6)] + [(s, 0.5) for s in range(6, 9)]



def test_a_fresh_run_hides_what_a_run_killed_before_its_first_checkpoint_logged(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for value, last in ((1.0, 6), (0.5, 3)):  # a run killed at step 6, then a fresh one in its folder
        log = ScalarLog(tmp_path / "tb")
        for step in range(1, last + 1):
            log.scalar("loss", value, step)
        log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(s, 0.5) for s in range(1, 4)]

# --- DDP -----------------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, port: int, raw: dict[str, Any], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    registry._REGISTRY[ARCH] = TINY_SPEC  # a fresh process: the module fixture did not run here
    result = train(parse_config(raw), Path(out) / "run", device="cpu", quiet=True)
    torch.save({k: v.clone() for k, v in result.net.state_dict().items()}, Path(out) / f"rank{rank}.pt")


def test_ddp_two_cpu_processes_stay_in_sync(tmp_path: Path, free_port: int) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=6, val_every=3, ckpt_every=3)
    mp.spawn(_ddp_worker, args=(2, free_port, raw, str(tmp_path)), nprocs=2, join=True)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    _assert_same_tensors(w0, w1)
    ckpt = _state(tmp_path / "run/checkpoints/iter_00000006.pt")
    _assert_same_tensors(ckpt["ema"], w0)
    assert len(ckpt["sampler"]) == 2 and not torch.equal(ckpt["sampler"][0], ckpt["sampler"][1])
    assert ckpt["meta"]["world_size"] == 2 and (tmp_path / "run/checkpoints/best.pt").is_file()


def _ddp_ctrl_c_worker(rank: int, world: int, ports: list[int], raw: dict[str, Any], out: str) -> None:
    """A straight run, then a run whose rank 1 alone gets Ctrl-C in step 5, then its resumption."""
    os.environ.update(MASTER_ADDR="127.0.0.1", WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      TORCHELASTIC_RUN_ID="test")  # as under torchrun, whose agent echoes the Ctrl-C it gets
    torch.set_num_threads(1)
    registry._REGISTRY[ARCH] = TINY_SPEC  # a fresh process: the module fixture did not run here
    root = Path(out)
    os.environ["MASTER_PORT"] = str(ports[0])
    straight = train(parse_config(raw), root / "straight", device="cpu", quiet=True)
    real_sample, calls = PatchSampler.sample, []

    def ctrl_c_on_rank_1(self: PatchSampler) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        if rank == 1 and len(calls) == 5:  # mid-step 5, on one rank: the terminal's Ctrl-C and torchrun's echo
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_sample(self)

    PatchSampler.sample = ctrl_c_on_rank_1  # type: ignore[method-assign]
    os.environ["MASTER_PORT"] = str(ports[1])
    stopped = None
    try:
        train(parse_config(raw), root / "cut", device="cpu", quiet=True)
    except KeyboardInterrupt as err:
        stopped = f"{type(err).__name__}: {err}"
    PatchSampler.sample = real_sample  # type: ignore[method-assign]
    kept = [p.name for p in list_checkpoints(root / "cut")]
    streams = len(_state(root / "cut/checkpoints" / kept[-1])["sampler"])  # the resumed run prunes it
    os.environ["MASTER_PORT"] = str(ports[2])
    resumed = train(parse_config(raw), root / "cut", device="cpu", quiet=True, resume=True)
    torch.save({"stopped": stopped, "steps": len(calls), "kept": kept, "streams": streams,
                "straight": straight.net.state_dict(), "resumed": resumed.net.state_dict()}, root / f"rank{rank}.pt")


def _spawn(fn: Any, args: tuple, nprocs: int, deadline_s: float) -> None:
    """``mp.spawn`` that fails, rather than hangs, when the processes outlast ``deadline_s`` (a rank left waiting
    in a collective for one that is gone)."""
    context = mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    end = time.monotonic() + deadline_s
    while not context.join(timeout=1):
        if time.monotonic() > end:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the processes still ran after {deadline_s} s")


def test_ctrl_c_on_one_ddp_rank_stops_every_rank_after_the_same_step(tmp_path: Path) -> None:
    raw = _recipe(_images(tmp_path / "data"), iters=8, val_every=0, ckpt_every=0)
    _spawn(_ddp_ctrl_c_worker, (2, free_ports(3), raw, str(tmp_path)), nprocs=2, deadline_s=240)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # rank 0, quiet, says "interrupted" for the job; rank 1 stays silent
    assert [r["stopped"] for r in ranks] == ["Interrupted: interrupted", "Interrupted: "]
    # both stopped after step 6 (step 5's vote had begun when Ctrl-C came), whose checkpoint rank 0 wrote
    assert [r["steps"] for r in ranks] == [6, 6]
    assert ranks[0]["kept"] == ["iter_00000006.pt"] and ranks[0]["streams"] == 2  # each rank's crop stream
    for r in ranks:  # the resumed run ends with the weights of the straight one
        _assert_same_tensors(r["straight"], r["resumed"])
    sessions = read_sessions(tmp_path / "cut/throughput.json")
    assert [(s["from_iteration"], s["to_iteration"], s["world_size"]) for s in sessions] == [(0, 6, 2), (6, 8, 2)]


def test_rank_streams_differ() -> None:
    seeds = {_stream_seed(s, r) for s in range(3) for r in range(4)}
    assert len(seeds) == 12 and all(0 <= x < 2**63 for x in seeds)


def test_throughput_file_keeps_sessions_and_reads_a_bare_record(tmp_path: Path) -> None:
    def session(steps: int, ms: float, data_ms: float) -> dict[str, Any]:
        return {"iterations": steps, "iters_per_s": 1e3 / ms, "data_wait_share": data_ms / ms,
                "data_ms_per_iter": data_ms, "step_ms_per_iter": ms, "device": "cpu"}

    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(session(100, 10.0, 1.0)))  # a file from before sessions were kept
    content = record_session(path, session(300, 20.0, 1.0))
    assert len(read_sessions(path)) == 2 and content == json.loads(path.read_text())
    overall = content["overall"]
    assert overall["iterations_measured"] == 400 and overall["devices"] == ["cpu"]
    assert overall["iters_per_s"] == pytest.approx(400 / (100 * 0.010 + 300 * 0.020))
    assert overall["data_wait_share"] == pytest.approx(400 * 0.001 / 7.0)


def test_budget_fits_iterations_and_the_card_records_it(tmp_path: Path) -> None:
    ticks = iter(range(10**6))
    budget = IterationBudget(40.0, warmup=3, window=5, margin=1.0, clock=lambda: float(next(ticks)))  # 1 s a step
    cfg = parse_config(_recipe(_images(tmp_path / "data"), iters=500, val_every=10))
    result = train(cfg, tmp_path / "run", device="cpu", quiet=True, budget=budget,
                   export=tmp_path / "m.safetensors")
    total = budget.fits[-1][1]
    assert 30 <= total <= 45 and result.iteration == total  # ended by the budget, not the recipe's 500
    assert json.loads((tmp_path / "run" / BUDGET_FILE).read_text())["total"] == total
    assert yaml.safe_load((tmp_path / "run/recipe.yaml").read_text())["train"]["iters"] == total
    card = read_card(tmp_path / "m.safetensors")
    assert card["training"]["recipe"]["train"]["iters"] == total and card["training"]["budget"]["total"] == total


def _one_second_steps(seconds: float) -> IterationBudget:
    ticks = iter(range(10**6))
    return IterationBudget(seconds, warmup=3, window=5, margin=1.0, clock=lambda: float(next(ticks)))


def _budget_run_past_the_recipe(run_dir: Path) -> tuple[Any, int]:
    """A recipe of 20 iterations and its run, stopped at 25 of the 40 or so its budget fitted."""
    cfg = parse_config(_recipe(_images(run_dir.parent / "data"), iters=20, val_every=10))
    budget = _one_second_steps(40.0)
    train(copy.deepcopy(cfg), run_dir, device="cpu", quiet=True, budget=budget, until=25)
    total = budget.fits[-1][1]
    assert total > 25 and list_checkpoints(run_dir)[-1].name == "iter_00000025.pt"
    return cfg, total


def test_a_budget_run_resumed_without_budget_keeps_its_fitted_total(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    cfg, total = _budget_run_past_the_recipe(tmp_path / "run")
    with warnings.catch_warnings():  # after an interruption: neither refused nor a restarted schedule
        warnings.simplefilter("error")  # (no "train.iters changed")
        result = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", resume=True)
    assert result.iteration == total
    assert f"train.iters {total} (the --budget fit of checkpoint iter_00000025.pt), not the recipe's 20" \
        in capsys.readouterr().err
    again = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True,
                  export=tmp_path / "m.safetensors")  # finished: nothing to train, only exported
    assert again.iteration == total and read_card(tmp_path / "m.safetensors")["training"]["budget"]["total"] == total
    assert train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True,
                 max_iters=total + 2).iteration == total + 2  # --max-iters still sets the total


def test_a_budget_run_past_the_recipes_iters_resumes_with_a_budget(tmp_path: Path) -> None:
    cfg, total = _budget_run_past_the_recipe(tmp_path / "run")
    refit = _one_second_steps(20.0)
    result = train(copy.deepcopy(cfg), tmp_path / "run", device="cpu", quiet=True, resume=True, budget=refit)
    assert refit.fits and result.iteration == refit.fits[-1][1] > 25  # from the fitted total, refitted from there


def test_a_named_commit_wins_over_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    from subpixel.train.provenance import git_commit

    monkeypatch.setenv("SUBPIXEL_GIT_COMMIT", "0123abc")
    assert git_commit() == "0123abc"
    monkeypatch.delenv("SUBPIXEL_GIT_COMMIT")
    assert git_commit() != "0123abc"


def test_an_installed_package_names_no_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subpixel.train import provenance

    monkeypatch.delenv("SUBPIXEL_GIT_COMMIT", raising=False)
    monkeypatch.setattr(provenance, "IN_CHECKOUT", False)  # site-packages of a venv inside some git checkout
    assert provenance.git_commit() is None


def test_budget_options_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(Path("data"))))
    runner = CliRunner()
    lone = runner.invoke(cli, ["train", "r.yaml", "--follow", "other", "--quiet"])
    assert lone.exit_code != 0 and "needs --budget" in lone.output
    both = runner.invoke(cli, ["train", "r.yaml", "--budget", "1", "--max-iters", "5", "--quiet"])
    assert both.exit_code != 0 and "--budget sets the iterations itself" in both.output
    assert not (tmp_path / "runs").exists()  # nothing ran
    (tmp_path / "file").write_text("a file, not a folder")
    for bad in ("file/m.safetensors", "m.pt"):
        res = runner.invoke(cli, ["train", "r.yaml", "--export", bad, "--quiet"])
        assert res.exit_code == 2 and "--export" in res.output and not (tmp_path / "runs").exists()


def test_short_budgets_measure_within_their_chunk() -> None:
    from subpixel.train.command import _budget

    short, long = _budget(30.0, None), _budget(600.0, None)
    assert short.warmup + short.window <= 0.25 * 30 and (long.warmup, long.window) == (15.0, 20.0)


def test_recipes_shared_data_paths_resolve_through_subpixel_data_outside_the_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package runs the repository's recipes from any folder: ``../shared/data/...`` is also
    looked up in ``$SUBPIXEL_DATA``, as evaluation finds its sets; without it the error says how to point there."""
    from subpixel.train import config as train_config

    (tmp_path / "data" / "train" / "T91").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(train_config, "IN_CHECKOUT", False)
    found = train_config.shared_data_root
    monkeypatch.setattr(train_config, "shared_data_root", lambda: None)  # no shared data anywhere
    with pytest.raises(SubpixelError, match="set SUBPIXEL_DATA to the shared data folder"):
        train_config.resolve_data_folder("../shared/data/train/T91")
    monkeypatch.setattr(train_config, "shared_data_root", found)
    monkeypatch.setenv("SUBPIXEL_DATA", str(tmp_path / "data"))
    assert train_config.resolve_data_folder("../shared/data/train/T91") == (tmp_path / "data" / "train" / "T91")
    with pytest.raises(SubpixelError, match="not found") as err:  # other relative paths: as before
        train_config.resolve_data_folder("train/T91")
    assert "SUBPIXEL_DATA" not in str(err.value)


def test_the_warning_on_images_too_small_for_a_patch_says_how_many_it_leaves_unnamed(tmp_path: Path) -> None:
    data = _images(tmp_path / "data", count=4)
    for i in range(7):
        Image.new("RGB", (8, 8)).save(data / f"tiny{i}.png")  # 4x4 LR at x2: under a 6-pixel patch
    with pytest.warns(UserWarning, match=r"^7 training images are smaller .*tiny4\.png and 2 more$"):
        raw = _recipe(data)
        raw["data"].update(val_count=0, val_names=["im0.png"])
        Trainer(parse_config(raw), tmp_path / "run", DistInfo(0, 1, 0, torch.device("cpu")), quiet=True)
