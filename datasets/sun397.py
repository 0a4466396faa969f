"""SUN397 in CoOp's layout: 397 scene categories."""

from __future__ import annotations

import os
from typing import List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import (
    DatasetError,
    Record,
    SplitJsonDataset,
    Splits,
    read_lines,
    split_trainval,
)


def scene_name(category: str) -> str:
    """CoOp's class name of a SUN category path: drop the letter folder, reverse the words so
    qualifiers lead ("a/apartment_building/outdoor" -> "outdoor apartment_building")."""
    return " ".join(category.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(SplitJsonDataset):
    """``sun397/SUN397/<letter>/<category>[/<qualifier>]/*.jpg`` + ``split_zhou_SUN397.json``
    (or ``ClassName.txt`` with the ``Training_01.txt``/``Testing_01.txt`` partitions)."""

    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")
    layout = (
        "$DATA/sun397/ with SUN397/ (SUN397.tar.gz), the Partitions.zip .txt files and "
        "split_zhou_SUN397.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        class_list = os.path.join(dataset_dir, "ClassName.txt")
        label_of = {
            line[1:]: label for label, line in enumerate(read_lines(class_list))
        }  # "/a/abbey" -> "a/abbey"

        def read_partition(name: str) -> List[Record]:
            records = []
            for line in read_lines(os.path.join(dataset_dir, name)):
                impath = line[1:]  # "/a/abbey/sun_x.jpg" -> "a/abbey/sun_x.jpg"
                category = os.path.dirname(impath)
                if category not in label_of:
                    raise DatasetError(
                        f"{cls.__name__}: {name} lists {line}, whose class is not in {class_list}"
                    )
                records.append(
                    Record(
                        os.path.join(image_dir, impath), label_of[category], scene_name(category)
                    )
                )
            return records

        train, val = split_trainval(read_partition("Training_01.txt"), cls.__name__)
        return {"train": train, "val": val, "test": read_partition("Testing_01.txt")}
