"""Model zoo architectures: shapes, parameter/MAC counts, folding equalities, receptive fields."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from subpixel.errors import SubpixelError
from subpixel.models import architectures, build, register, registry
from subpixel.models.base import SRNet
from subpixel.models.complexity import count_macs, count_params
from subpixel.models.flagship import RepConv3x3, RepDepthwise, Sprint
from subpixel.models.loader import load
from subpixel.models.sesr import SESR, LinearBlock
from subpixel.models.weights import load_net, save_weights

LEARNED = sorted(name for name, spec in architectures().items() if not spec.interpolation)


def _randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values for every parameter (PReLU slopes and biases included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
    return net


@pytest.mark.parametrize("name", LEARNED)
def test_output_shape_at_every_scale(name: str) -> None:
    spec = architectures()[name]
    x = torch.rand(1, 3, 12, 10)
    for scale in spec.scales or (2, 3, 4):
        with torch.no_grad():
            out = build(name, scale).eval()(x)
        assert out.shape == (1, 3, 12 * scale, 10 * scale), (name, scale)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs", [{"mode": "y"}, {"skip": "nearest"}, {"skip": "bicubic"}])
def test_espcn_variants_shape(kwargs: dict) -> None:
    for scale in (2, 3, 4):
        assert build("espcn", scale, **kwargs)(torch.rand(2, 3, 12, 10)).shape == (2, 3, 12 * scale, 10 * scale)


def test_espcn_parameter_count_x3_rgb() -> None:
    c, s = 3, 3
    expected = (c * 64 * 5 * 5 + 64) + (64 * 32 * 3 * 3 + 32) + (32 * c * s * s * 3 * 3 + c * s * s)
    assert expected == 31131
    assert count_params(build("espcn", 3)) == expected


def test_sesr_m5_y_collapsed_matches_paper_count() -> None:
    # the paper's 13.52K weights for SESR-M5 x2 (Y), plus 16+16*5+4 biases and 5x16 PReLU slopes
    net = build("sesr-m5", 2, mode="y", collapsed=True)
    weights = 1 * 16 * 25 + 5 * 16 * 16 * 9 + 16 * 4 * 25
    assert weights == 13520
    assert count_params(net) == weights + 16 + 5 * 16 + 4 + 5 * 16


def test_rlfn_parameter_count_matches_paper() -> None:
    assert count_params(build("rlfn", 4)) == 543_740  # the paper's 0.543 M at x4


def test_rlfn_plain_is_rlfn_without_attention() -> None:
    rlfn, plain = build("rlfn", 4), build("rlfn-plain", 4)
    trunk = {k: v.shape for k, v in rlfn.state_dict().items() if ".mix." not in k and ".esa." not in k}
    assert {k: v.shape for k, v in plain.state_dict().items()} == trunk
    blocks = 6 * (52 * 52 + 52 + sum(p.numel() for p in rlfn.blocks[0].esa.parameters()))
    assert count_params(rlfn) - count_params(plain) == blocks  # the 1x1 mix and ESA of each block
    x = torch.rand(1, 3, 9, 11)
    assert plain(x).shape == (1, 3, 36, 44) and plain.receptive_field < rlfn.receptive_field
    assert type(build("rlfn-plain", 4, **plain.arch_args)) is type(plain)  # a card's arch_args rebuild it


@pytest.mark.parametrize("name", ["sprint", "sprint-s"])
def test_sprint_under_half_a_million_parameters(name: str) -> None:
    for scale in (2, 3, 4):
        net = build(name, scale)
        assert count_params(net) <= 500_000
        assert count_params(net.reparameterize()) <= 500_000


def test_macs_espcn_hand_computed() -> None:
    per_lr_pixel = 3 * 64 * 25 + 64 * 32 * 9 + 32 * 27 * 9
    assert count_macs(build("espcn", 3)) == per_lr_pixel * 240 * 427  # 1280/3 rounds up to 427
    per_lr_pixel_x2 = 3 * 64 * 25 + 64 * 32 * 9 + 32 * 12 * 9
    assert count_macs(build("espcn", 2), out_hw=(64, 48)) == per_lr_pixel_x2 * 32 * 24


@pytest.mark.parametrize("name", ["sprint", "sesr-m5"])
def test_macs_count_the_inference_form(name: str) -> None:
    net = build(name, 4)
    assert count_macs(net, out_hw=(64, 48)) == count_macs(net.deploy(), out_hw=(64, 48)) > 0


def test_macs_linear_and_transposed_conv() -> None:
    class Toy(SRNet):
        def __init__(self) -> None:
            super().__init__(scale=1)
            self.up = torch.nn.ConvTranspose2d(3, 4, 2, stride=2)
            self.fc = torch.nn.Linear(10, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.up(x)[..., :10])

    # transposed conv: each of 3*5*5 inputs scatters to 4*2*2 outputs; linear: 4*10*5 rows of 10
    assert count_macs(Toy(), out_hw=(5, 5)) == 3 * 25 * 4 * 4 + 4 * 10 * 5 * 10


@pytest.mark.parametrize("name", ["sesr-m5", "sesr-m11", "sesr-xl"])
@pytest.mark.parametrize("scale", [2, 4])
def test_sesr_collapse_is_exact(name: str, scale: int) -> None:
    net = _randomize(build(name, scale, expansion=32).double(), seed=scale).eval()
    plain = net.collapse()
    assert isinstance(plain, type(net)) and plain.arch_args["collapsed"] is True
    assert not any(isinstance(m, LinearBlock) for m in plain.modules())
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), rtol=0, atol=1e-5)
    # the collapsed weights load into the registered collapsed structure
    rebuilt = build(name, scale, **plain.arch_args)
    rebuilt.load_state_dict(plain.state_dict())
    assert count_params(rebuilt) == count_params(plain) < count_params(net)


_BRANCHES = {  # module factory -> the sum of its branches, computed branch by branch
    "linear block": (lambda: LinearBlock(4, 4, 3, 24, True), lambda m, x: m.project(m.expand(x)) + x),
    "linear block, no residual": (lambda: LinearBlock(4, 5, 5, 24, False), lambda m, x: m.project(m.expand(x))),
    "rep 3x3": (lambda: RepConv3x3(4), lambda m, x: m.conv3(x) + m.conv1(x) + x),
    "rep 3x3, no identity": (lambda: RepConv3x3(4, identity=False), lambda m, x: m.conv3(x) + m.conv1(x)),
    "rep depthwise": (lambda: RepDepthwise(4, 7), lambda m, x: m.large(x) + m.small(x)),
}


@pytest.mark.parametrize("kind", list(_BRANCHES))
def test_foldable_modules_run_folded_with_the_branches_values_and_gradients(kind: str) -> None:
    make, branches = _BRANCHES[kind]
    torch.manual_seed(0)
    module = make().double()
    x = torch.rand(2, 4, 7, 6, dtype=torch.float64)
    expanded = branches(module, x)
    grads_expanded = torch.autograd.grad(expanded.square().sum(), list(module.parameters()))
    folded = module(x)
    grads_folded = torch.autograd.grad(folded.square().sum(), list(module.parameters()))
    torch.testing.assert_close(folded, expanded, rtol=0, atol=1e-10)
    for a, b in zip(grads_folded, grads_expanded):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_sesr_collapse_float32_and_y_mode() -> None:
    net = build("sesr-m5", 2, mode="y").eval()
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(net.collapse()(x), net(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "scale"), [("sprint", 2), ("sprint", 4), ("sprint-s", 3)])
def test_sprint_reparameterize_is_exact(name: str, scale: int) -> None:
    net = _randomize(build(name, scale).double(), seed=scale).eval()
    plain = net.reparameterize()
    assert isinstance(plain, Sprint) and plain.arch_args["reparameterized"] is True
    assert count_params(plain) < count_params(net)
    x = torch.rand(1, 3, 10, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), rtol=0, atol=1e-5)
    build(name, scale, **plain.arch_args).load_state_dict(plain.state_dict())


def test_sprint_reparameterize_float32() -> None:
    net = build("sprint", 4).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.reparameterize()(x), net(x), rtol=0, atol=1e-5)


def _perturbation_reach(net: torch.nn.Module, scale: int, size: int = 40, at: int = 3) -> int:
    """Farthest LR Chebyshev distance of an output pixel changed by bumping input pixel ``(at, at)``."""
    x = torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    bumped = x.clone()
    bumped[0, :, at, at] += 0.5
    with torch.no_grad():
        diff = (net(bumped) - net(x)).abs().amax(dim=(0, 1))
    ys, xs = torch.nonzero(diff > 1e-12, as_tuple=True)
    return int(torch.maximum((ys // scale - at).abs(), (xs // scale - at).abs()).max())


def _dependency_reach(net: torch.nn.Module, scale: int) -> int:
    """Farthest LR Chebyshev distance of an input pixel one output pixel depends on (exact, by autograd).

    Backpropagation gives exactly zero outside the dependency cone and tiny but nonzero values up to
    its edge, where a perturbation's effect would drown in rounding.
    """
    centre = net.receptive_field + 3
    x = torch.rand(1, 3, 2 * centre + 1, 2 * centre + 1, dtype=torch.float64, requires_grad=True)
    net(x)[0, :, centre * scale, centre * scale].sum().backward()
    ys, xs = torch.nonzero(x.grad.abs().amax(dim=(0, 1)) != 0, as_tuple=True)
    return int(torch.maximum((ys - centre).abs(), (xs - centre).abs()).max())


@pytest.mark.parametrize(("name", "scale", "kwargs", "tight"), [
    ("espcn", 3, {}, True), ("espcn", 2, {"mode": "y"}, True), ("espcn", 4, {"skip": "bicubic"}, True),
    ("sesr-m5", 2, {"expansion": 16}, True), ("sesr-m11", 4, {"collapsed": True}, True),
    ("sesr-xl", 2, {"mode": "y", "expansion": 16}, False),
    ("sprint", 2, {}, False), ("sprint-s", 3, {"reparameterized": True}, False),
    ("sprint", 4, {"channels": 8, "blocks": 2}, True), ("sprint", 3, {"channels": 8, "blocks": 2,
                                                                      "reparameterized": True}, True),
])
def test_receptive_field(name: str, scale: int, kwargs: dict, tight: bool) -> None:
    """No output pixel farther than ``receptive_field`` LR pixels changes (and, on small nets, some at it do)."""
    torch.manual_seed(0)
    net = build(name, scale, **kwargs).double().eval()
    assert 3 + net.receptive_field < 40  # the far side of the bump's reach lies inside the image
    assert _perturbation_reach(net, scale) <= net.receptive_field
    if tight:
        assert _dependency_reach(net, scale) == net.receptive_field


def test_espcn_y_mode_keeps_gray_gray() -> None:
    net = build("espcn", 2, mode="y").eval()
    gray = torch.rand(1, 1, 12, 10).expand(1, 3, 12, 10)
    with torch.no_grad():
        out = net(gray)
    torch.testing.assert_close(out[:, 1], out[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[:, 2], out[:, 0], rtol=0, atol=1e-5)


def test_sesr_y_mode_keeps_gray_gray() -> None:
    net = build("sesr-m5", 3, mode="y", expansion=16).eval()
    gray = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8)
    with torch.no_grad():
        out = net(gray)
    torch.testing.assert_close(out[:, 2], out[:, 0], rtol=0, atol=1e-5)


def test_bad_arguments_are_user_errors() -> None:
    from subpixel.errors import SubpixelError

    with pytest.raises(SubpixelError):
        build("espcn", 2, mode="ycbcr")
    with pytest.raises(SubpixelError):
        build("espcn", 2, skip="bilinear")
    with pytest.raises(SubpixelError):
        build("sesr-m5", 2, mode="rgba")
    with pytest.raises(SubpixelError):
        build("sprint", 2, mixer_kernel=4)
    with pytest.raises(SubpixelError, match="mixer_kernel must be odd"):
        build("sprint", 2, mixer_kernel="7")


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("sprint", {"channels": 0}, "sprint: channels must be a positive integer, got 0"),
    ("sprint", {"blocks": -1}, "sprint: blocks must be a positive integer, got -1"),
    ("sprint-s", {"channels": "abc"}, "sprint-s: channels must be a positive integer, got 'abc'"),
    ("rlfn", {"esa_channels": 0}, "rlfn: esa_channels must be"),
    ("rlfn-plain", {"blocks": True}, "rlfn-plain: blocks must be"),
    ("sesr-m5", {"expansion": 0}, "sesr-m5: expansion must be"),
    ("frvsr", {"flow_channels": []}, "frvsr: flow_channels must be a non-empty list of positive integers, got"),
    ("frvsr", {"flow_channels": [4, 0]}, "frvsr: flow_channels must be a non-empty list"),
    ("frvsr", {"flow_channels": 4}, "frvsr: flow_channels must be a non-empty list"),
    ("sprint", {"channels": [48]}, "sprint: channels must be a positive integer, got [48]"),
])
def test_channel_and_layer_counts_must_be_positive_integers(name: str, kwargs: dict, message: str) -> None:
    from subpixel.errors import SubpixelError

    with pytest.raises(SubpixelError, match=f"^{re.escape(message)}"):
        build(name, 2, **kwargs)


def test_sesr_variants_are_sesr() -> None:
    assert all(isinstance(build(n, 2, collapsed=True), SESR) for n in ("sesr-m5", "sesr-m11", "sesr-xl"))


@pytest.mark.filterwarnings("ignore")
def test_reparameterized_sprint_exports_to_onnx_with_dynamic_size() -> None:
    import io

    import onnxruntime

    net = build("sprint-s", 3).reparameterize().eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.rand(1, 3, 16, 16),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False)
    session = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        expected = net(x).numpy()
    got = session.run(None, {"x": x.numpy()})[0]
    assert got.shape == (1, 3, 33, 39)
    assert abs(got - expected).max() < 1e-4


def test_rlfn_runs_inputs_under_three_pixels() -> None:
    net = build("rlfn", 2, channels=8, blocks=1).eval()
    for h, w in ((1, 1), (2, 5), (7, 1)):
        with torch.no_grad():
            out = net(torch.rand(1, 3, h, w))
        assert out.shape == (1, 3, 2 * h, 2 * w) and torch.isfinite(out).all()


def _espcn_file(tmp_path: Path, stem: str = "w", **card: object) -> Path:
    """A random espcn x2 weights file whose card is updated with ``card``."""
    path = tmp_path / f"{stem}.safetensors"
    save_weights(build("espcn", 2), path, {"name": "mine", "architecture": "espcn", "arch_args": {}, "scale": 2,
                                           **card})
    return path


@pytest.mark.parametrize("scale", [2.0, "2"])
def test_a_whole_scale_written_as_a_float_or_string_still_loads(tmp_path, scale) -> None:
    weights = _espcn_file(tmp_path)
    weights.with_suffix(".json").write_text(json.dumps({"architecture": "espcn", "arch_args": {}, "scale": scale}))
    net, card = load_net(weights)
    assert net.scale == 2 and card["scale"] == 2


@pytest.mark.parametrize(("card", "message"), [
    (None, "must be a JSON object, not NoneType"),
    ("espcn", "must be a JSON object, not str"),
    ({"architecture": ["espcn"], "scale": 2}, "architecture must be one of"),
    ({"architecture": "espcn", "scale": "two"}, "scale must be a positive integer, got 'two'"),
    ({"architecture": "espcn", "scale": "\u00b2"}, "scale must be a positive integer, got '\u00b2'"),
    ({"architecture": "espcn", "scale": True}, "scale must be a positive integer, got True"),
    ({"architecture": "espcn", "scale": 2.5}, "scale must be a positive integer, got 2.5"),
    ({"architecture": "espcn", "scale": 2, "arch_args": None}, "arch_args must be a JSON object, got None"),
    ({"architecture": "espcn", "scale": 2, "arch_args": ["y"]}, "arch_args must be a JSON object"),
    ({"architecture": "espcn", "scale": 2, "arch_args": {"foo": 1}}, "cannot build espcn x2: .*'foo'"),
    ({"architecture": "sprint", "scale": 2, "arch_args": {"channels": [48]}}, "cannot build sprint x2: sprint: chan"),
    ({"architecture": "sesr-m5", "scale": 2}, "do not fit sesr-m5 x2: tensor .* is missing"),
    ({"architecture": "espcn", "scale": 3}, "do not fit espcn x3: tensor conv3.weight has shape"),
    ({"architecture": "espcn", "scale": 2, "arch_args": {"mode": "y"}}, "tensor conv1.weight has shape"),
])
def test_malformed_cards_are_one_line_errors_naming_the_file(tmp_path, card, message) -> None:
    weights = _espcn_file(tmp_path)
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(SubpixelError, match=message) as err:
        load_net(weights)
    assert "w.json" in str(err.value) or "w.safetensors" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.update({"conv1.weight": s["conv1.weight"].to(torch.bool)}), "conv1.weight is bool, not floating"),
    (lambda s: s.update({"conv1.weight": s["conv1.weight"].to(torch.int32)}), "conv1.weight is int32, not floating"),
    (lambda s: s["conv2.bias"].__setitem__(0, float("nan")), "conv2.bias holds non-finite values"),
    (lambda s: s["conv2.bias"].__setitem__(0, float("inf")), "conv2.bias holds non-finite values"),
    (lambda s: s.update({"conv2.bias": s["conv2.bias"].double().fill_(1e300)}), "conv2.bias holds non-finite values"),
    (lambda s: s.update({"conv1.weight": s["conv1.weight"].flatten()}), r"conv1.weight has shape \[4800\], not"),
    (lambda s: s.pop("conv1.bias"), "tensor conv1.bias is missing"),
    (lambda s: s.update({"extra": torch.zeros(1)}), "unexpected tensor extra"),
])
def test_unfit_weights_are_one_line_errors_naming_the_tensor(tmp_path, change, message) -> None:
    weights = _espcn_file(tmp_path)
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights))
    with pytest.raises(SubpixelError, match=f"^weights {re.escape(str(weights))} do not fit espcn x2: .*{message}"):
        load_net(weights)


def test_a_card_that_is_not_utf8_is_a_one_line_error(tmp_path) -> None:
    weights = _espcn_file(tmp_path)
    text = json.dumps({"architecture": "espcn", "scale": 2, "notes": "mod\u00e8le"}, ensure_ascii=False)
    weights.with_suffix(".json").write_bytes(text.encode("latin-1"))
    with pytest.raises(SubpixelError, match=r"w\.json is not valid JSON"):
        load_net(weights)


def test_float8_weights_are_checked_in_the_dtype_they_load_as(tmp_path) -> None:
    weights = _espcn_file(tmp_path)
    state = load_file(str(weights))
    state["conv1.bias"] = state["conv1.bias"].to(torch.float8_e4m3fn)
    save_file(state, str(weights))
    net, _ = load_net(weights)
    assert torch.equal(net.conv1.bias, state["conv1.bias"].float())


def test_a_weights_file_is_named_by_its_stem_whatever_its_card_says(tmp_path) -> None:
    for stem, name in (("mine_x2", "espcn"), ("up", "../../x/pwn"), ("back", "a\\b"), ("num", 123), ("dots", "..")):
        up = load(_espcn_file(tmp_path, stem, name=name), device="cpu", engine="torch")
        assert up.name == stem  # a run's export is not labelled as the shipped model of its architecture


def test_an_upper_case_safetensors_suffix_loads(tmp_path) -> None:
    path = _espcn_file(tmp_path, "W")
    path.rename(tmp_path / "W.SAFETENSORS")
    assert load(tmp_path / "W.SAFETENSORS", device="cpu", engine="torch").scale == 2


def test_weights_paths_are_told_by_suffix_in_any_case() -> None:
    from subpixel.models.weights import is_weights_path

    assert is_weights_path("a/b.safetensors") and is_weights_path(Path("B.SafeTensors"))
    assert not is_weights_path("espcn") and not is_weights_path("model.safetensors.json")


def _conv_macs_of_steps(net: torch.nn.Module, lr: torch.Tensor, modules: list[torch.nn.Module]) -> tuple[int, int]:
    """Conv MACs of ``modules`` during FRVSR's first frame and during its second frame on ``lr``."""
    total = 0

    def hook(m: torch.nn.Conv2d, _inputs: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in modules if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            _, state = net.step(lr, None)
            first, total = total, 0
            net.step(lr, state)
    finally:
        for handle in handles:
            handle.remove()
    return first, total


def test_frvsr_macs_count_a_steady_state_frame_with_fnet() -> None:
    net = build("frvsr", 4).eval()
    counted = count_macs(net, out_hw=(64, 64))  # before the hooks below: its pass would feed them
    lr = torch.rand(1, 3, 16, 16)
    first, second = _conv_macs_of_steps(net, lr, list(net.modules()))
    _, fnet_part = _conv_macs_of_steps(net, lr, list(net.fnet.modules()))
    assert counted == second == first + fnet_part == 44_052_480
    assert first == 35_610_624 < counted  # the first frame (forward) runs no FNet
    # the ablation has no FNet: every frame costs the SR network alone
    assert count_macs(build("frvsr", 4, recurrent=False), out_hw=(64, 64)) == first


def test_macs_neither_copy_nor_change_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    net = build("frvsr", 2, channels=8, blocks=1).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def no_copy(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("count_macs copied the network")

    monkeypatch.setattr(copy, "deepcopy", no_copy)
    assert count_macs(net, out_hw=(32, 32)) > 0
    monkeypatch.undo()
    assert all(not m._forward_hooks for m in net.modules())
    after = net.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


def test_num_parameters_is_count_params() -> None:
    for net in (build("frvsr", 2, channels=8, blocks=1), build("espcn", 3), build("bicubic", 2)):
        assert net.num_parameters() == count_params(net)
    assert build("bicubic", 2).num_parameters() == 0 and not list(build("lanczos", 3).buffers())


@pytest.mark.parametrize("scale", [2.5, 0, -2, True, float("nan"), float("inf"), "2"])
@pytest.mark.parametrize("name", ["bicubic", "lanczos", "espcn"])
def test_build_refuses_a_scale_that_is_not_a_positive_whole_number(name: str, scale: object) -> None:
    with pytest.raises(SubpixelError, match="^scale must be a positive whole number, got "):
        build(name, scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 2.5, True])
def test_load_refuses_a_scale_that_is_not_a_positive_whole_number(scale: object) -> None:
    with pytest.raises(SubpixelError, match="^scale must be a positive whole number, got "):
        load("bicubic", scale=scale)  # type: ignore[arg-type]


def test_build_takes_whole_float_scales() -> None:
    net = build("bicubic", 2.0)  # type: ignore[arg-type]
    assert net.scale == 2 and isinstance(net.scale, int)
    assert net(torch.rand(1, 3, 4, 4)).shape == (1, 3, 8, 8)
    assert build("espcn", 3.0).scale == 3  # type: ignore[arg-type]
    assert build("lanczos", 1).scale == 1


def test_interpolation_at_scale_one_does_not_hand_back_the_input() -> None:
    x = torch.rand(1, 3, 4, 4)
    before = x.clone()
    for name in ("bicubic", "lanczos"):
        net = build(name, 1)
        y = net(x)
        torch.testing.assert_close(y, before, rtol=0, atol=0)
        y.mul_(0)
        assert torch.equal(x, before)
        assert torch.equal(net.resize_exact(x), net(x))


def test_register_falls_back_to_the_name_without_docstring_or_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the real registry stays as it was

    @register("no-doc-net")
    class NoDoc(SRNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    @register("blank-doc-net")
    class BlankDoc(SRNet):
        """   """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    @register("doc-net")
    class Doc(SRNet):
        """First line.

        More."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    specs = registry.architectures()
    assert specs["no-doc-net"].summary == "no-doc-net" and specs["blank-doc-net"].summary == "blank-doc-net"
    assert specs["doc-net"].summary == "First line."
