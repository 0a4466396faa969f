"""Mirrors ``dassl.evaluation.build``: evaluator lookup by ``cfg.TEST.EVALUATOR``."""

from typing import Any

from yacs.config import CfgNode

from dassl.utils import Registry, check_availability

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg: CfgNode, **kwargs: Any) -> Any:
    """Instantiate ``cfg.TEST.EVALUATOR`` with ``(cfg, **kwargs)``; unknown names raise ``ValueError``."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
