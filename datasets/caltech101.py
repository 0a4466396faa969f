"""Caltech101 in CoOp's layout: 100 object classes plus faces."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import SplitJsonDataset, Splits, class_folder_groups, split_groups

# Clutter images and a near-duplicate of "Faces": not classes in CoOp's benchmark.
IGNORED = ("BACKGROUND_Google", "Faces_easy")
# Folder names CoOp turns into singular, lower-case class names for the text prompts.
RENAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(SplitJsonDataset):
    """``caltech-101/101_ObjectCategories/<class>/*.jpg`` + ``split_zhou_Caltech101.json``."""

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    layout = (
        "$DATA/caltech-101/ with 101_ObjectCategories/ (101_ObjectCategories.tar.gz) and "
        "split_zhou_Caltech101.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        return split_groups(
            class_folder_groups(image_dir, cls.__name__, IGNORED, RENAMES), cls.__name__
        )
