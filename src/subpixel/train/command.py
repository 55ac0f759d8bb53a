"""``subpixel train``: train a model from a YAML recipe (one process, or every rank under ``torchrun``)."""

from __future__ import annotations

from pathlib import Path

import click

from subpixel.train.config import load_config


@click.command()
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (checkpoints, TensorBoard logs, throughput.json) [default: runs/<recipe name>].")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint, if it has one.")
@click.option("--max-iters", type=click.IntRange(min=1), default=None, help="Override train.iters of the recipe.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="At the end, write the best (EMA) weights and a model card to this .safetensors file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summaries.")
def train(recipe: Path, out: Path | None, resume: bool, max_iters: int | None, export_path: Path | None,
          device: str, quiet: bool) -> None:
    """Train a model from RECIPE (YAML).

    Multi-GPU: torchrun --nproc_per_node N --no-python subpixel train RECIPE (data.batch is
    the global batch, split over the processes).
    """
    from subpixel.train.trainer import train as run

    cfg = load_config(recipe)
    if max_iters is not None:
        cfg.train.iters = max_iters
    if export_path is not None and export_path.suffix != ".safetensors":
        raise click.BadParameter("must end in .safetensors", param_hint="--export")
    run(cfg, out if out is not None else Path("runs") / recipe.stem, device=device, resume=resume, quiet=quiet,
        export=export_path)
