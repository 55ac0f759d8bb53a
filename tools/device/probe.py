"""Training speed of a recipe's variants, one after another on an idle device (a short device-call step).

    python3 tools/device/probe.py RECIPE.yaml --seconds 12 --set batch=8,32 --set amp=off,bf16 [--out DIR]

Every combination of the ``--set`` values (dotted keys for image recipes: ``data.batch=32``)
trains alone for about ``--seconds`` with ``subpixel train --time-limit`` in a fresh run folder
(logging every 5 steps, where the time limit is checked);
its iterations/s and data-wait share (``throughput.json``) go to stdout and ``probe_<recipe>.json``.
Speeds from a few seconds include warm-up: compare variants with each other, not with long runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def _value(text: str) -> Any:
    """8 -> int, 1e-3 -> float, bf16 and off -> str (YAML 1.1 would make ``off`` False)."""
    value = yaml.safe_load(text)
    return text if isinstance(value, bool) and text.lower() not in ("true", "false") else value


def _assign(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="a recipe key and the values to try (repeatable: all combinations run)")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    keys, choices = [], []
    for spec in args.set:
        key, _, values = spec.partition("=")
        keys.append(key)
        choices.append([_value(v) for v in values.split(",")])
    base = yaml.safe_load(args.recipe.read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, combo in enumerate(itertools.product(*choices)):
            raw = json.loads(json.dumps(base))
            for key, value in zip(keys, combo):
                _assign(raw, key, value)
            _assign(raw, "log_every" if raw.get("model") == "frvsr" else "train.log_every", 5)  # time-limit checks
            recipe, run = Path(tmp) / f"v{n}.yaml", Path(tmp) / f"run{n}"
            recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "subpixel", "train", str(recipe), "--out", str(run), "-q",
                                   "--device", args.device, "--time-limit", str(args.seconds / 60)],
                                  capture_output=True, text=True)
            row: dict[str, Any] = {**dict(zip(keys, combo)), "wall_s": round(time.perf_counter() - started, 1)}
            speed_file = run / "throughput.json"
            if done.returncode == 0 and speed_file.is_file():
                overall = json.loads(speed_file.read_text())["overall"]
                row.update(iters_per_s=round(overall["iters_per_s"], 2),
                           data_wait_share=round(overall["data_wait_share"], 4))
            else:
                row["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:]
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"probe_{args.recipe.stem}.json").write_text(
        json.dumps({"recipe": str(args.recipe), "seconds": args.seconds, "variants": rows}, indent=1))


if __name__ == "__main__":
    main()
