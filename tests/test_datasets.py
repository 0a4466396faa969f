"""Dataset readers: each one reads a tiny tree in its exact CoOp layout, generated here.

Images are empty files: the readers only check that they exist (decoding is the data loader's
job), which keeps every tree a few milliseconds to write. The synthetic dataset is the
exception: its real PNGs are checked for determinism and learnability.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np
import pytest
import yacs.config
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from PIL import Image

import datasets
from datasets import coop_format, synthetic
from datasets.coop_format import DatasetError

REPO = Path(__file__).resolve().parents[1]
DATASET_CONFIGS = {
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "oxford_flowers": "OxfordFlowers",
    "stanford_cars": "StanfordCars",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DescribableTextures",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenet": "ImageNet",
    "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA",
    "imagenet_r": "ImageNetR",
    "synthetic": "Synthetic",
}


# --------------------------------------------------------------------------- helpers


def touch(path: Path) -> Path:
    """An empty file (a stand-in image), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def make_cfg(
    root: Union[Path, str], name: str, shots: int = -1, seed: int = 1, subsample: str = "all"
) -> yacs.config.CfgNode:
    """Dassl's default config with the key the lead's ``extend_cfg`` adds."""
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    return cfg


def build(
    root: Union[Path, str], name: str, shots: int = -1, seed: int = 1, subsample: str = "all"
) -> DatasetBase:
    """Build a registered reader as CoOp's train.py does: seed ``random`` first, then construct."""
    random.seed(seed)
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, shots, seed, subsample))


def per_label(items: Sequence[Datum]) -> Dict[int, int]:
    return dict(Counter(item.label for item in items))


def triples(items: Sequence[Datum]) -> List[Tuple[str, int, str]]:
    return [(item.impath, item.label, item.classname) for item in items]


def check_sizes(data: DatasetBase, train: int, val: int, test: int, n_classes: int) -> None:
    """Every class has ``train``/``val``/``test`` images and each label keeps one class name."""
    assert data.num_classes == n_classes
    assert per_label(data.train_x) == {label: train for label in range(n_classes)}
    assert per_label(data.val) == {label: val for label in range(n_classes)}
    assert per_label(data.test) == {label: test for label in range(n_classes)}
    for split in (data.train_x, data.val, data.test):
        assert all(item.classname == data.lab2cname[item.label] for item in split)


def check_partition(data: DatasetBase, all_images: Iterable[Path]) -> None:
    """train/val/test are disjoint and cover exactly the given images."""
    paths = [item.impath for split in (data.train_x, data.val, data.test) for item in split]
    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(str(path) for path in all_images)


def write_split_json(path: Path, splits: Dict[str, List[Tuple[str, int, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits))


def split_tree(
    dataset_dir: Path,
    image_subdir: str,
    split_file: str,
    classes: Sequence[str],
    sizes: Dict[str, int],
) -> Path:
    """A CoOp split-json tree: ``sizes[split]`` images per class and split, all in the json."""
    image_dir = dataset_dir / image_subdir if image_subdir else dataset_dir
    splits: Dict[str, List[Tuple[str, int, str]]] = {}
    for split, count in sizes.items():
        splits[split] = []
        for label, classname in enumerate(classes):
            for index in range(count):
                relative = f"c{label}/{split}_{index:03d}.jpg"
                touch(image_dir / relative)
                splits[split].append((relative, label, classname))
    write_split_json(dataset_dir / split_file, splits)
    return image_dir


# --------------------------------------------------------------------------- registry and configs


def test_every_dataset_config_names_a_registered_reader():
    folder = REPO / "configs" / "datasets"
    assert sorted(path.stem for path in folder.glob("*.yaml")) == sorted(DATASET_CONFIGS)
    for stem, name in DATASET_CONFIGS.items():
        cfg = get_cfg_default()
        cfg.merge_from_file(str(folder / f"{stem}.yaml"))
        assert cfg.DATASET.NAME == name
        assert DATASET_REGISTRY.get(name).__module__.startswith("datasets.")
    assert sorted(cls.__name__ for cls in datasets.BENCHMARKS) == sorted(
        set(DATASET_CONFIGS.values()) - {"Synthetic"}
    )


# --------------------------------------------------------------------------- split json readers

JSON_READERS = [
    # (registry name, dataset folder, image folder, split file)
    ("Caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    ("OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json"),
    ("OxfordFlowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    ("StanfordCars", "stanford_cars", "", "split_zhou_StanfordCars.json"),
    ("Food101", "food-101", "images", "split_zhou_Food101.json"),
    ("SUN397", "sun397", "SUN397", "split_zhou_SUN397.json"),
    ("DescribableTextures", "dtd", "images", "split_zhou_DescribableTextures.json"),
    ("EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json"),
    ("UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
]


@pytest.mark.parametrize("name, folder, image_subdir, split_file", JSON_READERS)
def test_reader_reads_its_split_json(tmp_path, name, folder, image_subdir, split_file):
    classes = ["first class", "second class", "third class"]
    image_dir = split_tree(
        tmp_path / folder, image_subdir, split_file, classes, {"train": 3, "val": 2, "test": 2}
    )
    data = build(tmp_path, name)
    check_sizes(data, 3, 2, 2, n_classes=3)
    assert data.classnames == classes
    # Paths in the json are relative to the image folder (StanfordCars: the dataset folder).
    assert data.train_x[0].impath == str(image_dir / "c0" / "train_000.jpg")
    assert not (tmp_path / folder / "split_fewshot").exists()  # nothing cached without few-shot


# ------------------------------------------------------------------ building splits from raw data

CLASS_FOLDER_READERS = [
    # (registry name, image folder, {folder: expected class name}, ignored folders)
    (
        "Caltech101",
        "caltech-101/101_ObjectCategories",
        {"Faces": "face", "Leopards": "leopard", "airplanes": "airplane", "chair": "chair"},
        ["BACKGROUND_Google", "Faces_easy"],
    ),
    (
        "DescribableTextures",
        "dtd/images",
        {"banded": "banded", "blotchy": "blotchy", "zigzagged": "zigzagged"},
        [],
    ),
    (
        "EuroSAT",
        "eurosat/2750",
        {
            "AnnualCrop": "Annual Crop Land",
            "Forest": "Forest",
            "Highway": "Highway or Road",
            "SeaLake": "Sea or Lake",
        },
        [],
    ),
    (
        "Food101",
        "food-101/images",
        {"apple_pie": "apple_pie", "baby_back_ribs": "baby_back_ribs", "waffles": "waffles"},
        [],
    ),
]


@pytest.mark.parametrize("name, image_subdir, names, ignored", CLASS_FOLDER_READERS)
def test_class_folder_reader_builds_and_saves_coop_split(
    tmp_path, name, image_subdir, names, ignored
):
    image_dir = tmp_path / image_subdir
    images = [
        touch(image_dir / folder / f"{folder}_{i:04d}.jpg") for folder in names for i in range(10)
    ]
    for folder in ignored:
        touch(image_dir / folder / "ignored.jpg")
    data = build(tmp_path, name)
    # Labels follow the sorted folder names (upper case first); renamed classes keep their label.
    assert data.classnames == [names[folder] for folder in sorted(names)]
    check_sizes(data, 5, 2, 3, n_classes=len(names))  # CoOp's 50% / 20% / 30% of 10 images
    check_partition(data, images)
    for item in data.train_x:
        assert names[Path(item.impath).parent.name] == item.classname
    split_file = image_dir.parent / DATASET_REGISTRY.get(name).split_file
    saved = json.loads(split_file.read_text())
    assert [tuple(entry) for entry in saved["test"]] == [
        (os.path.relpath(item.impath, image_dir), item.label, item.classname) for item in data.test
    ]
    # The saved split is read back as is, whatever the seed.
    again = build(tmp_path, name, seed=7)
    assert triples(again.train_x) == triples(data.train_x) and triples(again.test) == triples(
        data.test
    )


def pets_tree(root: Path) -> List[Path]:
    breeds = [
        ("Abyssinian", 1, 1),
        ("american_bulldog", 2, 2),
        ("Bengal", 3, 1),
    ]  # (breed, class id, species)
    images, trainval, test = [], [], []
    for breed, class_id, species in breeds:
        for index in range(1, 8):
            stem = f"{breed}_{index}"
            images.append(touch(root / "oxford_pets" / "images" / f"{stem}.jpg"))
            (trainval if index <= 5 else test).append(f"{stem} {class_id} {species} {index}")
    write_lines(root / "oxford_pets" / "annotations" / "trainval.txt", trainval)
    write_lines(root / "oxford_pets" / "annotations" / "test.txt", test)
    return images


def test_oxford_pets_builds_split_from_annotations(tmp_path):
    images = pets_tree(tmp_path)
    data = build(tmp_path, "OxfordPets")
    assert data.classnames == ["abyssinian", "american_bulldog", "bengal"]
    check_sizes(data, 4, 1, 2, n_classes=3)  # 5 train+val per class, 20% (rounded) to val
    check_partition(data, images)
    assert (tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json").is_file()


def flowers_tree(root: Path) -> List[Path]:
    from scipy.io import savemat

    folder = root / "oxford_flowers"
    labels = [3, 1, 2] * 10  # image_00001.jpg has label 3, ...; classes first seen in order 3, 1, 2
    savemat(str(folder / "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    (folder / "cat_to_name.json").write_text(
        json.dumps(
            {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
        )
    )
    return [touch(folder / "jpg" / f"image_{i:05d}.jpg") for i in range(1, len(labels) + 1)]


def test_oxford_flowers_builds_split_from_labels_and_cat_to_name(tmp_path):
    (tmp_path / "oxford_flowers").mkdir()
    images = flowers_tree(tmp_path)
    data = build(tmp_path, "OxfordFlowers")
    assert data.classnames == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    check_sizes(data, 5, 2, 3, n_classes=3)
    check_partition(data, images)
    first = [
        item
        for split in (data.train_x, data.val, data.test)
        for item in split
        if item.impath.endswith("image_00001.jpg")
    ]
    assert [(item.label, item.classname) for item in first] == [
        (2, "canterbury bells")
    ]  # label 3 in the .mat


def cars_tree(root: Path) -> List[Path]:
    from scipy.io import savemat

    folder = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012"]
    meta = np.empty((1, len(names)), dtype=object)
    for index, name in enumerate(names):
        meta[0, index] = name
    (folder / "devkit").mkdir(parents=True)
    savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": meta})
    images = []
    for split, mat_file, per_class in (
        ("cars_train", "devkit/cars_train_annos.mat", 5),
        ("cars_test", "cars_test_annos_withlabels.mat", 2),
    ):
        annotations = np.zeros(
            (1, per_class * len(names)), dtype=[("fname", object), ("class", object)]
        )
        for index in range(per_class * len(names)):
            fname = f"{index + 1:05d}.jpg"
            annotations[0, index] = (
                np.array([fname]),
                np.array([[index % len(names) + 1]], dtype=np.uint8),
            )
            images.append(touch(folder / split / fname))
        savemat(str(folder / mat_file), {"annotations": annotations})
    return images


def test_stanford_cars_builds_split_with_year_first_names(tmp_path):
    images = cars_tree(tmp_path)
    data = build(tmp_path, "StanfordCars")
    assert data.classnames == [
        "2000 AM General Hummer SUV",
        "2012 Acura RL Sedan",
        "2012 Audi R8 Coupe",
    ]
    check_sizes(data, 4, 1, 2, n_classes=3)
    check_partition(data, images)
    saved = json.loads((tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json").read_text())
    assert {entry[0].split("/")[0] for entry in saved["train"] + saved["val"]} == {"cars_train"}
    assert {entry[0].split("/")[0] for entry in saved["test"]} == {"cars_test"}


def test_sun397_builds_split_with_reversed_path_words(tmp_path):
    folder = tmp_path / "sun397"
    categories = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]
    write_lines(folder / "ClassName.txt", categories)
    images, train, test = [], [], []
    for category in categories:
        for index in range(7):
            line = f"{category}/sun_{index:03d}.jpg"
            images.append(touch(folder / "SUN397" / line[1:]))
            (train if index < 5 else test).append(line)
    write_lines(folder / "Training_01.txt", train)
    write_lines(folder / "Testing_01.txt", test)
    data = build(tmp_path, "SUN397")
    assert data.classnames == ["abbey", "outdoor apartment_building", "shop bakery"]
    check_sizes(data, 4, 1, 2, n_classes=3)
    check_partition(data, images)


def test_ucf101_builds_split_with_split_camel_case_names(tmp_path):
    folder = tmp_path / "ucf101"
    actions = {
        "ApplyEyeMakeup": "Apply_Eye_Makeup",
        "PlayingDaf": "Playing_Daf",
        "YoYo": "Yo_Yo",
    }  # -> frame folder
    write_lines(
        folder / "ucfTrainTestlist" / "classInd.txt",
        [f"{i + 1} {a}" for i, a in enumerate(actions)],
    )
    images, train, test = [], [], []
    for label, (action, frames) in enumerate(actions.items()):
        for group in range(1, 8):
            video = f"v_{action}_g{group:02d}_c01"
            images.append(touch(folder / "UCF-101-midframes" / frames / f"{video}.jpg"))
            if group <= 5:
                train.append(f"{action}/{video}.avi {label + 1}")
            else:
                test.append(f"{action}/{video}.avi")
    write_lines(folder / "ucfTrainTestlist" / "trainlist01.txt", train)
    write_lines(folder / "ucfTrainTestlist" / "testlist01.txt", test)
    data = build(tmp_path, "UCF101")
    assert data.classnames == ["Apply_Eye_Makeup", "Playing_Daf", "Yo_Yo"]
    check_sizes(data, 4, 1, 2, n_classes=3)
    check_partition(data, images)


def test_fgvc_aircraft_reads_variant_lists_with_labels_in_file_order(tmp_path):
    folder = tmp_path / "fgvc_aircraft"
    variants = ["Cessna 172", "707-320", "F/A-18"]  # not sorted: labels follow variants.txt
    write_lines(folder / "variants.txt", variants)
    image_id = 1000000
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        lines = []
        for variant in variants:
            for _ in range(count):
                image_id += 1
                touch(folder / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {variant}")
        write_lines(folder / f"images_variant_{split}.txt", lines)
    data = build(tmp_path, "FGVCAircraft")
    assert data.classnames == variants
    check_sizes(data, 3, 2, 2, n_classes=3)


# ------------------------------------------------------------------------ ImageNet and its variants

# classnames.txt lines, deliberately not in sorted wnid order
WNIDS = {"n01443537": "goldfish", "n01440764": "tench", "n01484850": "great white shark"}


def write_classnames(path: Path) -> None:
    write_lines(path, [f"{wnid} {name}" for wnid, name in WNIDS.items()])


def imagenet_tree(root: Path, train: int = 4, val: int = 2) -> None:
    folder = root / "imagenet"
    write_classnames(folder / "classnames.txt")
    for wnid in WNIDS:
        for index in range(train):
            touch(folder / "images" / "train" / wnid / f"{wnid}_{index}.JPEG")
        for index in range(val):
            touch(folder / "images" / "val" / wnid / f"ILSVRC2012_val_{wnid}_{index}.JPEG")


def test_imagenet_reads_folders_caches_them_and_uses_test_as_val(tmp_path):
    imagenet_tree(tmp_path)
    data = build(tmp_path, "ImageNet")
    # Labels follow the sorted wnid folders, names come from classnames.txt.
    assert data.classnames == ["tench", "goldfish", "great white shark"]
    assert per_label(data.train_x) == {0: 4, 1: 4, 2: 4}
    assert per_label(data.test) == {0: 2, 1: 2, 2: 2}
    assert data.val is data.test and type(data).val_is_test
    cache = tmp_path / "imagenet" / "preprocessed.pkl"
    with open(cache, "rb") as handle:
        saved = pickle.load(handle)
    # CoOp's keys (absolute Datums) plus the same lists relative to the dataset folder.
    assert set(saved) == {"train", "test", "relative"}
    assert all(isinstance(d, Datum) for d in saved["train"])
    assert saved["relative"]["train"][0] == [
        os.path.relpath(saved["train"][0].impath, tmp_path / "imagenet"),
        saved["train"][0].label,
        saved["train"][0].classname,
    ]
    # The cache is what later runs read: an image added on disk is not picked up.
    touch(tmp_path / "imagenet" / "images" / "train" / "n01440764" / "extra.JPEG")
    assert triples(build(tmp_path, "ImageNet").train_x) == triples(data.train_x)


@pytest.mark.parametrize(
    "name, image_dir, folders",
    [
        ("ImageNetV2", "imagenetv2/imagenetv2-matched-frequency-format-val", ["0", "1", "2"]),
        ("ImageNetSketch", "imagenet-sketch/images", list(WNIDS)),
        ("ImageNetA", "imagenet-adversarial/imagenet-a", list(WNIDS)),
        ("ImageNetR", "imagenet-rendition/imagenet-r", list(WNIDS)),
    ],
)
def test_imagenet_variants_are_test_only_with_imagenet_names(tmp_path, name, image_dir, folders):
    for folder in folders:
        for index in range(3):
            touch(tmp_path / image_dir / folder / f"{index}.jpg")
    touch(tmp_path / image_dir / "README.txt")  # ImageNet-A/R ship one; it is not a class
    write_classnames(tmp_path / image_dir.split("/")[0] / "classnames.txt")
    data = build(tmp_path, name, shots=16, subsample="all")
    if name == "ImageNetV2":  # folder i is the i-th line of classnames.txt
        assert data.classnames == list(WNIDS.values())
    else:  # sorted wnid folders
        assert data.classnames == ["tench", "goldfish", "great white shark"]
    assert data.train_x is data.test and data.val is None
    assert per_label(data.test) == {0: 3, 1: 3, 2: 3}
    assert not (tmp_path / image_dir.split("/")[0] / "split_fewshot").exists()


# --------------------------------------------------------------------------- few-shot sampling


def fewshot_tree(root: Path, n_classes: int = 5, train: int = 20, val: int = 6) -> None:
    """A DTD tree; the last class has only 2 train images (fewer than most shot counts)."""
    split_tree(
        root / "dtd",
        "images",
        "split_zhou_DescribableTextures.json",
        [f"texture{i}" for i in range(n_classes)],
        {"train": train, "val": val, "test": 3},
    )
    saved = json.loads((root / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    saved["train"] = [
        entry
        for entry in saved["train"]
        if entry[1] != n_classes - 1 or entry[0].endswith(("_000.jpg", "_001.jpg"))
    ]
    (root / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(saved))


@pytest.mark.parametrize("shots, val_shots", [(1, 1), (4, 4), (16, 4)])
def test_few_shot_counts_and_cache_content(tmp_path, shots, val_shots):
    fewshot_tree(tmp_path)
    data = build(tmp_path, "DescribableTextures", shots=shots, seed=2)
    expected_train = {label: shots for label in range(4)}
    expected_train[4] = min(shots, 2)  # a class with fewer images keeps them all
    assert per_label(data.train_x) == expected_train
    assert per_label(data.val) == {label: val_shots for label in range(5)}
    assert per_label(data.test) == {label: 3 for label in range(5)}  # test is never sampled
    cache = tmp_path / "dtd" / "split_fewshot" / f"shot_{shots}-seed_2.pkl"
    with open(cache, "rb") as handle:
        saved = pickle.load(handle)  # CoOp's format: {"train", "val"} lists of Dassl Datum
    assert set(saved) == {"train", "val", "split_sha256", "relative"}  # CoOp ignores the last two
    assert all(isinstance(item, Datum) for item in saved["train"] + saved["val"])
    assert triples(saved["train"]) == triples(data.train_x) and triples(saved["val"]) == triples(
        data.val
    )


def test_few_shot_cache_is_reused(tmp_path, monkeypatch):
    fewshot_tree(tmp_path)
    first = build(tmp_path, "DescribableTextures", shots=4, seed=1)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again although the cache exists")

    monkeypatch.setattr(coop_format, "sample_per_class", no_sampling)
    random.seed(12345)  # a different global state: only the cache can give the same images
    second = DATASET_REGISTRY.get("DescribableTextures")(
        make_cfg(tmp_path, "DescribableTextures", 4, 1)
    )
    assert triples(second.train_x) == triples(first.train_x)
    assert triples(second.val) == triples(first.val)


def test_few_shot_sample_depends_only_on_the_seed(tmp_path):
    for copy in ("a", "b"):
        fewshot_tree(tmp_path / copy)
    one_a = build(tmp_path / "a", "DescribableTextures", shots=2, seed=1)
    one_b = build(tmp_path / "b", "DescribableTextures", shots=2, seed=1)
    two_a = build(tmp_path / "a", "DescribableTextures", shots=2, seed=2)

    def names(data: DatasetBase) -> List[str]:
        return [Path(item.impath).name for item in data.train_x + data.val]

    assert names(one_a) == names(one_b)
    assert names(one_a) != names(two_a)


def test_sampling_matches_dassl_generate_fewshot_dataset(tmp_path):
    """Same global seed, same picks as Dassl's sampler (CoOp's): few-shot sets stay comparable."""
    records = []
    for index in range(60):
        path = touch(tmp_path / f"{index}.jpg")
        records.append(
            Datum(impath=str(path), label=index % 7 if index < 50 else 6, classname=f"c{index % 7}")
        )
    for shots in (1, 3, 8, 16):
        random.seed(shots)
        ours = coop_format.sample_per_class(records, shots)
        random.seed(shots)
        dassl = DatasetBase(train_x=records).generate_fewshot_dataset(records, num_shots=shots)
        assert [d.impath for d in ours] == [d.impath for d in dassl]


# --------------------------------------------------------------- the few-shot cache and its split


def caltech_tree(root: Path, per_class: int = 12) -> None:
    """Caltech101's raw class folders only: the reader builds the split itself, as CoOp's."""
    image_dir = root / "caltech-101" / "101_ObjectCategories"
    for folder in ("Faces", "Leopards", "airplanes", "chair", "lamp", "pizza"):
        for index in range(per_class):
            touch(image_dir / folder / f"image_{index:04d}.jpg")


def read_cache(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle)


def write_coop_cache(path: Path, data: dict) -> None:
    """A cache as CoOp's readers write it: only ``train``/``val`` Datum lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)


def relative_triples(items: Sequence[Datum], folder: Path) -> List[Tuple[str, int, str]]:
    return [(os.path.relpath(d.impath, folder), d.label, d.classname) for d in items]


def test_rebuilt_split_refuses_the_cache_drawn_from_the_old_split(tmp_path):
    """The issue's case: without its split file the reader builds a new split (as CoOp's); the
    few-shot cache drawn from the old split would put new test images into training."""
    caltech_tree(tmp_path)
    folder = tmp_path / "caltech-101"
    first = build(tmp_path, "Caltech101", shots=4, seed=1)  # builds the split, draws the cache
    cache = folder / "split_fewshot" / "shot_4-seed_1.pkl"
    written = cache.read_bytes()
    (folder / "split_zhou_Caltech101.json").unlink()
    build(tmp_path, "Caltech101", shots=4, seed=2)  # seed 2 runs first: it builds another split
    rebuilt = build(tmp_path, "Caltech101")
    leaked = {d.impath for d in first.train_x} & {d.impath for d in rebuilt.test}
    assert leaked  # what reusing the cache would train on
    with pytest.raises(DatasetError) as error:
        build(tmp_path, "Caltech101", shots=4, seed=1)
    message = str(error.value)
    assert message.startswith(
        f"Caltech101: few-shot cache {cache} was drawn from a different split"
    )
    assert "the split file was rebuilt or replaced" in message
    assert f"delete {cache} to draw the sample again" in message
    assert cache.read_bytes() == written  # refused, not redrawn
    cache.unlink()  # as the message says: a new sample from the new split, without leakage
    again = build(tmp_path, "Caltech101", shots=4, seed=1)
    train = {d.impath for d in rebuilt.train_x}
    assert {d.impath for d in again.train_x} <= train


def test_imagenet_few_shot_cache_is_tied_to_its_preprocessed_split(tmp_path):
    imagenet_tree(tmp_path)
    build(tmp_path, "ImageNet", shots=2)
    (tmp_path / "imagenet" / "preprocessed.pkl").unlink()  # read again from the folders, which
    touch(tmp_path / "imagenet" / "images" / "train" / "n01440764" / "new.JPEG")  # have changed
    with pytest.raises(
        DatasetError, match=r"few-shot cache .*shot_2-seed_1\.pkl was drawn from a different split"
    ):
        build(tmp_path, "ImageNet", shots=2)


def test_imagenet_reads_coop_preprocessed_pkl(tmp_path):
    """CoOp's ``preprocessed.pkl`` (absolute Datums only) is read as it is."""
    imagenet_tree(tmp_path)
    ours = build(tmp_path, "ImageNet")
    cache = tmp_path / "imagenet" / "preprocessed.pkl"
    coop = {key: read_cache(cache)[key] for key in ("train", "test")}
    write_coop_cache(cache, {"train": coop["train"][:-1], "test": coop["test"]})
    data = build(tmp_path, "ImageNet")
    assert triples(data.train_x) == triples(coop["train"][:-1])
    assert triples(data.test) == triples(ours.test)


@pytest.mark.parametrize(
    "name, make_tree, folder",
    [("DescribableTextures", fewshot_tree, "dtd"), ("ImageNet", imagenet_tree, "imagenet")],
)
def test_moved_data_tree_reads_the_cached_sample_where_it_is_now(
    tmp_path, monkeypatch, name, make_tree, folder
):
    make_tree(tmp_path / "before")
    first = build(tmp_path / "before", name, shots=2, seed=1)
    (tmp_path / "before").rename(tmp_path / "after")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again although the cache exists")

    monkeypatch.setattr(coop_format, "sample_per_class", no_sampling)
    moved = build(tmp_path / "after", name, shots=2, seed=1)
    new_dir = tmp_path / "after" / folder
    for split in ("train_x", "val", "test"):
        items = getattr(moved, split)
        assert all(d.impath.startswith(f"{new_dir}{os.sep}") for d in items)
        assert relative_triples(items, new_dir) == relative_triples(
            getattr(first, split), tmp_path / "before" / folder
        )


def test_coop_cache_is_used_only_when_drawn_from_the_current_split(tmp_path):
    """A cache CoOp wrote (``train``/``val`` Datums, absolute paths, no fingerprint) is read if
    every image is in the current train (val) list under the current dataset folder."""
    fewshot_tree(tmp_path / "data")
    fewshot_tree(tmp_path / "elsewhere")
    full = build(tmp_path / "data", "DescribableTextures")
    cache = tmp_path / "data" / "dtd" / "split_fewshot" / "shot_2-seed_1.pkl"
    coop = {"train": [full.train_x[i] for i in (0, 1, 20, 21)], "val": [full.val[0], full.val[6]]}
    write_coop_cache(cache, coop)
    data = build(tmp_path / "data", "DescribableTextures", shots=2, seed=1)
    assert triples(data.train_x) == triples(coop["train"])
    assert triples(data.val) == triples(coop["val"])
    assert set(read_cache(cache)) == {"train", "val"}  # CoOp's file is left as it is

    # A test image in the cached train list: drawn from another split.
    write_coop_cache(cache, {"train": coop["train"] + [full.test[0]], "val": coop["val"]})
    with pytest.raises(DatasetError) as error:
        build(tmp_path / "data", "DescribableTextures", shots=2, seed=1)
    message = str(error.value)
    assert f"few-shot cache {cache} was drawn from a different split" in message
    assert "1 of 5 cached train images are not in the current train split" in message
    assert os.path.relpath(full.test[0].impath, tmp_path / "data" / "dtd") in message
    assert f"delete {cache} to draw the sample again" in message

    # The same images under another dataset folder: written for another location.
    other = build(tmp_path / "elsewhere", "DescribableTextures")
    write_coop_cache(cache, {"train": other.train_x[:4], "val": other.val[:2]})
    with pytest.raises(DatasetError) as error:
        build(tmp_path / "data", "DescribableTextures", shots=2, seed=1)
    message = str(error.value)
    assert f"few-shot cache {cache} was written for a different location or split" in message
    assert f"4 of 4 cached train images are not under {tmp_path / 'data' / 'dtd'}" in message


def test_our_cache_reads_the_coop_way(tmp_path):
    """CoOp's readers load ``data["train"], data["val"]`` from the same file: absolute Datums of
    existing images, next to our split fingerprint and relative copy of the same items."""
    fewshot_tree(tmp_path)
    ours = build(tmp_path, "DescribableTextures", shots=4, seed=1)
    cache = tmp_path / "dtd" / "split_fewshot" / "shot_4-seed_1.pkl"
    data = read_cache(cache)
    train, val = data["train"], data["val"]  # as CoOp's dtd.py does
    for key, items, read in (("train", train, ours.train_x), ("val", val, ours.val)):
        assert items and all(isinstance(d, Datum) for d in items)
        assert all(os.path.isabs(d.impath) and os.path.isfile(d.impath) for d in items)
        assert triples(items) == triples(read)
        assert [tuple(entry) for entry in data["relative"][key]] == relative_triples(
            items, tmp_path / "dtd"
        )
    split = coop_format.read_split_json(
        str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"),
        str(tmp_path / "dtd" / "images"),
        "DescribableTextures",
    )
    assert data["split_sha256"] == coop_format.split_fingerprint(split, str(tmp_path / "dtd"))
    assert DatasetBase(train_x=train, val=val, test=ours.test).num_classes == 5


# --------------------------------------------------------------------------- base-to-new


@pytest.mark.parametrize(
    "subsample, labels, names",
    [("base", 3, ["texture0", "texture1", "texture2"]), ("new", 2, ["texture3", "texture4"])],
)
def test_base_new_split_odd_class_count(tmp_path, subsample, labels, names):
    fewshot_tree(tmp_path, train=6)
    full = build(tmp_path, "DescribableTextures", shots=2, seed=1)
    data = build(tmp_path, "DescribableTextures", shots=2, seed=1, subsample=subsample)
    assert data.num_classes == labels and data.classnames == names  # 5 classes: base 3, new 2
    for split, full_split in (
        (data.train_x, full.train_x),
        (data.val, full.val),
        (data.test, full.test),
    ):
        assert {item.label for item in split} == set(range(labels))  # relabelled from 0
        kept = [(Path(i.impath).name, i.classname) for i in full_split if i.classname in names]
        assert [
            (Path(i.impath).name, i.classname) for i in split
        ] == kept  # same images, after few-shot


def test_base_new_on_imagenet_keeps_val_equal_to_test(tmp_path):
    imagenet_tree(tmp_path)
    data = build(tmp_path, "ImageNet", shots=2, subsample="new")
    assert data.classnames == ["great white shark"] and data.val is data.test
    assert per_label(data.train_x) == {0: 2} and per_label(data.test) == {0: 2}


def test_unknown_subsample_mode_is_refused(tmp_path):
    fewshot_tree(tmp_path)
    with pytest.raises(ValueError, match=r"SUBSAMPLE_CLASSES must be one of .*'half'"):
        build(tmp_path, "DescribableTextures", subsample="half")


# --------------------------------------------------------------------------- clear errors


def test_empty_root_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="DATASET.ROOT is empty: pass --root"):
        build("", "DescribableTextures")


@pytest.mark.parametrize(
    "name, folder, expected",
    [(n, f, s) for n, f, _, s in JSON_READERS]
    + [
        ("FGVCAircraft", "fgvc_aircraft", "images_variant_"),
        ("ImageNet", "imagenet", "classnames.txt"),
        ("ImageNetA", "imagenet-adversarial", "imagenet-a/"),
    ],
)
def test_missing_dataset_folder_names_path_and_contents(tmp_path, name, folder, expected):
    with pytest.raises(DatasetError) as error:
        build(tmp_path, name)
    message = str(error.value)
    assert f"{name}: dataset folder not found: {tmp_path / folder}" in message
    assert expected in message and "DATASETS.md" in message


def test_missing_image_folder(tmp_path):
    write_split_json(
        tmp_path / "eurosat" / "split_zhou_EuroSAT.json", {"train": [], "val": [], "test": []}
    )
    with pytest.raises(
        DatasetError, match=f"EuroSAT: image folder not found: {tmp_path / 'eurosat' / '2750'}"
    ):
        build(tmp_path, "EuroSAT")


def test_missing_split_file_and_raw_annotations(tmp_path):
    touch(tmp_path / "oxford_pets" / "images" / "Abyssinian_1.jpg")
    with pytest.raises(DatasetError) as error:
        build(tmp_path, "OxfordPets")
    message = str(error.value)
    assert f"not found: {tmp_path / 'oxford_pets' / 'split_zhou_OxfordPets.json'}" in message
    assert "annotations/trainval.txt, annotations/test.txt" in message


@pytest.mark.parametrize(
    "name, image_dir",
    [("ImageNet", "imagenet/images/train"), ("ImageNetSketch", "imagenet-sketch/images")],
)
def test_missing_classnames_txt(tmp_path, name, image_dir):
    touch(tmp_path / image_dir / "n01440764" / "1.jpg")
    touch(tmp_path / "imagenet" / "images" / "val" / "n01440764" / "1.jpg")
    folder = image_dir.split("/")[0]
    with pytest.raises(
        DatasetError, match=f"class-name file.* not found: {tmp_path / folder / 'classnames.txt'}"
    ):
        build(tmp_path, name)


def test_images_listed_in_split_but_absent_are_counted_and_shown(tmp_path):
    split_tree(
        tmp_path / "dtd",
        "images",
        "split_zhou_DescribableTextures.json",
        ["a", "b"],
        {"train": 4, "val": 1, "test": 4},
    )
    for index in range(3):
        (tmp_path / "dtd" / "images" / "c1" / f"test_{index:03d}.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        build(tmp_path, "DescribableTextures")
    message = str(error.value)
    assert "3 of 8 images are missing on disk" in message
    assert str(tmp_path / "dtd" / "images" / "c1" / "test_000.jpg") in message


def test_empty_class_folder_is_reported_with_its_path(tmp_path):
    touch(tmp_path / "dtd" / "images" / "banded" / "1.jpg")
    (tmp_path / "dtd" / "images" / "blotchy").mkdir()
    with pytest.raises(
        DatasetError, match=f"class folder {tmp_path / 'dtd' / 'images' / 'blotchy'} is empty"
    ):
        build(tmp_path, "DescribableTextures")


def test_class_too_small_to_split_is_reported(tmp_path):
    for index in range(2):
        touch(tmp_path / "food-101" / "images" / "waffles" / f"{index}.jpg")
    with pytest.raises(DatasetError, match=r"class 'waffles' at .*waffles has 2 images; too few"):
        build(tmp_path, "Food101")


def test_fgvc_unknown_variant_is_reported(tmp_path):
    folder = tmp_path / "fgvc_aircraft"
    write_lines(folder / "variants.txt", ["707-320"])
    touch(folder / "images" / "1.jpg")
    for split in ("train", "val", "test"):
        write_lines(folder / f"images_variant_{split}.txt", ["1 A380"])
    with pytest.raises(DatasetError, match="lists variant 'A380', which is not in"):
        build(tmp_path, "FGVCAircraft")


def test_stale_few_shot_cache_is_reported(tmp_path):
    fewshot_tree(tmp_path)
    data = build(tmp_path, "DescribableTextures", shots=1)
    os.remove(data.train_x[0].impath)
    with pytest.raises(
        DatasetError, match=r"few-shot cache .*shot_1-seed_1.pkl lists images that are gone"
    ):
        build(tmp_path, "DescribableTextures", shots=1)


# --------------------------------------------------------------------------- synthetic dataset


def test_synthetic_generates_and_reads_back(tmp_path):
    data = build(tmp_path / "data", "Synthetic")
    assert data.classnames == [name for name, _, _ in synthetic.CLASSES]
    check_sizes(data, 16, 4, 8, n_classes=6)
    image = Image.open(data.test[0].impath)
    assert image.size == (64, 64) and image.mode == "RGB"
    assert sorted(os.listdir(tmp_path / "data")) == ["synthetic"]  # no temporary folder left
    few = build(tmp_path / "data", "Synthetic", shots=4, subsample="base")
    assert (
        few.classnames == ["red circle", "green square", "blue triangle"] and len(few.train_x) == 12
    )


def test_synthetic_is_deterministic_and_leaves_global_random_alone(tmp_path):
    random.seed(3)
    state = random.getstate()
    DATASET_REGISTRY.get("Synthetic")(make_cfg(tmp_path / "a", "Synthetic"))
    assert random.getstate() == state  # generation must not shift the few-shot sampling
    build(tmp_path / "b", "Synthetic")
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b and len(files_a) == 6 * 28 + 1
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()


def test_synthetic_is_learnable_but_not_constant(tmp_path):
    """The colour of the most saturated pixels (the shape) identifies the class by nearest
    centroid, while images of one class still differ (jitter and noise)."""
    data = build(tmp_path, "Synthetic")

    def shape_colour(item: Datum) -> np.ndarray:
        image = Image.open(item.impath)
        rgb = np.asarray(image, dtype=np.float32).reshape(-1, 3)
        saturation = np.asarray(image.convert("HSV"))[..., 1].ravel()
        return rgb[saturation >= np.quantile(saturation, 0.9)].mean(0)

    train = np.stack([shape_colour(item) for item in data.train_x])
    test = np.stack([shape_colour(item) for item in data.test])
    train_labels = np.array([item.label for item in data.train_x])
    centroids = np.stack([train[train_labels == label].mean(0) for label in range(6)])
    predicted = np.argmin(((test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == np.array([item.label for item in data.test])).mean() >= 0.9
    pixels = np.stack(
        [np.asarray(Image.open(item.impath), dtype=np.float32) for item in data.train_x[:16]]
    )
    assert pixels.std(0).mean() > 10  # the 16 train images of "red circle" are not copies


def test_interrupted_synthetic_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    draw = synthetic.draw_shape_image

    def failing_draw(*args, **kwargs):
        calls.append(1)
        if len(calls) == 50:
            raise KeyboardInterrupt
        return draw(*args, **kwargs)

    monkeypatch.setattr(synthetic, "draw_shape_image", failing_draw)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, "Synthetic")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(synthetic, "draw_shape_image", draw)
    assert build(tmp_path, "Synthetic").num_classes == 6


def test_incomplete_synthetic_folder_is_not_trusted(tmp_path):
    (tmp_path / "synthetic" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        build(tmp_path, "Synthetic")
    assert (
        f"Synthetic: split file not found: {tmp_path / 'synthetic' / 'split_zhou_Synthetic.json'}"
        in str(error.value)
    )
    assert "delete the folder to generate it again" in str(error.value)
