"""FGVC-Aircraft in CoOp's layout: 100 aircraft variants, with the dataset's own splits."""

from __future__ import annotations

import os
from typing import Optional

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import CoOpDataset, DatasetError, Record, Splits, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    """``fgvc_aircraft/images/*.jpg``, ``variants.txt`` (labels in file order) and
    ``images_variant_{train,val,test}.txt`` (``<image id> <variant>`` per line); no split json."""

    dataset_dir = "fgvc_aircraft"
    layout = (
        "$DATA/fgvc_aircraft/: the data/ folder of fgvc-aircraft-2013b.tar.gz, with images/, "
        "variants.txt and images_variant_{train,val,test}.txt"
    )

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        name = cls.__name__
        image_dir = cls.require_dir(os.path.join(dataset_dir, "images"), "image folder")
        variants_path = cls.require_file(os.path.join(dataset_dir, "variants.txt"), "class list")
        label_of = {variant: label for label, variant in enumerate(read_lines(variants_path))}
        splits: Splits = {}
        for split in ("train", "val", "test"):
            path = cls.require_file(
                os.path.join(dataset_dir, f"images_variant_{split}.txt"), f"{split} list"
            )
            records = []
            for line in read_lines(path):
                image, _, variant = line.partition(" ")  # variants contain spaces: "Boeing 737-200"
                if variant not in label_of:
                    raise DatasetError(
                        f"{name}: {path} lists variant {variant!r}, which is not in {variants_path}"
                    )
                records.append(
                    Record(os.path.join(image_dir, image + ".jpg"), label_of[variant], variant)
                )
            splits[split] = records
        return splits
