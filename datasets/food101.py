"""Food-101 in CoOp's layout: 101 dishes."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import SplitJsonDataset


@DATASET_REGISTRY.register()
class Food101(SplitJsonDataset):
    """``food-101/images/<class>/*.jpg`` + ``split_zhou_Food101.json``."""

    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    layout = "$DATA/food-101/ with images/ (food-101.tar.gz) and split_zhou_Food101.json"
