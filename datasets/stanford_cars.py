"""Stanford Cars in CoOp's layout: 196 car models."""

from __future__ import annotations

import os
from typing import List, Sequence

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import Record, SplitJsonDataset, Splits, split_trainval


def year_first(name: str) -> str:
    """CoOp's class name: the model year moved to the front
    ("Audi R8 Coupe 2012" -> "2012 Audi R8 Coupe")."""
    words = name.split(" ")
    return " ".join(words[-1:] + words[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(SplitJsonDataset):
    """``stanford_cars/cars_{train,test}/*.jpg`` + ``split_zhou_StanfordCars.json`` (paths relative
    to ``stanford_cars/``), or the devkit's ``.mat`` annotations."""

    dataset_dir = "stanford_cars"
    image_subdir = ""  # the split's paths start with cars_train/ or cars_test/
    split_file = "split_zhou_StanfordCars.json"
    raw_files = (
        "devkit/cars_train_annos.mat",
        "cars_test_annos_withlabels.mat",
        "devkit/cars_meta.mat",
    )
    layout = (
        "$DATA/stanford_cars/ with cars_train/, cars_test/ (cars_train.tgz, cars_test.tgz), devkit/ "
        "(car_devkit.tgz), cars_test_annos_withlabels.mat and split_zhou_StanfordCars.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        from scipy.io import (
            loadmat,  # needed only here, to build a split from the raw labels
        )

        meta = loadmat(os.path.join(dataset_dir, "devkit", "cars_meta.mat"))["class_names"][0]
        classnames = [year_first(str(entry[0])) for entry in meta]

        def read_annotations(mat_file: str, folder: str) -> List[Record]:
            annotations: Sequence = loadmat(os.path.join(dataset_dir, mat_file))["annotations"][0]
            records = []
            for entry in annotations:
                label = int(entry["class"][0, 0]) - 1
                impath = os.path.join(dataset_dir, folder, str(entry["fname"][0]))
                records.append(Record(impath, label, classnames[label]))
            return records

        train, val = split_trainval(
            read_annotations(os.path.join("devkit", "cars_train_annos.mat"), "cars_train"),
            cls.__name__,
        )
        return {
            "train": train,
            "val": val,
            "test": read_annotations("cars_test_annos_withlabels.mat", "cars_test"),
        }
