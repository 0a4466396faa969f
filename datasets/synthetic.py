"""A small generated dataset so the whole pipeline runs anywhere without downloads.

Six classes of coloured shapes on noisy backgrounds, 64x64 PNGs, written on first use under
``<DATASET.ROOT>/synthetic/`` in CoOp's split-json layout (``images/<class>/*.png`` +
``split_zhou_Synthetic.json``). Generation uses its own seeded generator, so the files are the
same on every machine and the global ``random`` state (which few-shot sampling consumes) is
untouched. Each class has its own colour *and* shape, and the class names are plain English a
CLIP tokenizer knows; position, size, rotation, colour and background are jittered so the task
is learnable without being constant.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import tempfile
from typing import Optional, Tuple

from dassl.data.datasets import DATASET_REGISTRY
from PIL import Image, ImageDraw

from trainers.dpl_core.run_folder import umask_mode

from .coop_format import Record, SplitJsonDataset, Splits, write_split_json

logger = logging.getLogger(__name__)

RGB = Tuple[int, int, int]
# (class name, base colour, shape); the folder name is the class name with "_" for " ".
CLASSES: Tuple[Tuple[str, RGB, str], ...] = (
    ("red circle", (220, 40, 40), "circle"),
    ("green square", (40, 170, 60), "square"),
    ("blue triangle", (40, 90, 230), "triangle"),
    ("yellow star", (240, 205, 40), "star"),
    ("purple cross", (150, 60, 190), "cross"),
    ("orange diamond", (245, 140, 30), "diamond"),
)
SPLIT_SIZES = {"train": 16, "val": 4, "test": 8}  # images per class
IMAGE_SIZE = 64  # pixels per side
SEED = 0  # of the generator's own random.Random
SPLIT_FILE = "split_zhou_Synthetic.json"

# Polygon outlines as (radius factor, angle offset in turns) per vertex, around the centre.
_OUTLINES = {
    "square": [(1.0, k / 4 + 1 / 8) for k in range(4)],
    "triangle": [(1.0, k / 3 + 1 / 4) for k in range(3)],
    "star": [(1.0 if k % 2 == 0 else 0.45, k / 10 + 1 / 4) for k in range(10)],
    "diamond": [
        (1.0, 0.25),
        (0.55, 0.5),
        (1.0, 0.75),
        (0.55, 0.0),
    ],  # elongated: not a rotated square
    # A plus sign: 12 corners of arms of half-width 0.3 (radius and angle of each corner).
    "cross": [
        (math.hypot(x, y), math.atan2(y, x) / (2 * math.pi))
        for x, y in [
            (0.3, 1),
            (0.3, 0.3),
            (1, 0.3),
            (1, -0.3),
            (0.3, -0.3),
            (0.3, -1),
            (-0.3, -1),
            (-0.3, -0.3),
            (-1, -0.3),
            (-1, 0.3),
            (-0.3, 0.3),
            (-0.3, 1),
        ]
    ],
}


def _noise(rng: random.Random, size: int) -> Image.Image:
    """An RGB image of uniform random bytes."""
    n_bytes = 3 * size * size
    return Image.frombytes(
        "RGB", (size, size), rng.getrandbits(8 * n_bytes).to_bytes(n_bytes, "little")
    )


def draw_shape_image(
    rng: random.Random, colour: RGB, shape: str, size: int = IMAGE_SIZE
) -> Image.Image:
    """One ``size`` x ``size`` RGB image: a jittered ``shape`` in a jittered ``colour`` on noise."""
    grey = rng.randint(70, 190)
    image = Image.blend(Image.new("RGB", (size, size), (grey, grey, grey)), _noise(rng, size), 0.3)
    radius = rng.uniform(0.22, 0.36) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    turn = rng.uniform(-25, 25) / 360  # small rotations keep squares and diamonds apart
    fill = tuple(min(255, max(0, c + rng.randint(-35, 35))) for c in colour)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    else:
        points = [
            (
                cx + r * radius * math.cos(2 * math.pi * (a + turn)),
                cy - r * radius * math.sin(2 * math.pi * (a + turn)),
            )
            for r, a in _OUTLINES[shape]
        ]
        draw.polygon(points, fill=fill)
    return Image.blend(image, _noise(rng, size), 0.12)  # noise over the shape as well


def generate_synthetic(dataset_dir: str) -> None:
    """Write the synthetic dataset to ``dataset_dir`` (which must not exist).

    Everything is written into a hidden temporary folder next to it, which is renamed into
    place at the end: an interrupted generation never looks like a complete dataset. If another
    process finishes first, its copy (identical) is kept.
    """
    parent = os.path.dirname(dataset_dir)
    os.makedirs(parent, exist_ok=True)
    logger.info("Generating the synthetic dataset in %s", dataset_dir)
    tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
    try:
        os.chmod(tmp, umask_mode(0o777))
        rng = random.Random(SEED)
        image_dir = os.path.join(tmp, "images")
        splits: Splits = {name: [] for name in SPLIT_SIZES}
        for label, (classname, colour, shape) in enumerate(CLASSES):
            folder = os.path.join(image_dir, classname.replace(" ", "_"))
            os.makedirs(folder)
            for split, count in SPLIT_SIZES.items():
                for index in range(count):
                    impath = os.path.join(folder, f"{split}_{index:03d}.png")
                    draw_shape_image(rng, colour, shape).save(impath)
                    splits[split].append(Record(impath, label, classname))
        write_split_json(splits, os.path.join(tmp, SPLIT_FILE), image_dir)
        os.rename(tmp, dataset_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE)):
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@DATASET_REGISTRY.register()
class Synthetic(SplitJsonDataset):
    """Generated coloured shapes: ``synthetic/images/<class>/*.png`` + the split file."""

    dataset_dir = "synthetic"
    image_subdir = "images"
    split_file = SPLIT_FILE
    layout = f"$DATA/synthetic/ with images/<class>/*.png and {SPLIT_FILE}"
    instructions = "it is generated on first use: delete the folder to generate it again"

    @classmethod
    def locate(cls, root: str, build: bool) -> str:
        path = os.path.join(root, cls.dataset_dir)
        if build and not os.path.exists(path):
            generate_synthetic(path)
        return super().locate(root, build)

    @classmethod
    def read_records(cls, dataset_dir: str, build: bool) -> Optional[Splits]:
        split_path = os.path.join(dataset_dir, cls.split_file)
        if not os.path.isfile(split_path):  # never built from "raw" folders: the split is generated
            raise cls.missing("split file", split_path)
        return super().read_records(dataset_dir, build)
