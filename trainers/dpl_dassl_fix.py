"""Opt-in repair of stock Dassl 0.6.3 on new torch, for a host checkout's own trainers.

Copied into a CoOp/MaPLe checkout and imported from its ``train.py`` (one marked line) only by
``scripts/install_into.sh --fix-dassl-warmup``; ``--unfix-dassl-warmup`` and ``--uninstall``
take both out again. DPL's own trainers never need it (``trainers/dpl_common.py`` avoids both
defects), and Dassl's files are not edited: importing this module changes, in this process,
two things of the installed Dassl, each only on the torch versions where it is broken:

1. **Warm-up schedulers.** Dassl's ``ConstantWarmupScheduler`` and ``LinearWarmupScheduler``
   call torch's scheduler constructor as ``(optimizer, last_epoch, verbose)``; torch >= 2.7,
   whose ``LRScheduler.__init__`` has no ``verbose``, raises ``TypeError: LRScheduler.__init__()
   takes from 2 to 3 positional arguments but 4 were given`` in ``build_lr_scheduler``, so every
   config with ``OPTIM.WARMUP_EPOCH > 0`` (CoOp's, MaPLe's, ``--eval-only`` too) stops. A base
   class that drops ``verbose`` is put between Dassl's ``_BaseWarmupScheduler`` and torch's: all
   of Dassl's scheduler code runs unchanged, so the schedule is the same (``verbose`` only ever
   printed the rates).
2. **Loading Dassl checkpoints.** A warm-up scheduler's state holds its successor scheduler
   object (with a copy of the optimizer), which torch >= 2.6 refuses to unpickle by default
   (``weights_only=True``): resume and ``--eval-only`` of such a checkpoint raise
   ``UnpicklingError``. Dassl's ``load_checkpoint`` (behind ``resume_from_checkpoint``, the
   trainers' ``load_model`` and ``load_pretrained_weights``) gets back torch < 2.6's full
   unpickling, ``weights_only=False``, and nothing else does. Unpickling can run code stored in
   the file: load only checkpoints you trust, as with Dassl on older torch.
"""

from __future__ import annotations

import inspect
import re
import types
from typing import Any

import dassl.optim.lr_scheduler as dassl_lr_scheduler
import dassl.utils.torchtools as dassl_torchtools
import torch
from torch.optim.lr_scheduler import _LRScheduler

# torch.load unpickles only tensors and plain containers unless told otherwise from this release on.
WEIGHTS_ONLY_DEFAULT_SINCE = (2, 6)


def torch_version() -> tuple[int, int]:
    """``(major, minor)`` of the running torch."""
    major, minor = re.match(r"(\d+)\.(\d+)", torch.__version__).groups()
    return int(major), int(minor)


class _SchedulerBaseWithoutVerbose(_LRScheduler):
    """Torch's scheduler base as Dassl's warm-up schedulers call it: ``verbose`` is accepted and dropped."""

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1, verbose: bool = False) -> None:
        super().__init__(optimizer, last_epoch)


class _TorchWithFullUnpickling(types.ModuleType):
    """``torch`` as Dassl's checkpoint module sees it: torch itself, except that ``load``
    defaults to ``weights_only=False`` (torch < 2.6's behaviour)."""

    def __init__(self) -> None:
        super().__init__(torch.__name__, torch.__doc__)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def fix_warmup_schedulers() -> None:
    """Let Dassl's warm-up schedulers build on torch whose scheduler no longer takes ``verbose``."""
    warmup_base = dassl_lr_scheduler._BaseWarmupScheduler
    if "verbose" in inspect.signature(_LRScheduler.__init__).parameters or warmup_base.__bases__ != (_LRScheduler,):
        return  # torch still takes verbose, or this already ran
    warmup_base.__bases__ = (_SchedulerBaseWithoutVerbose,)


def fix_checkpoint_loading() -> None:
    """Let Dassl's ``load_checkpoint`` read its own checkpoints on torch >= 2.6."""
    if torch_version() < WEIGHTS_ONLY_DEFAULT_SINCE or isinstance(dassl_torchtools.torch, _TorchWithFullUnpickling):
        return  # torch still unpickles everything by default, or this already ran
    # load_checkpoint looks torch up in its module's globals when called, so every caller (also
    # modules that imported the function before this ran) gets the change.
    dassl_torchtools.torch = _TorchWithFullUnpickling()


fix_warmup_schedulers()
fix_checkpoint_loading()
