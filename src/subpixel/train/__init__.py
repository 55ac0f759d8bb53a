"""Training: recipes, the training loop, checkpoints, DDP, validation and export."""

from subpixel.train.config import Config, load_config, parse_config
from subpixel.train.export import export_best
from subpixel.train.trainer import Trainer, TrainResult, train
from subpixel.train.validate import evaluate_pairs

__all__ = ["Config", "load_config", "parse_config", "Trainer", "TrainResult", "train", "export_best",
           "evaluate_pairs"]
