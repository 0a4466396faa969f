"""ImageNet-A (natural adversarial examples), test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    """``imagenet-adversarial/imagenet-a/<wnid>/`` (200 classes) + ``classnames.txt``."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    layout = (
        "$DATA/imagenet-adversarial/ with imagenet-a/<wnid>/ (imagenet-a.tar) and classnames.txt copied from "
        "$DATA/imagenet/"
    )
