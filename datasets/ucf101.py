"""UCF101 in CoOp's layout: 101 human actions, one middle frame per video."""

from __future__ import annotations

import os
import re
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import (
    DatasetError,
    Record,
    SplitJsonDataset,
    Splits,
    read_lines,
    split_trainval,
)

LISTS = "ucfTrainTestlist"


def action_name(action: str) -> str:
    """CoOp's class name and frame folder of an action: CamelCase split on capitals
    ("ApplyEyeMakeup" -> "Apply_Eye_Makeup")."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(SplitJsonDataset):
    """``ucf101/UCF-101-midframes/<Action_Name>/*.jpg`` + ``split_zhou_UCF101.json``
    (or the ``ucfTrainTestlist/`` split 1 files)."""

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    raw_files = (f"{LISTS}/classInd.txt", f"{LISTS}/trainlist01.txt", f"{LISTS}/testlist01.txt")
    layout = (
        "$DATA/ucf101/ with UCF-101-midframes/ (UCF-101-midframes.zip from CoOp) and "
        "split_zhou_UCF101.json"
    )

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        label_of: Dict[str, int] = {}
        for line in read_lines(os.path.join(dataset_dir, LISTS, "classInd.txt")):
            class_id, action = line.split()  # "1 ApplyEyeMakeup"
            label_of[action] = int(class_id) - 1

        def read_list(name: str) -> List[Record]:
            records = []
            for line in read_lines(os.path.join(dataset_dir, LISTS, name)):
                action, video = line.split()[0].split("/")  # "ApplyEyeMakeup/v_..._c01.avi [label]"
                if action not in label_of:
                    raise DatasetError(
                        f"{cls.__name__}: {name} lists {line}, whose action is not in classInd.txt"
                    )
                frame = os.path.splitext(video)[0] + ".jpg"
                records.append(
                    Record(
                        os.path.join(image_dir, action_name(action), frame),
                        label_of[action],
                        action_name(action),
                    )
                )
            return records

        train, val = split_trainval(read_list("trainlist01.txt"), cls.__name__)
        return {"train": train, "val": val, "test": read_list("testlist01.txt")}
