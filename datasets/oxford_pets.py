"""Oxford-IIIT Pets in CoOp's layout: 37 cat and dog breeds."""

from __future__ import annotations

import os
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import Record, SplitJsonDataset, Splits, read_lines, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(SplitJsonDataset):
    """``oxford_pets/images/*.jpg`` + ``split_zhou_OxfordPets.json`` (or ``annotations/``)."""

    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    raw_files = ("annotations/trainval.txt", "annotations/test.txt")
    layout = (
        "$DATA/oxford_pets/ with images/ (images.tar.gz), annotations/ (annotations.tar.gz) "
        "and split_zhou_OxfordPets.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        annotations = os.path.join(dataset_dir, "annotations")
        trainval = read_pets_list(os.path.join(annotations, "trainval.txt"), image_dir)
        train, val = split_trainval(trainval, cls.__name__)
        return {
            "train": train,
            "val": val,
            "test": read_pets_list(os.path.join(annotations, "test.txt"), image_dir),
        }


def read_pets_list(path: str, image_dir: str) -> List[Record]:
    """Records of a Pets list file: ``<Breed_Name>_<n> <class id from 1> <species> <breed id>``."""
    records = []
    for line in read_lines(path):
        if line.startswith("#"):
            continue
        image, class_id = line.split()[:2]
        breed = image.rsplit("_", 1)[0].lower()  # "american_bulldog_12" -> "american_bulldog"
        records.append(Record(os.path.join(image_dir, image + ".jpg"), int(class_id) - 1, breed))
    return records
