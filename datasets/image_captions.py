"""Unlabeled image-caption pairs for GRAM's meta-training, read from local files.

Two layouts are accepted:

* a **manifest file**: one ``path<TAB>caption`` per line, UTF-8; relative paths are resolved
  against the manifest's folder; blank lines and lines starting with ``#`` are skipped; the
  caption is everything after the first tab, stripped.
* an **img2dataset folder** (``--output_format files``, as written for CC3M): shard folders
  ``00000/``, ``00001/``, ... each holding ``<key>.jpg`` (or ``.png``/``.webp``) with its
  caption in ``<key>.txt`` (and metadata in ``<key>.json``, not read). The per-shard
  ``.parquet`` index is not read: it needs pyarrow and lists failed downloads too, while the
  files on disk are exactly the successful ones. Pairs come in shard order, then key order.

Every pair's image must exist and its caption be non-empty; otherwise reading stops with one
line naming the file and line (:class:`ManifestError`). Neither layout needs Dassl.

:func:`write_synthetic_manifest` generates a small manifest with known structure (topics in
the captions, visual styles in the images) for tests and the demo.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # img2dataset's encode_format choices
EXPECTED_LINE = "expected 'path<TAB>caption'"


class ManifestError(ValueError):
    """An image-caption manifest or folder is missing, malformed, or points at missing files."""


@dataclass(frozen=True)
class ImageCaptions:
    """An ordered list of image-caption pairs.

    Attributes:
        source: the manifest file or img2dataset folder they were read from.
        root: the folder the pairs' relative paths are relative to.
        paths: absolute image paths, one per pair.
        captions: the captions, one per pair, stripped and non-empty.
    """

    source: str
    root: str
    paths: tuple[str, ...]
    captions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def sha256(self) -> str:
        """SHA-256 of the pairs written as a clean manifest (``relative path<TAB>caption\\n``,
        POSIX separators): it names the data, not the file, so edited comments or a moved
        folder keep it, and a changed, added or reordered pair changes it."""
        digest = hashlib.sha256()
        for path, caption in zip(self.paths, self.captions):
            relative = os.path.relpath(path, self.root).replace(os.sep, "/")
            digest.update(f"{relative}\t{caption}\n".encode("utf-8"))
        return digest.hexdigest()


def read_image_captions(source: str | os.PathLike) -> ImageCaptions:
    """Read a manifest file or an img2dataset ``files`` folder (see the module docstring).

    Raises:
        ManifestError: ``source`` missing; a line without a tab, with an empty path or an empty
            caption; an image (or caption file) missing; or no pairs at all.
    """
    source = os.path.abspath(os.fspath(source))
    if os.path.isdir(source):
        pairs = _read_img2dataset_folder(source)
        root = source
    elif os.path.isfile(source):
        pairs = _read_manifest(source)
        root = os.path.dirname(source)
    else:
        raise ManifestError(
            f"image-caption manifest not found: {source} ({EXPECTED_LINE} lines, or an img2dataset output folder)"
        )
    if not pairs:
        raise ManifestError(
            f"{source}: no image-caption pairs ({EXPECTED_LINE} lines; blank lines and '#' comments are skipped)"
            if os.path.isfile(source)
            else f"{source}: no image-caption pairs (expected shard folders 00000/ holding <key>.jpg + <key>.txt)"
        )
    paths, captions = zip(*pairs)
    logger.info("Read %d image-caption pairs from %s", len(paths), source)
    return ImageCaptions(source=source, root=root, paths=tuple(paths), captions=tuple(captions))


def _missing_error(where: str, path: str, missing: int) -> ManifestError:
    # One line for the first missing image and a count of the rest: a partial download can miss
    # thousands, and listing them all would bury the message.
    more = f" (and {missing - 1} more missing)" if missing > 1 else ""
    return ManifestError(f"{where}: image not found: {path}{more}")


def _read_manifest(manifest: str) -> list[tuple[str, str]]:
    """``(absolute image path, caption)`` per data line of a ``path<TAB>caption`` file."""
    folder = os.path.dirname(manifest)
    pairs: list[tuple[str, str]] = []
    first_missing: tuple[str, str] | None = None
    missing = 0
    with open(manifest, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{manifest} line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ManifestError(f"{where}: not UTF-8 text ({error.reason})") from error
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if "\t" not in line:
                raise ManifestError(f"{where}: no tab; {EXPECTED_LINE}, found {line[:80]!r}")
            path, caption = line.split("\t", 1)
            path, caption = path.strip(), caption.strip()
            if not path:
                raise ManifestError(f"{where}: empty image path; {EXPECTED_LINE}")
            if not caption:
                raise ManifestError(f"{where}: empty caption for {path}")
            image = os.path.normpath(os.path.join(folder, os.path.expanduser(path)))
            if not os.path.isfile(image):
                missing += 1
                first_missing = first_missing or (where, image)
            pairs.append((image, caption))
    if first_missing:
        raise _missing_error(*first_missing, missing)
    return pairs


def _read_img2dataset_folder(folder: str) -> list[tuple[str, str]]:
    """``(image path, caption)`` per key in img2dataset's shard folders (``00000/<key>.jpg``)."""
    shards = sorted(name for name in os.listdir(folder) if name.isdigit() and os.path.isdir(os.path.join(folder, name)))
    pairs: list[tuple[str, str]] = []
    first_missing: tuple[str, str] | None = None
    missing = 0
    for shard in shards:
        images: dict[str, str] = {}
        captions: set[str] = set()
        for name in os.listdir(os.path.join(folder, shard)):
            key, extension = os.path.splitext(name)
            if extension.lower() in IMAGE_EXTENSIONS:
                images[key] = name
            elif extension == ".txt":
                captions.add(key)
        for key in sorted(images.keys() | captions):
            caption_file = os.path.join(folder, shard, f"{key}.txt")
            if key not in images:
                # A caption whose image is gone: the download finished, the image was removed.
                missing += 1
                first_missing = first_missing or (caption_file, os.path.join(folder, shard, f"{key}.jpg"))
                continue
            image = os.path.join(folder, shard, images[key])
            if key not in captions:
                raise ManifestError(f"{image}: no caption file {key}.txt beside it (img2dataset writes one per image)")
            caption = _read_caption_file(caption_file)
            pairs.append((image, caption))
    if first_missing:
        raise _missing_error(*first_missing, missing)
    return pairs


def _read_caption_file(path: str) -> str:
    """The stripped caption of an img2dataset ``<key>.txt`` file; refused when empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            caption = handle.read().strip()
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path} line 1: not UTF-8 text ({error.reason})") from error
    if not caption:
        raise ManifestError(f"{path} line 1: empty caption")
    return caption


# --------------------------------------------------------------------------- synthetic data

# Six topics, each a few words that only its captions use. A caption is three of its topic's
# words in random order: every caption has the same token count, so even a random text tower
# (whose output also depends on where the end token sits) maps one topic's captions together.
SYNTHETIC_TOPICS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "puppy", "leash", "kennel"),
    "car": ("car", "wheel", "road", "engine"),
    "tree": ("tree", "leaf", "forest", "branch"),
    "boat": ("boat", "sail", "harbor", "wave"),
    "cake": ("cake", "candle", "frosting", "birthday"),
    "guitar": ("guitar", "string", "concert", "melody"),
}
# Two visual styles per topic, flat colour or a checkerboard. Captions never name the style,
# so the images of one text topic differ by style and image sub-clustering has modes to find.
# (Stripes in two directions would make three image groups, not two.)
SYNTHETIC_STYLES = ("flat", "checked")
_TOPIC_COLOURS = ((200, 60, 50), (50, 160, 70), (60, 90, 210), (230, 200, 50), (160, 70, 190), (240, 140, 40))
SYNTHETIC_IMAGE_SIZE = 64  # pixels per side; CLIP's preprocessing resizes to the model's resolution
MANIFEST_NAME = "manifest.tsv"


def synthetic_label(path: str | os.PathLike) -> tuple[str, str]:
    """``(topic, style)`` of an image written by :func:`write_synthetic_manifest`, read from its
    file name ``images/<index>_<topic>_<style>.png``."""
    _, topic, style = os.path.splitext(os.path.basename(path))[0].split("_")
    return topic, style


def write_synthetic_manifest(folder: str | os.PathLike, pairs: int = 96, seed: int = 0) -> str:
    """Write ``pairs`` small random images and their captions, with a manifest, under ``folder``.

    Pair ``i`` has topic ``i % 6`` (of :data:`SYNTHETIC_TOPICS`) and style ``(i // 6) % 2`` (of
    :data:`SYNTHETIC_STYLES`), so every (topic, style) leaf gets about ``pairs / 12`` pairs.
    Its image is ``images/<i>_<topic>_<style>.png`` (:func:`synthetic_label` reads it back):
    the topic's colour, flat or checked in squares of random size, with brightness jitter and
    pixel noise. Its caption is three of the topic's words in random order. The same ``seed``
    writes the same files; global random states are untouched.

    Returns:
        The manifest's path, ``<folder>/manifest.tsv``.

    Raises:
        ValueError: ``pairs`` < 1.
    """
    if pairs < 1:
        raise ValueError(f"write_synthetic_manifest: pairs must be at least 1, got {pairs}")
    rng = np.random.default_rng(seed)
    folder = os.fspath(folder)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    topics = list(SYNTHETIC_TOPICS)
    lines = [
        f"# {pairs} synthetic image-caption pairs (seed {seed}): {len(topics)} topics x {len(SYNTHETIC_STYLES)} styles"
    ]
    for index in range(pairs):
        topic_id, style_id = index % len(topics), (index // len(topics)) % len(SYNTHETIC_STYLES)
        topic, style = topics[topic_id], SYNTHETIC_STYLES[style_id]
        relative = f"images/{index:05d}_{topic}_{style}.png"
        image = _synthetic_image(rng, _TOPIC_COLOURS[topic_id], checked=style == "checked")
        image.save(os.path.join(folder, relative))
        words = SYNTHETIC_TOPICS[topic]
        caption = " ".join(words[i] for i in rng.permutation(len(words))[:3])
        lines.append(f"{relative}\t{caption}")
    manifest = os.path.join(folder, MANIFEST_NAME)
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return manifest


def _synthetic_image(rng: np.random.Generator, colour: Sequence[int], checked: bool) -> Image.Image:
    """A ``SYNTHETIC_IMAGE_SIZE`` square RGB image of ``colour``, flat or checked, with noise."""
    size = SYNTHETIC_IMAGE_SIZE
    scale = rng.uniform(0.8, 1.1)  # brightness jitter, so no two images of a leaf are equal
    pixels = np.broadcast_to(np.asarray(colour, dtype=np.float64) * scale, (size, size, 3)).copy()
    if checked:
        odd = (np.arange(size) // int(rng.integers(6, 11))) % 2 == 1  # [size] rows/columns in odd squares
        pixels[odd[:, None] ^ odd[None, :]] = 20  # dark squares
    pixels += rng.integers(-12, 13, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
