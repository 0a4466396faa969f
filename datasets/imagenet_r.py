"""ImageNet-R (renditions), test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetTestSet):
    """``imagenet-rendition/imagenet-r/<wnid>/`` (200 classes) + ``classnames.txt``."""

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    layout = (
        "$DATA/imagenet-rendition/ with imagenet-r/<wnid>/ (imagenet-r.tar) and classnames.txt copied from "
        "$DATA/imagenet/"
    )
