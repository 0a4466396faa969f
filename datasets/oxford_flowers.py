"""Oxford Flowers-102 in CoOp's layout: 102 flower species."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import DatasetError, SplitJsonDataset, Splits, split_groups


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitJsonDataset):
    """``oxford_flowers/jpg/image_NNNNN.jpg`` + ``split_zhou_OxfordFlowers.json``
    (or ``imagelabels.mat`` + ``cat_to_name.json``)."""

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    raw_files = ("imagelabels.mat", "cat_to_name.json")
    layout = (
        "$DATA/oxford_flowers/ with jpg/ (102flowers.tgz), imagelabels.mat, cat_to_name.json "
        "and split_zhou_OxfordFlowers.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        from scipy.io import loadmat  # needed only here, to build a split from the raw labels

        labels = loadmat(os.path.join(dataset_dir, "imagelabels.mat"))["labels"][0]
        names_path = os.path.join(dataset_dir, "cat_to_name.json")
        with open(names_path) as handle:
            names: Dict[str, str] = json.load(handle)
        # Image i (from 1) has labels[i - 1]; classes in order of first appearance, as CoOp.
        by_label: Dict[int, List[str]] = defaultdict(list)
        for index, label in enumerate(labels, start=1):
            by_label[int(label)].append(os.path.join(image_dir, f"image_{index:05d}.jpg"))
        unnamed = sorted(str(label) for label in by_label if str(label) not in names)
        if unnamed:
            raise DatasetError(f"{cls.__name__}: {names_path} has no name for labels {unnamed}")
        groups = [
            (paths, label - 1, names[str(label)], f"label {label} of imagelabels.mat")
            for label, paths in by_label.items()
        ]
        return split_groups(groups, cls.__name__)
