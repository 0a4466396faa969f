"""ImageNet-Sketch, test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """``imagenet-sketch/images/<wnid>/`` (1,000 classes) + ``classnames.txt``."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    layout = (
        "$DATA/imagenet-sketch/ with images/<wnid>/ (ImageNet-Sketch) and classnames.txt copied from "
        "$DATA/imagenet/"
    )
