"""Describable Textures (DTD) in CoOp's layout: 47 texture classes."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import SplitJsonDataset


@DATASET_REGISTRY.register()
class DescribableTextures(SplitJsonDataset):
    """``dtd/images/<class>/*.jpg`` + ``split_zhou_DescribableTextures.json``."""

    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    layout = "$DATA/dtd/ with images/ (dtd-r1.0.1.tar.gz) and split_zhou_DescribableTextures.json"
