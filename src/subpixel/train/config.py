"""Training recipes: typed dataclasses read from YAML, with every key and type checked.

Unknown keys, missing required keys, a key given twice, wrong types, non-finite numbers and
out-of-range values are all :class:`ConfigError` naming the offending ``section.key``. Floats may
be written as YAML strings such as ``1e-3`` (which PyYAML does not read as a number; in ``args``,
whose types are the network's or loss's, such a string is read as a float too), and a bare
``off`` (read as ``false``) is accepted where ``"off"`` is a choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from subpixel.errors import SubpixelError, first_line
from subpixel.eval.datasets import shared_data_root
from subpixel.io.atomic import write_atomic

__all__ = [
    "ConfigError", "ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "ScheduleConfig", "TrainConfig",
    "Config", "parse_config", "load_config", "config_to_dict", "resolve_data_folder", "resolve_weights_file",
    "REPO_ROOT", "IN_CHECKOUT", "RecipeLoader", "schedule_problem", "finite_float", "coerce", "AmpChoice",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
# whether REPO_ROOT is this package's source checkout (an installed package's is site-packages' parent)
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "src" / "subpixel").is_dir()


class ConfigError(SubpixelError):
    """A recipe that does not validate."""


@dataclass
class ModelConfig:
    """A registered architecture, its scale and constructor arguments.

    ``init`` names ``.safetensors`` weights of the same network to start from (a warm start, e.g. a
    longer schedule on top of an earlier run's export); empty: random initialisation.
    """

    name: str
    scale: int
    args: dict[str, Any] = field(default_factory=dict)
    init: str = ""


@dataclass
class DataConfig:
    """HR folders, the held-out validation slice and the crop stream.

    ``patch`` is the LR crop side (the HR crop is ``patch * scale``); ``batch`` is the global
    batch, split evenly over DDP ranks. ``val_names``, when given, replaces ``val_count``.
    """

    train: list[str]
    val_count: int = 10
    val_names: list[str] = field(default_factory=list)
    patch: int = 32
    batch: int = 64
    augment: bool = True


@dataclass
class LossConfig:
    """A loss from :data:`subpixel.train.losses.LOSSES` and its arguments."""

    name: str = "l1"
    args: dict[str, Any] = field(default_factory=dict)
    channels: Literal["rgb", "y"] = "rgb"  # y: luma only, for Y-channel networks (chroma is bicubic)


@dataclass
class OptimConfig:
    """Optimizer and its hyper-parameters."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup, then cosine to ``min_lr``, steps at ``milestones``, or constant."""

    name: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup: int = 0
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5


AmpChoice = Literal["off", "bf16", "fp16"]  # mixed precision: autocast dtype, or off


@dataclass
class TrainConfig:
    """Loop length, precision, EMA, clipping, and how often to log, validate and checkpoint (0: only at the end)."""

    iters: int = 100_000
    amp: AmpChoice = "off"
    ema: float = 0.0
    grad_clip: float = 0.0
    val_every: int = 5000
    ckpt_every: int = 2000
    keep_last: int = 3
    log_every: int = 100


@dataclass
class Config:
    """A whole training recipe."""

    model: ModelConfig
    data: DataConfig
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    notes: str = ""  # copied into the exported model card (e.g. why this form was chosen)


def _kind(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else \
        f"{type(value).__name__} {value!r}"


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric strings such as ``1e-3``), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not a number, or an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def _number_if_numeric(value: Any) -> Any:
    """An ``args`` value with numeric strings (``1e-3``, which YAML 1.1 leaves a string) as floats, also in a
    list, so both spellings of a number make the same recipe."""
    if isinstance(value, list):
        return [_number_if_numeric(v) for v in value]
    number = finite_float(value) if isinstance(value, str) else None
    return value if number is None else number


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type ``hint``; a :class:`ConfigError` names ``where``."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        return _build(hint, value, where)
    if hint is Any:
        return value
    if origin is Literal:
        if value is False and "off" in get_args(hint):  # YAML 1.1 reads a bare `off` as false
            return "off"
        if value not in get_args(hint):
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, get_args(hint)))}, got {value!r}")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        number = finite_float(value)
        if number is None:
            raise ConfigError(f"{where}: expected a finite number, got {_kind(value)}")
        return number
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        (item,) = get_args(hint)
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise ConfigError(f"{where}: expected a list of {len(items)} values, got {_kind(value)}")
        return tuple(coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping with string keys, got {_kind(value)}")
        return {k: _number_if_numeric(v) for k, v in value.items()}
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not in the recipe


def _build(cls: type, raw: dict[str, Any], section: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, rejecting unknown and missing keys."""
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    where = f"section {section!r}" if section else "the recipe's top level"
    for key in raw:
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} in {where} (known: {', '.join(known)})")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {missing[0]!r} in {where}")
    prefix = f"{section}." if section else ""
    return cls(**{k: coerce(v, hints[k], prefix + k) for k, v in raw.items()})


def _require(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{where}: must be {what}, got {value!r}")


def schedule_problem(cfg: ScheduleConfig, iters: int) -> str | None:
    """Why the learning-rate schedule ``cfg`` cannot run its course in ``iters`` steps (None: it can).

    Not part of :func:`parse_config`: a checkpoint's recipe may hold a total an iteration budget fitted
    below the warmup. ``subpixel train`` refuses a recipe file that has the problem as written; a shorter
    ``--max-iters`` trial or a fitted total only warns (:func:`subpixel.train.trainer.train`).
    """
    if cfg.warmup and cfg.warmup >= iters:
        return f"schedule.warmup {cfg.warmup} is not below train.iters {iters}: the learning rate never leaves warmup"
    late = [m for m in cfg.milestones if m >= iters]
    if late:
        return f"schedule.milestones {late} are not below train.iters {iters}: the learning rate never drops there"
    return None


def _check(cfg: Config) -> None:
    """Ranges and cross-field rules that types cannot express."""
    from subpixel.train.losses import LOSSES

    _require(-(2**63) <= cfg.seed < 2**64, "seed", "in [-2**63, 2**64) (what torch.manual_seed takes)", cfg.seed)
    _require(cfg.model.scale >= 1, "model.scale", "a positive integer", cfg.model.scale)
    d = cfg.data
    _require(len(d.train) > 0, "data.train", "a non-empty list of folders", d.train)
    _require(d.val_count >= 0, "data.val_count", ">= 0", d.val_count)
    _require(d.patch >= 1, "data.patch", ">= 1", d.patch)
    _require(d.batch >= 1, "data.batch", ">= 1", d.batch)
    _require(cfg.loss.name in LOSSES, "loss.name", f"one of {', '.join(LOSSES)}", cfg.loss.name)
    o = cfg.optim
    _require(o.lr > 0, "optim.lr", "> 0", o.lr)
    _require(all(0 <= b < 1 for b in o.betas), "optim.betas", "two values in [0, 1)", list(o.betas))
    _require(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    s, t = cfg.schedule, cfg.train
    _require(s.warmup >= 0, "schedule.warmup", ">= 0", s.warmup)
    _require(0 <= s.min_lr <= o.lr, "schedule.min_lr", "in [0, optim.lr]", s.min_lr)
    _require(0 < s.gamma <= 1, "schedule.gamma", "in (0, 1]", s.gamma)
    _require(s.milestones == sorted(set(s.milestones)) and all(m > 0 for m in s.milestones),
             "schedule.milestones", "increasing positive iterations", s.milestones)
    _require(s.name == "multistep" or not s.milestones, "schedule.milestones", "empty unless name is multistep",
             s.milestones)
    _require(t.iters >= 1, "train.iters", ">= 1", t.iters)
    _require(0 <= t.ema < 1, "train.ema", "in [0, 1) (0 turns EMA off)", t.ema)
    _require(t.grad_clip >= 0, "train.grad_clip", ">= 0 (0 turns clipping off)", t.grad_clip)
    for key in ("val_every", "ckpt_every"):
        _require(getattr(t, key) >= 0, f"train.{key}", ">= 0 (0: only at the end)", getattr(t, key))
    _require(t.keep_last >= 1, "train.keep_last", ">= 1", t.keep_last)
    _require(t.log_every >= 1, "train.log_every", ">= 1", t.log_every)


def parse_config(raw: Any) -> Config:
    """A validated :class:`Config` from a parsed recipe (a mapping)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a mapping of sections, got {_kind(raw)}")
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently,
    so a second ``optim:`` would replace the whole first section). Keys merged in by ``<<: *anchor`` may be
    overridden."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Check ``node``'s own keys once, before PyYAML copies merged keys into it (in place)."""
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._refuse_repeats(node)
        super().flatten_mapping(node)

    def _refuse_repeats(self, node: yaml.MappingNode) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if repeated:
                raise ConfigError(f"key {key!r} given twice (again on line {key_node.start_mark.line + 1})")
            seen.add(key)


def read_recipe(path: Path) -> Any:
    """The parsed YAML of a recipe file; unreadable files, bad YAML and repeated keys are :class:`ConfigError`."""
    try:
        return yaml.load(Path(path).read_text(), Loader=RecipeLoader)
    except OSError as err:
        raise ConfigError(f"cannot read recipe {path}: {err.strerror}") from None
    except UnicodeDecodeError:  # e.g. an image given in place of the recipe
        raise ConfigError(f"{path}: not a text (YAML) recipe file") from None
    except yaml.YAMLError as err:  # one line: what is wrong and where (PyYAML's own text spans several)
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def write_recipe(run_dir: Path, recipe: dict[str, Any]) -> None:
    """Write the run's effective recipe as ``run_dir/recipe.yaml``, atomically (a reader never sees half)."""
    write_atomic(Path(run_dir) / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))


_UNREAD = object()


def load_config(path: Path, raw: Any = _UNREAD) -> Config:
    """Validate the recipe at ``path`` (``raw``: its already parsed YAML); errors name the file."""
    raw = read_recipe(path) if raw is _UNREAD else raw
    try:
        return parse_config(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON/YAML-ready form of ``cfg`` (tuples become lists); :func:`parse_config` reads it back."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


_SHARED_DATA = ("..", "shared", "data")  # how recipes name the shared data (from the repository root)


def _resolve(entry: str, exists: Callable[[Path], bool], what: str) -> Path:
    """A path from a recipe: absolute as is; relative against the current directory, then the repo root
    (in a source checkout); a ``../shared/data/...`` path also inside the shared data folder
    (``$SUBPIXEL_DATA``, as evaluation finds it), so the repository's recipes run from anywhere."""
    path = Path(entry).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, *([REPO_ROOT / path] if IN_CHECKOUT else [])]
    shared = not path.is_absolute() and path.parts[:3] == _SHARED_DATA
    root = shared_data_root() if shared else None
    if root is not None:
        candidates.append(root.joinpath(*path.parts[3:]))
    for cand in candidates:
        if exists(cand):
            return cand.resolve()
    hint = ("; set SUBPIXEL_DATA to the shared data folder (the one holding train/ and benchmarks/)"
            if shared and root is None else "")
    raise ConfigError(f"{what} {entry!r} not found (looked in {', '.join(map(str, candidates))}){hint}")


def resolve_data_folder(entry: str) -> Path:
    """A recipe's data folder (see :func:`_resolve` for where relative paths are looked up)."""
    return _resolve(entry, Path.is_dir, "data folder")


def resolve_weights_file(entry: str) -> Path:
    """A recipe's weights file, e.g. ``model.init`` (looked up like data folders)."""
    return _resolve(entry, Path.is_file, "model.init")
