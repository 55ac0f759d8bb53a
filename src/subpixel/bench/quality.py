"""Quality figures for the benchmark: measured with :mod:`subpixel.eval`, or cited from a file.

Cited figures (``benchmarks/cited.json``) carry their source and stay marked ``cited`` in every
output; they are never mixed up with measured ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from subpixel.errors import SubpixelError, first_line

__all__ = ["QualityFigure", "QUALITY_SETS", "QUALITY_SCALE", "measure_quality", "load_cited", "add_cited"]

QUALITY_SETS = ("Set5", "Urban100")
QUALITY_SCALE = 4
MEASURED_SOURCE = "subpixel.eval default protocol: Y-PSNR, bicubic LR, scale px shaved"
_CITED_SHAPE = ('{"figures": [{"name": string, "dataset": string, "scale": integer, "psnr_y": number, '
                '"source": string}, ...]}')
_CITED_TYPES = {"name": (str,), "dataset": (str,), "scale": (int,), "psnr_y": (int, float), "source": (str,)}


@dataclass(frozen=True)
class QualityFigure:
    """Mean Y-PSNR (dB) of ``name`` on ``dataset`` at ``scale``; ``origin`` is ``measured`` or ``cited``."""

    name: str
    dataset: str
    scale: int
    psnr_y: float
    origin: str
    source: str
    seconds_per_image: float | None = None  # measured figures: mean upscale time per image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_quality(models: list[tuple[str, Callable[[], Any]]], data_dir: Path | None,
                    echo: Callable[[str], None] = lambda _: None) -> tuple[list[QualityFigure], list[str]]:
    """Y-PSNR on :data:`QUALITY_SETS` of each ``(name, make_upscaler)``, plus notes on what was skipped.

    ``make_upscaler()`` returns an :class:`~subpixel.upscaler.Upscaler`. Sets are looked up under
    ``data_dir`` or, without it, by name (``subpixel.eval`` finds ``shared/data``). A missing set,
    a model or set that fails (a SubpixelError, or a RuntimeError such as out of memory, as in the
    speed phase), or a missing evaluation package, is a note rather than an error.
    """
    try:
        from subpixel.eval.protocol import evaluate
    except ImportError as err:
        return [], [f"quality not measured: subpixel.eval is unavailable ({err})"]
    figures, notes = [], []
    for name, make_upscaler in models:
        try:
            upscaler = make_upscaler()
        except (SubpixelError, RuntimeError) as err:
            notes.append(f"{name}: quality not measured: {first_line(err)}")
            continue
        for dataset in QUALITY_SETS:
            echo(f"{name}: {dataset} quality ...")
            try:
                result = evaluate(upscaler, data_dir / dataset if data_dir else dataset)
            except (SubpixelError, RuntimeError) as err:
                notes.append(f"{name}: {dataset} quality not measured: {first_line(err)}")
                continue
            figures.append(QualityFigure(name, dataset, upscaler.scale, round(float(result.psnr), 2), "measured",
                                         MEASURED_SOURCE, result.seconds_per_image))
    return figures, notes


def load_cited(path: Path) -> list[QualityFigure]:
    """Read cited figures, shaped as ``_CITED_SHAPE`` says, each with a non-empty ``source``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubpixelError(f"cited figures file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubpixelError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("figures"), list):
        raise SubpixelError(f"{path}: expected an object with a \"figures\" list: {_CITED_SHAPE}")
    figures = []
    for i, entry in enumerate(doc["figures"]):
        bad = [k for k, t in _CITED_TYPES.items() if not isinstance(entry, dict) or type(entry.get(k)) not in t]
        if bad:
            raise SubpixelError(f"{path}: figure {i} needs {', '.join(bad)} (missing or of the wrong type); "
                                f"expected {_CITED_SHAPE}")
        if not entry["source"].strip():
            raise SubpixelError(f"{path}: figure {i} ({entry['name']} {entry['dataset']}) has an empty source")
        if not math.isfinite(entry["psnr_y"]) or entry["scale"] < 1:
            raise SubpixelError(f"{path}: figure {i} ({entry['name']} {entry['dataset']}) needs a finite psnr_y "
                                "and a positive scale")
        figures.append(QualityFigure(entry["name"], entry["dataset"], entry["scale"], float(entry["psnr_y"]),
                                     "cited", entry["source"]))
    return figures


def add_cited(figures: list[QualityFigure], cited: list[QualityFigure]) -> tuple[list[QualityFigure], list[str]]:
    """``figures`` plus the cited ones the run did not measure itself; notes name the cited figures dropped."""
    measured = {(f.name, f.dataset, f.scale) for f in figures}
    kept = [c for c in cited if (c.name, c.dataset, c.scale) not in measured]
    notes = [f"{c.name}: cited {c.dataset} x{c.scale} figure dropped: measured in this run"
             for c in cited if (c.name, c.dataset, c.scale) in measured]
    return figures + kept, notes
