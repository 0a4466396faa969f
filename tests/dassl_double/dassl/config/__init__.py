"""Mirrors ``dassl.config``: the default yacs config and its pruning helper."""

from yacs.config import CfgNode

from .defaults import _C as cfg_default


def get_cfg_default() -> CfgNode:
    """Return a fresh copy of the default config, as Dassl's ``get_cfg_default``."""
    return cfg_default.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop every ``cfg.TRAINER`` sub-node except ``NAME`` and ``trainer.upper()``, as Dassl's helper."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key, None)
