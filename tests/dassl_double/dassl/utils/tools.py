"""Mirrors ``dassl.utils.tools``: file, seed, image and environment helpers."""

import errno
import json
import os
import os.path as osp
import random
import warnings
from difflib import SequenceMatcher
from typing import Any, Optional, Sequence

import numpy as np
import PIL
import torch
from PIL import Image

__all__ = [
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "set_random_seed",
    "read_image",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) unless it exists, as Dassl's ``mkdir_if_missing``."""
    if osp.exists(dirname):
        return
    try:
        os.makedirs(dirname)
    except OSError as err:
        # Another process may create it between the check and makedirs.
        if err.errno != errno.EEXIST:
            raise


def check_isfile(fpath: str) -> bool:
    """Return whether ``fpath`` is a file, warning ``No file found at "..."`` if not, as in Dassl."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath: str) -> Any:
    """Load a JSON file, as Dassl's ``read_json``."""
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as JSON with indent 4, creating the parent directory, as Dassl's ``write_json``."""
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and all GPUs), as Dassl's ``set_random_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_image(path: str) -> Image.Image:
    """Open an image with PIL and convert it to RGB, as Dassl's ``read_image``."""
    return Image.open(path).convert("RGB")


def collect_env_info() -> str:
    """Return torch's pretty environment report plus the Pillow version, as Dassl's ``collect_env_info``."""
    from torch.utils.collect_env import get_pretty_env_info

    return get_pretty_env_info() + f"\n        Pillow ({PIL.__version__})"


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """List the entries of ``path`` not starting with a dot, optionally sorted, as Dassl's helper."""
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: Sequence[str]) -> Optional[str]:
    """Return the candidate in ``b`` most similar to ``a`` (last one on ties), as in Dassl."""
    best_ratio = 0.0
    chosen = None
    for candidate in b:
        ratio = SequenceMatcher(None, a, candidate).ratio()
        if ratio >= best_ratio:
            best_ratio, chosen = ratio, candidate
    return chosen


def check_availability(requested: str, available: Sequence[str]) -> None:
    """Raise ``ValueError`` with a did-you-mean hint when ``requested`` is not in ``available``, as in Dassl."""
    if requested in available:
        return
    suggestion = get_most_similar_str_to_a_from_b(requested, available)
    raise ValueError(
        f"The requested one is expected to belong to {available}, "
        f"but got [{requested}] (do you mean [{suggestion}]?)"
    )


def tolist_if_not(x: Any) -> list:
    """Wrap ``x`` in a list unless it already is one, as Dassl's ``tolist_if_not``."""
    return x if isinstance(x, list) else [x]
