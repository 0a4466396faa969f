"""Mirrors ``dassl.data.datasets.build``: dataset lookup by ``cfg.DATASET.NAME``."""

from typing import Any

from yacs.config import CfgNode

from dassl.utils import Registry, check_availability

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: CfgNode) -> Any:
    """Instantiate the dataset registered as ``cfg.DATASET.NAME`` with ``cfg``, as Dassl does.

    An unknown name raises ``ValueError`` with a did-you-mean hint (Dassl's ``check_availability``).
    """
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
