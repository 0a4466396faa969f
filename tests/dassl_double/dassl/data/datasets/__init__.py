"""Mirrors ``dassl.data.datasets``: the dataset registry and the dataset base classes.

Importing Dassl's package also imports its domain-generalisation readers, whose
``dg/wilds/wilds_base.py`` starts with ``logging.disable(logging.WARNING)``: from then on every
logger of the process drops records up to WARNING. The double has no such readers and does the
same here, at the same moment of ``import dassl``.
"""

import logging

from .build import DATASET_REGISTRY, build_dataset  # isort:skip
from .base_dataset import Datum, DatasetBase  # isort:skip

logging.disable(logging.WARNING)

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"]
