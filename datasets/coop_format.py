"""The CoOp dataset layout, written once for every reader.

CoOp (Zhou et al.) fixed how the few-shot CLIP benchmarks are stored and split: a folder per
dataset under ``$DATA``, a ``split_zhou_<Name>.json`` with ``{"train"|"val"|"test":
[[relative_path, label, classname], ...]}``, few-shot samples cached in
``split_fewshot/shot_{K}-seed_{S}.pkl`` as pickled Dassl ``Datum`` lists, and base/new classes
taken as the lower/upper half of the sorted labels. Published baselines are only comparable
when all of this is reproduced exactly, including the order in which the global ``random``
module is consumed, so the functions below mirror CoOp's semantics step by step; their code
is our own. The few-shot caches written here keep CoOp's keys (CoOp reads them) and add the
fingerprint of the split they were drawn from and paths relative to the dataset folder (see
:func:`few_shot_splits`): a cache is never used with another split, and a moved data tree is
read where it is now.

A reader subclasses :class:`CoOpDataset` (or :class:`SplitJsonDataset`) and only states where
its files are and, when its split file may be missing, how to build the split from the raw
annotations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from dassl.data.datasets import DatasetBase, Datum

# Written through a temporary file renamed into place, so an interrupted run never leaves a
# truncated split or cache that later runs would trust (one implementation for every file we write).
from trainers.dpl_core.run_folder import atomic_write

logger = logging.getLogger(__name__)

DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
SUBSAMPLE_MODES = ("all", "base", "new")
FEWSHOT_DIR = "split_fewshot"
MAX_VAL_SHOTS = 4  # CoOp caps the few-shot validation split at 4 images per class
MAX_LISTED = 5  # how many offending paths an error message shows


class DatasetError(FileNotFoundError):
    """A dataset on disk is missing, incomplete, or not in the CoOp layout."""


class Record(NamedTuple):
    """One labelled image before it becomes a Dassl ``Datum`` (which stats the file)."""

    impath: str
    label: int
    classname: str


Splits = Dict[str, List[Record]]
_Labelled = TypeVar("_Labelled", Record, Datum)


# --------------------------------------------------------------------------- config and paths


def dataset_root(cfg: Any) -> str:
    """Absolute ``cfg.DATASET.ROOT`` (``~`` expanded); an empty root is an error, not the cwd."""
    root = cfg.DATASET.ROOT
    if not root:
        raise DatasetError(
            "DATASET.ROOT is empty: pass --root DATA (the folder that holds one folder per "
            f"dataset, laid out as in {DATASETS_MD})"
        )
    return os.path.abspath(os.path.expanduser(root))


def subsample_mode(cfg: Any) -> str:
    """``cfg.DATASET.SUBSAMPLE_CLASSES`` (``"all"`` when the key is not defined), validated."""
    mode = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
    if mode not in SUBSAMPLE_MODES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_MODES}, got {mode!r}"
        )
    return mode


def missing_error(
    dataset: str, what: str, path: str, layout: str, instructions: str
) -> DatasetError:
    """The error for a missing folder or file: which dataset, where, and what belongs there."""
    return DatasetError(
        f"{dataset}: {what} not found: {path}\n  expected layout: {layout}\n  {instructions}"
    )


def list_visible(path: str) -> List[str]:
    """Entries of ``path`` not starting with a dot, in ``os.listdir`` order.

    CoOp lists images in this (file-system) order before shuffling or sampling, so a split or
    few-shot sample built here equals CoOp's built on the same disk. Once saved (split json,
    ``preprocessed.pkl``, few-shot cache) the order no longer matters.
    """
    return [name for name in os.listdir(path) if not name.startswith(".")]


def list_class_dirs(path: str, ignored: Iterable[str] = ()) -> List[str]:
    """Sorted names of the visible sub-directories of ``path``, minus ``ignored``."""
    skip = set(ignored)
    return sorted(
        name
        for name in list_visible(path)
        if name not in skip and os.path.isdir(os.path.join(path, name))
    )


def read_lines(path: str) -> List[str]:
    """Non-empty stripped lines of a text file."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip()]


def missing_files(paths: Iterable[str]) -> List[str]:
    """The paths that are not existing files."""
    return [path for path in paths if not os.path.isfile(path)]


def format_missing(missing: Sequence[str], total: int) -> str:
    """``"N of M ... e.g. a, b, c"``: the first few missing paths and the count."""
    shown = "\n    ".join(missing[:MAX_LISTED])
    more = f"\n    ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    return f"{len(missing)} of {total} images are missing on disk:\n    {shown}{more}"


def to_datums(records: Sequence[Record], dataset: str, source: str) -> List[Datum]:
    """Dassl ``Datum`` objects for ``records``; images absent on disk are reported first.

    ``Datum`` itself only asserts the file exists, one image at a time; this says how many are
    missing, which ones, and where they were listed (``source``).
    """
    missing = missing_files(record.impath for record in records)
    if missing:
        raise DatasetError(
            f"{dataset}: images listed in {source}: {format_missing(missing, len(records))}"
        )
    return [Datum(impath=r.impath, label=r.label, classname=r.classname) for r in records]


def from_datums(datums: Iterable[Datum]) -> List[Record]:
    """Records for Datums loaded from a CoOp pickle."""
    return [Record(d.impath, d.label, d.classname) for d in datums]


def is_under(path: str, folder: str) -> bool:
    """Whether the path string ``path`` lies inside ``folder`` (string prefix, no file access)."""
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def relative_path(path: str, folder: str) -> str:
    """``path`` relative to ``folder``, with ``/`` separators (what the caches store)."""
    prefix = folder.rstrip(os.sep) + os.sep
    # A plain slice for the usual case: os.path.relpath costs microseconds per call, and
    # ImageNet's train split has 1.28M images.
    relative = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, folder)
    return relative if os.sep == "/" else relative.replace(os.sep, "/")


def absolute_path(relative: str, folder: str) -> str:
    """The inverse of :func:`relative_path` for the current ``folder``."""
    return os.path.join(folder, *relative.split("/"))


RelativeRecord = List[Any]  # [relative_path, label, classname], as in a CoOp split file


def to_relative(records: Iterable[Record], folder: str) -> List[RelativeRecord]:
    """``[relative_path, label, classname]`` per record, paths relative to ``folder``."""
    return [[relative_path(r.impath, folder), int(r.label), r.classname] for r in records]


def from_relative(entries: Any, folder: str, dataset: str, source: str, key: str) -> List[Record]:
    """Records for ``[relative_path, label, classname]`` entries, joined with ``folder``."""
    try:
        return [
            Record(absolute_path(rel, folder), int(label), classname)
            for rel, label, classname in entries
        ]
    except (TypeError, ValueError, AttributeError) as err:
        raise DatasetError(
            f"{dataset}: {source} holds malformed relative {key!r} entries ({err}); "
            "delete it so it is rebuilt"
        ) from err


def split_fingerprint(splits: Mapping[str, Sequence[Record]], dataset_dir: str) -> str:
    """sha256 of a split: every record of every list, in order, with paths relative to
    ``dataset_dir`` (so it does not depend on where ``$DATA`` lives), labels and class names."""
    canonical = {name: to_relative(splits[name], dataset_dir) for name in sorted(splits)}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_pickle(obj: Any, path: str) -> None:
    """Pickle ``obj`` to ``path`` atomically (highest protocol, as CoOp)."""
    atomic_write(
        path, lambda handle: pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL), binary=True
    )


def read_pickle(path: str, dataset: str, keys: Sequence[str]) -> Dict[str, Any]:
    """Load a CoOp pickle that must be a dict holding ``keys``."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise DatasetError(
            f"{dataset}: cannot read {path} ({err}); delete it so it is rebuilt"
        ) from err
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise DatasetError(
            f"{dataset}: {path} does not hold a dict with keys {list(keys)}; delete it so it is rebuilt"
        )
    return data


# --------------------------------------------------------------------------- split json


def read_split_json(path: str, image_dir: str, dataset: str) -> Splits:
    """Read a CoOp split file; paths inside are relative to ``image_dir``."""
    logger.info("Reading split from %s", path)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{dataset}: split file {path} is not valid JSON ({err}); download it again"
        ) from err
    splits: Splits = {}
    for name in ("train", "val", "test"):
        if name not in data:
            raise DatasetError(
                f"{dataset}: split file {path} has no {name!r} list (keys: {sorted(data)})"
            )
        splits[name] = [
            Record(os.path.join(image_dir, impath), int(label), cname)
            for impath, label, cname in data[name]
        ]
    return splits


def write_split_json(splits: Splits, path: str, image_dir: str) -> None:
    """Save ``splits`` in CoOp's split-file format, paths relative to ``image_dir``."""
    data = {
        name: [(os.path.relpath(r.impath, image_dir), r.label, r.classname) for r in splits[name]]
        for name in ("train", "val", "test")
    }
    # indent and separators as Dassl's write_json, so the file reads like CoOp's own.
    atomic_write(path, lambda handle: json.dump(data, handle, indent=4, separators=(",", ": ")))
    logger.info("Saved split to %s", path)


# --------------------------------------------------------------------------- building splits


def split_trainval(
    trainval: Sequence[Record], dataset: str, p_val: float = 0.2
) -> Tuple[List[Record], List[Record]]:
    """CoOp's train/val split of a train+val list: per label (in order of first appearance),
    shuffle with the global ``random`` and move the first ``round(n * p_val)`` to val."""
    by_label: Dict[int, List[Record]] = defaultdict(list)
    for record in trainval:
        by_label[record.label].append(record)
    train: List[Record] = []
    val: List[Record] = []
    for items in by_label.values():
        n_val = round(len(items) * p_val)
        if n_val == 0:
            raise DatasetError(
                f"{dataset}: class {items[0].classname!r} has {len(items)} train+val images "
                f"(e.g. {items[0].impath}); at least 3 are needed to hold out {p_val:.0%} for validation"
            )
        order = list(range(len(items)))
        random.shuffle(order)
        val.extend(items[i] for i in order[:n_val])
        train.extend(items[i] for i in order[n_val:])
    return train, val


def split_groups(
    groups: Iterable[Tuple[List[str], int, str, str]],
    dataset: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
) -> Splits:
    """CoOp's train/val/test split of per-class image lists.

    Args:
        groups: ``(image_paths, label, classname, where)`` per class, in CoOp's class order;
            ``where`` locates the class in error messages.
        dataset: dataset name for error messages.
        p_trn: share of each class for train (``round``-ed).
        p_val: share for val (``round``-ed); the rest is test.

    Each class is shuffled with the global ``random`` in turn, exactly as CoOp does.
    """
    splits: Splits = {"train": [], "val": [], "test": []}
    for impaths, label, classname, where in groups:
        impaths = list(impaths)
        random.shuffle(impaths)
        n_trn = round(len(impaths) * p_trn)
        n_val = round(len(impaths) * p_val)
        if min(n_trn, n_val, len(impaths) - n_trn - n_val) <= 0:
            raise DatasetError(
                f"{dataset}: class {classname!r} at {where} has {len(impaths)} images; too few to split "
                f"{p_trn:.0%}/{p_val:.0%}/{1 - p_trn - p_val:.0%} into train/val/test with none empty"
            )
        for name, part in (
            ("train", impaths[:n_trn]),
            ("val", impaths[n_trn : n_trn + n_val]),
            ("test", impaths[n_trn + n_val :]),
        ):
            splits[name].extend(Record(impath, label, classname) for impath in part)
    return splits


def class_folder_groups(
    image_dir: str,
    dataset: str,
    ignored: Iterable[str] = (),
    renames: Optional[Dict[str, str]] = None,
) -> List[Tuple[List[str], int, str, str]]:
    """Per-class image lists of a class-per-folder tree, labelled in sorted folder order.

    ``renames`` maps folder names to class names (e.g. Caltech's ``airplanes -> airplane``).
    """
    renames = renames or {}
    folders = list_class_dirs(image_dir, ignored)
    if not folders:
        raise DatasetError(f"{dataset}: no class folders in {image_dir}")
    groups = []
    for label, folder in enumerate(folders):
        folder_dir = os.path.join(image_dir, folder)
        images = [os.path.join(folder_dir, name) for name in list_visible(folder_dir)]
        if not images:
            raise DatasetError(f"{dataset}: class folder {folder_dir} is empty")
        groups.append((images, label, renames.get(folder, folder), folder_dir))
    return groups


# --------------------------------------------------------------------------- few-shot, base/new


def sample_per_class(items: Sequence[_Labelled], num_shots: int) -> List[_Labelled]:
    """``num_shots`` items per label, as Dassl's ``generate_fewshot_dataset`` (no repeat).

    Labels are visited in order of first appearance; a label with at least ``num_shots`` items
    gets ``random.sample(items, num_shots)`` from the global ``random``, a smaller one keeps all
    its items. Same calls, same order: the same seed picks the same images as CoOp.
    """
    by_label: Dict[int, List[_Labelled]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    sampled: List[_Labelled] = []
    for group in by_label.values():
        sampled.extend(random.sample(group, num_shots) if len(group) >= num_shots else group)
    return sampled


def fewshot_cache_path(dataset_dir: str, num_shots: int, seed: int) -> str:
    """``<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.pkl``, CoOp's cache file."""
    return os.path.join(dataset_dir, FEWSHOT_DIR, f"shot_{num_shots}-seed_{seed}.pkl")


SPLIT_HASH_KEY = "split_sha256"  # our few-shot caches: fingerprint of the split sampled from
RELATIVE_KEY = "relative"  # our caches: {"train"|"val"|...: [[relative_path, label, classname]]}


def few_shot_splits(
    dataset: str,
    dataset_dir: str,
    num_shots: int,
    seed: int,
    train: Sequence[Record],
    val: Optional[Sequence[Record]],
    test: Sequence[Record],
) -> Tuple[List[Datum], Optional[List[Datum]]]:
    """Few-shot train (``K`` per class) and val (``min(K, 4)`` per class), cached as CoOp does.

    The cache ``split_fewshot/shot_{K}-seed_{S}.pkl`` holds CoOp's ``{"train": [Datum], "val":
    [Datum]}`` (only ``"train"`` when ``val`` is None, as CoOp's ImageNet), so CoOp reads the
    files we write, plus two keys CoOp ignores: ``"split_sha256"``, the
    :func:`split_fingerprint` of the full ``train``/``val``/``test`` split sampled from, and
    ``"relative"``, the sampled items with paths relative to ``dataset_dir``.

    An existing cache is loaded instead of sampling, so the search and the training stage of one
    seed see the same images, but only if it was drawn from the split in use: ours must carry
    the current split's fingerprint (its images are then read from the current
    ``dataset_dir``, wherever the tree was moved); one written by CoOp (no fingerprint) must
    list only images of the current ``dataset_dir`` that are in the current train (val) list.
    Anything else is refused with a :class:`DatasetError`: nothing is silently redrawn or
    reused. ``num_shots < 1`` means the full splits, uncached.
    """
    if num_shots < 1:
        full_val = None if val is None else to_datums(val, dataset, "the val split")
        return to_datums(train, dataset, "the train split"), full_val
    path = fewshot_cache_path(dataset_dir, num_shots, seed)
    keys = ["train"] if val is None else ["train", "val"]
    split: Dict[str, Sequence[Record]] = {"train": train, "test": test}
    if val is not None:
        split["val"] = val
    if os.path.isfile(path):
        logger.info("Loading preprocessed few-shot data from %s", path)
        data = read_pickle(path, dataset, keys)
        if SPLIT_HASH_KEY in data:
            cached = _read_own_cache(data, path, dataset, dataset_dir, keys, split)
        else:
            cached = _check_coop_cache(data, path, dataset, dataset_dir, keys, split)
        for key in keys:
            missing = missing_files(r.impath for r in cached[key])
            if missing:
                raise DatasetError(
                    f"{dataset}: few-shot cache {path} lists images that are gone; delete the "
                    f"cache to sample again.\n  {key}: {format_missing(missing, len(cached[key]))}"
                )
        datums = {key: to_datums(cached[key], dataset, path) for key in keys}
        return datums["train"], datums.get("val")
    sampled = {"train": sample_per_class(train, num_shots)}
    if val is not None:
        sampled["val"] = sample_per_class(val, min(num_shots, MAX_VAL_SHOTS))
    source = f"the split of {dataset_dir}"
    data: Dict[str, Any] = {key: to_datums(sampled[key], dataset, source) for key in keys}
    data[SPLIT_HASH_KEY] = split_fingerprint(split, dataset_dir)
    data[RELATIVE_KEY] = {key: to_relative(sampled[key], dataset_dir) for key in keys}
    logger.info("Saving preprocessed few-shot data to %s", path)
    write_pickle(data, path)
    return data["train"], data.get("val")


def _redraw(path: str) -> str:
    """How to get past a refused cache (the end of every refusal message)."""
    return f"delete {path} to draw the sample again from the current split"


def _read_own_cache(
    data: Dict[str, Any],
    path: str,
    dataset: str,
    dataset_dir: str,
    keys: Sequence[str],
    split: Mapping[str, Sequence[Record]],
) -> Dict[str, List[Record]]:
    """The sampled records of a cache we wrote, if it was drawn from ``split``; paths are
    joined with the current ``dataset_dir``."""
    if data[SPLIT_HASH_KEY] != split_fingerprint(split, dataset_dir):
        raise DatasetError(
            f"{dataset}: few-shot cache {path} was drawn from a different split than the one now "
            f"in {dataset_dir} (the split file was rebuilt or replaced since); {_redraw(path)}"
        )
    relative = data.get(RELATIVE_KEY)
    if not isinstance(relative, dict) or any(key not in relative for key in keys):
        raise DatasetError(
            f"{dataset}: few-shot cache {path} has no {RELATIVE_KEY!r} lists for {list(keys)}; "
            f"{_redraw(path)}"
        )
    source = f"few-shot cache {path}"
    return {key: from_relative(relative[key], dataset_dir, dataset, source, key) for key in keys}


def _check_coop_cache(
    data: Dict[str, Any],
    path: str,
    dataset: str,
    dataset_dir: str,
    keys: Sequence[str],
    split: Mapping[str, Sequence[Record]],
) -> Dict[str, List[Record]]:
    """The records of a cache without fingerprint (CoOp's, or ours before fingerprints) if
    every cached image lies in ``dataset_dir`` and is in the current list of its key."""
    cached: Dict[str, List[Record]] = {}
    for key in keys:
        try:
            records = from_datums(data[key])
        except (TypeError, AttributeError) as err:
            raise DatasetError(
                f"{dataset}: few-shot cache {path} does not hold Datum lists ({err}); "
                f"{_redraw(path)}"
            ) from err
        outside = [r.impath for r in records if not is_under(r.impath, dataset_dir)]
        if outside:
            raise DatasetError(
                f"{dataset}: few-shot cache {path} was written for a different location or "
                f"split: {len(outside)} of {len(records)} cached {key} images are not under "
                f"{dataset_dir}, e.g. {outside[0]}; {_redraw(path)}"
            )
        known = {tuple(entry) for entry in to_relative(split[key], dataset_dir)}
        foreign = [
            entry[0] for entry in to_relative(records, dataset_dir) if tuple(entry) not in known
        ]
        if foreign:
            raise DatasetError(
                f"{dataset}: few-shot cache {path} was drawn from a different split: "
                f"{len(foreign)} of {len(records)} cached {key} images are not in the current "
                f"{key} split (the split file was rebuilt or replaced since), e.g. "
                f"{', '.join(foreign[:MAX_LISTED])}; {_redraw(path)}"
            )
        cached[key] = records
    return cached


def subsample_classes(mode: str, *splits: List[Datum]) -> List[List[Datum]]:
    """Keep the base or new half of the classes and relabel them from 0 (CoOp's base-to-new).

    The classes are the sorted labels of the first split (train, after few-shot sampling);
    base = the first ``ceil(n / 2)``, new = the rest. ``"all"`` returns the splits unchanged.
    """
    if mode not in SUBSAMPLE_MODES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_MODES}, got {mode!r}"
        )
    if mode == "all":
        return list(splits)
    labels = sorted({d.label for d in splits[0]})
    n_base = math.ceil(len(labels) / 2)
    kept = labels[:n_base] if mode == "base" else labels[n_base:]
    new_label = {old: new for new, old in enumerate(kept)}
    logger.info("Subsampling %s classes: %d of %d", mode, len(kept), len(labels))
    return [
        [
            Datum(impath=d.impath, label=new_label[d.label], classname=d.classname)
            for d in split
            if d.label in new_label
        ]
        for split in splits
    ]


# --------------------------------------------------------------------------- readers


@dataclass
class DataReport:
    """What ``scripts/check_data.py`` prints for one dataset."""

    name: str
    path: str
    status: str  # "complete" | "incomplete" | "missing" | "no split yet"
    classes: Optional[int] = None
    sizes: Dict[str, int] = field(default_factory=dict)  # images per split
    problems: List[str] = field(default_factory=list)


class CoOpDataset(DatasetBase):
    """A dataset in CoOp's layout, read into Dassl's ``DatasetBase``.

    Subclasses set the class attributes and implement :meth:`read_records`; this class does the
    rest in CoOp's order: full splits, few-shot sampling (cached), base/new subsampling.
    """

    dataset_dir = ""  # folder under DATASET.ROOT; instances hold the absolute path, as in CoOp
    layout = ""  # what the dataset folder must hold, for error messages
    instructions = ""  # how to get it, for error messages; default: CoOp's DATASETS.md section
    val_is_test = False  # True when there is no separate val split and val is the test split
    test_only = False  # True for evaluation-only sets: train_x = test = all images, no val

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        mode = subsample_mode(cfg)  # before anything is read or written
        self.dataset_dir = self.locate(dataset_root(cfg), build=True)
        records = self.read_records(self.dataset_dir, build=True)
        assert records is not None  # build=True always yields records or raises
        test = to_datums(records["test"], name, f"the test split of {self.dataset_dir}")
        if self.test_only:
            (test,) = subsample_classes(mode, test)
            super().__init__(train_x=test, test=test)
            return
        val_records = None if self.val_is_test else records["val"]
        train, val = few_shot_splits(
            name,
            self.dataset_dir,
            cfg.DATASET.NUM_SHOTS,
            cfg.SEED,
            records["train"],
            val_records,
            records["test"],
        )
        if self.val_is_test:
            train, test = subsample_classes(mode, train, test)
            val = test
        else:
            train, val, test = subsample_classes(mode, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def missing(cls, what: str, path: str) -> DatasetError:
        """The error for a missing ``what`` at ``path``, with this dataset's layout and source."""
        instructions = cls.instructions or (
            f"download instructions: the {cls.__name__} section of CoOp's DATASETS.md ({DATASETS_MD})"
        )
        return missing_error(cls.__name__, what, path, cls.layout, instructions)

    @classmethod
    def require_dir(cls, path: str, what: str) -> str:
        """``path`` if it is a directory, else :meth:`missing`."""
        if not os.path.isdir(path):
            raise cls.missing(what, path)
        return path

    @classmethod
    def require_file(cls, path: str, what: str) -> str:
        """``path`` if it is a file, else :meth:`missing`."""
        if not os.path.isfile(path):
            raise cls.missing(what, path)
        return path

    @classmethod
    def locate(cls, root: str, build: bool) -> str:
        """The dataset's folder under ``root``; it must exist (``build``: a subclass may create it)."""
        return cls.require_dir(os.path.join(root, cls.dataset_dir), "dataset folder")

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        """The full splits (``train``/``val``/``test``; ``test`` only when ``test_only``; no
        ``val`` when ``val_is_test``), before few-shot sampling.

        With ``build=False`` nothing is written and None means "the split file is absent but
        would be built from the raw annotations on first use".
        """
        raise NotImplementedError

    @classmethod
    def inspect(cls, root: str, check_images: bool = True) -> DataReport:
        """Report presence and completeness under ``root`` without writing anything."""
        path = os.path.join(root, cls.dataset_dir)
        report = DataReport(cls.__name__, path, "missing")
        try:
            records = cls.read_records(cls.locate(root, build=False), build=False)
        except DatasetError as err:
            report.status = "incomplete" if os.path.isdir(path) else "missing"
            report.problems.append(str(err))
            return report
        if records is None:
            report.status = "no split yet"
            report.problems.append(
                f"{cls.__name__}: no split file in {path}; the reader would build a new split from the raw data"
                ", which differs from the published one: download the split file"
            )
            return report
        report.status = "complete"
        report.classes = len({r.label for split in records.values() for r in split})
        report.sizes = {name: len(split) for name, split in records.items()}
        if check_images:
            for name, split in records.items():
                missing = missing_files(r.impath for r in split)
                if missing:
                    report.status = "incomplete"
                    report.problems.append(
                        f"{cls.__name__} {name}: {format_missing(missing, len(split))}"
                    )
        return report


class SplitJsonDataset(CoOpDataset):
    """A dataset with a ``split_zhou_<Name>.json`` next to its image folder.

    When the split file is absent but the raw annotations (``raw_files``) are present, the
    split is built by :meth:`build_split` as CoOp does (consuming the global ``random``) and
    saved, so later runs read it back.
    """

    image_subdir = "images"  # image folder relative to dataset_dir ("" = dataset_dir itself)
    split_file = ""  # split file name, e.g. "split_zhou_DescribableTextures.json"
    raw_files: Tuple[str, ...] = ()  # annotation files (relative to dataset_dir) build_split needs

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        name = cls.__name__
        image_dir = os.path.join(dataset_dir, cls.image_subdir) if cls.image_subdir else dataset_dir
        cls.require_dir(image_dir, "image folder")
        split_path = os.path.join(dataset_dir, cls.split_file)
        if os.path.isfile(split_path):
            return read_split_json(split_path, image_dir, name)
        absent = [f for f in cls.raw_files if not os.path.exists(os.path.join(dataset_dir, f))]
        if absent:
            raise cls.missing(
                f"split file (and the raw annotations to build it: {', '.join(absent)})", split_path
            )
        if not build:
            return None
        logger.warning(
            "%s: %s not found; building a new split from the raw data. It differs from the "
            "published split: download %s to compare with published results.",
            name,
            split_path,
            cls.split_file,
        )
        splits = cls.build_split(dataset_dir, image_dir)
        write_split_json(splits, split_path, image_dir)
        return splits

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        """Build train/val/test from the raw annotations (default: a class-per-folder tree)."""
        return split_groups(class_folder_groups(image_dir, cls.__name__), cls.__name__)
