"""Mirrors ``dassl.engine``: the trainer registry and the generic trainers (no DA/DG/SSL trainers)."""

from .build import TRAINER_REGISTRY, build_trainer  # isort:skip
from .trainer import SimpleTrainer, TrainerBase, TrainerX  # isort:skip

__all__ = ["TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX"]
