"""ImageNet (ILSVRC-2012) in CoOp's layout, and the base of its four test-only variants."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import (
    MAX_LISTED,
    RELATIVE_KEY,
    CoOpDataset,
    DatasetError,
    Record,
    Splits,
    from_datums,
    from_relative,
    list_class_dirs,
    list_visible,
    read_lines,
    read_pickle,
    to_datums,
    to_relative,
    write_pickle,
)

CLASSNAMES = "classnames.txt"


def read_classnames(path: str) -> Dict[str, str]:
    """``classnames.txt``: ``<folder> <class name>`` per line, in label order (CLIP's names)."""
    names = {}
    for line in read_lines(path):
        folder, _, classname = line.partition(" ")
        names[folder] = classname
    return names


def named_folders(
    folders: Sequence[str], classnames: Dict[str, str], dataset: str, classnames_path: str
) -> List[Tuple[str, str]]:
    """``(folder, class name)`` per folder; every folder must be listed in ``classnames.txt``."""
    unknown = [folder for folder in folders if folder not in classnames]
    if unknown:
        raise DatasetError(
            f"{dataset}: {len(unknown)} class folders are not in {classnames_path}: {unknown[:MAX_LISTED]}"
        )
    return [(folder, classnames[folder]) for folder in folders]


def class_folder_records(
    image_dir: str, classes: Sequence[Tuple[str, str]], dataset: str
) -> List[Record]:
    """Every image of ``image_dir/<folder>/``, labelled by its folder's position in ``classes``."""
    records = []
    for label, (folder, classname) in enumerate(classes):
        folder_dir = os.path.join(image_dir, folder)
        if not os.path.isdir(folder_dir):
            raise DatasetError(f"{dataset}: class folder {folder_dir} ({classname!r}) is missing")
        images = list_visible(folder_dir)
        if not images:
            raise DatasetError(f"{dataset}: class folder {folder_dir} ({classname!r}) is empty")
        records.extend(
            Record(os.path.join(folder_dir, image), label, classname) for image in images
        )
    return records


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):
    """``imagenet/images/{train,val}/<wnid>/`` + ``classnames.txt``; read once, then cached in
    ``preprocessed.pkl`` (``{"train", "test"}`` Datum lists, as CoOp, plus ``"relative"``: the
    same lists with paths relative to the dataset folder, read instead when present).

    The official val images are the test split, and, as in CoOp, also the val split
    (``val_is_test``): a trainer that tunes anything on val must not use it as is.
    """

    dataset_dir = "imagenet"
    val_is_test = True
    layout = (
        "$DATA/imagenet/ with images/train/<wnid>/ and images/val/<wnid>/ (ILSVRC-2012, 1,000 folders "
        f"each) and {CLASSNAMES} (CLIP's class names, linked from CoOp's DATASETS.md)"
    )

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        name = cls.__name__
        cache = os.path.join(dataset_dir, "preprocessed.pkl")
        if os.path.isfile(cache):
            data = read_pickle(cache, name, ["train", "test"])
            relative = data.get(RELATIVE_KEY)
            if isinstance(relative, dict) and all(key in relative for key in ("train", "test")):
                # ours: paths relative to the dataset folder, read from where it is now
                return {
                    key: from_relative(relative[key], dataset_dir, name, cache, key)
                    for key in ("train", "test")
                }
            return {"train": from_datums(data["train"]), "test": from_datums(data["test"])}
        classnames_path = cls.require_file(os.path.join(dataset_dir, CLASSNAMES), "class-name file")
        classnames = read_classnames(classnames_path)
        folders = {}
        for split in ("train", "val"):
            split_dir = cls.require_dir(
                os.path.join(dataset_dir, "images", split), f"{split} image folder"
            )
            folders[split] = list_class_dirs(split_dir)
        if folders["train"] != folders["val"]:
            only = sorted(set(folders["train"]) ^ set(folders["val"]))
            raise DatasetError(
                f"{name}: images/train and images/val must have the same class folders (labels are their "
                f"sorted positions); {len(only)} differ, e.g. {only[:MAX_LISTED]}"
            )
        classes = named_folders(folders["train"], classnames, name, classnames_path)
        splits = {
            "train": class_folder_records(
                os.path.join(dataset_dir, "images", "train"), classes, name
            ),
            "test": class_folder_records(os.path.join(dataset_dir, "images", "val"), classes, name),
        }
        if build:
            # CoOp's keys (absolute Datums, which CoOp reads) plus the same lists relative to
            # the dataset folder, which this reader prefers: a moved tree is read where it is.
            data = {
                key: to_datums(records, name, f"{dataset_dir}/images")
                for key, records in splits.items()
            }
            data[RELATIVE_KEY] = {
                key: to_relative(records, dataset_dir) for key, records in splits.items()
            }
            write_pickle(data, cache)
        return splits


class ImageNetTestSet(CoOpDataset):
    """An evaluation-only ImageNet variant: one folder per class under ``image_subdir``, class
    names from a copy of ImageNet's ``classnames.txt``; ``train_x = test`` = every image."""

    test_only = True
    image_subdir = ""  # image folder relative to dataset_dir

    @classmethod
    def class_folders(
        cls, image_dir: str, classnames: Dict[str, str], classnames_path: str
    ) -> List[Tuple[str, str]]:
        """``(folder, class name)`` in label order: the sorted wnid folders present."""
        return named_folders(list_class_dirs(image_dir), classnames, cls.__name__, classnames_path)

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        name = cls.__name__
        image_dir = cls.require_dir(os.path.join(dataset_dir, cls.image_subdir), "image folder")
        classnames_path = cls.require_file(
            os.path.join(dataset_dir, CLASSNAMES),
            f"class-name file (a copy of imagenet/{CLASSNAMES})",
        )
        classes = cls.class_folders(image_dir, read_classnames(classnames_path), classnames_path)
        return {"test": class_folder_records(image_dir, classes, name)}
