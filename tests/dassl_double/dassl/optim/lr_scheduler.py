"""Mirrors ``dassl.optim.lr_scheduler``: step/cosine schedulers and Dassl's warm-up wrappers.

Dassl's warm-up schedulers call ``_LRScheduler.__init__(optimizer, last_epoch, verbose)`` with
``verbose`` positional. torch releases whose ``LRScheduler.__init__`` no longer takes
``verbose`` (torch 2.14 accepts only ``optimizer, last_epoch``) raise ``TypeError`` there, so
every config with ``OPTIM.WARMUP_EPOCH > 0`` fails in ``build_lr_scheduler`` on stock Dassl.
The double makes the same call, so it fails (or works, on older torch) exactly like Dassl.
"""

from typing import Any, Optional

import torch
from torch.optim.lr_scheduler import _LRScheduler
from yacs.config import CfgNode

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(_LRScheduler):
    """Mirrors Dassl's warm-up base: own schedule for ``warmup_epoch`` steps, then the successor's."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: Any,
        warmup_epoch: int,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        """Wrap ``successor``; passes ``verbose`` positionally to torch, as Dassl does (see module doc)."""
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch, verbose)

    def get_lr(self) -> list[float]:
        """Learning rates of the warm-up phase (subclasses)."""
        raise NotImplementedError

    def step(self, epoch: Optional[int] = None) -> None:
        """Step the successor once warm-up is over (copying its last lr), else step the warm-up."""
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """Mirrors Dassl's constant warm-up: ``cons_lr`` for every group during warm-up."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: Any,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        """Store ``cons_lr`` then initialise the base (which fails on torch without ``verbose``)."""
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def get_lr(self) -> list[float]:
        """``cons_lr`` during warm-up, the successor's last lr after."""
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr] * len(self.base_lrs)


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """Mirrors Dassl's linear warm-up: ``min_lr`` at step 0, then ``base_lr * step / warmup_epoch``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: Any,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        """Store ``min_lr`` then initialise the base (which fails on torch without ``verbose``)."""
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def get_lr(self) -> list[float]:
        """Linear ramp during warm-up, the successor's last lr after."""
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr] * len(self.base_lrs)
        return [base_lr * self.last_epoch / self.warmup_epoch for base_lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: CfgNode) -> Any:
    """Mirrors Dassl's ``build_lr_scheduler`` (stepped once per epoch by the trainer).

    single_step: ``StepLR`` with the last STEPSIZE entry (an int; <= 0 means MAX_EPOCH);
    multi_step: ``MultiStepLR`` over STEPSIZE (a list/tuple); cosine:
    ``CosineAnnealingLR(T_max=float(MAX_EPOCH))``. WARMUP_EPOCH > 0 wraps it in a constant or
    linear warm-up scheduler (see the module docstring for why that fails on current torch).
    """
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    gamma = optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH
    if name not in AVAI_SCHEDS:
        raise ValueError(f"scheduler must be one of {AVAI_SCHEDS}, but got {name}")

    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"For single_step lr_scheduler, stepsize must be an integer, but got {type(stepsize)}")
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=gamma)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"For multi_step lr_scheduler, stepsize must be a list, but got {type(stepsize)}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=stepsize, gamma=gamma)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR
            )
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR
            )
        else:
            raise ValueError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', got {optim_cfg.WARMUP_TYPE!r}")
    return scheduler
