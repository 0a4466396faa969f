"""ImageNetV2 (matched frequency), test only."""

from __future__ import annotations

from typing import Dict, List, Tuple

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetTestSet):
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/`` (folders ``0``..``999``
    numbered in ``classnames.txt`` order) + ``classnames.txt``."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    layout = (
        "$DATA/imagenetv2/ with imagenetv2-matched-frequency-format-val/ "
        "(imagenetv2-matched-frequency.tar.gz) "
        "and classnames.txt copied from $DATA/imagenet/"
    )

    @classmethod
    def class_folders(
        cls, image_dir: str, classnames: Dict[str, str], classnames_path: str
    ) -> List[Tuple[str, str]]:
        return [(str(label), classname) for label, classname in enumerate(classnames.values())]
