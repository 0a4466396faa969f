"""A resumable on-disk cache of frozen-CLIP features of image-caption pairs.

GRAM's meta-training data is encoded once: every pair's image through CLIP's image tower (on
CLIP's own preprocessing at the model's resolution) and its caption through the text tower
(``clip.tokenize(caption, truncate=True)``), each L2-normalised and stored in fp16. The cache
folder holds::

    index.json                 what the cache is of: the pairs' SHA-256, the CLIP checkpoint's
                               SHA-256, the number of pairs, the feature width, batch and shard sizes
    features/shard_00000.pt    {"image": [n, D] fp16, "text": [n, D] fp16} for pairs
    features/shard_00001.pt    [k * shard_size, (k + 1) * shard_size), written atomically
    ...

``index.json`` is written before the first shard and never changes, so its SHA-256
(:func:`index_sha256`) names the cache. A run that is cut off leaves only whole shards; run
again, it checks that the index matches the pairs, the CLIP checkpoint and the batch size, and
encodes only the missing shards. Every shard is encoded in the same batches whichever run
writes it, so the result equals an uninterrupted run's bit for bit (on the same device and
software). A folder made from other pairs or another CLIP is refused.

Imports torch, clip and PIL only (no Dassl): the pairs come in as ``(image path, caption)``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

# Before clip: trainers.dpl_core's __init__ silences the pkg_resources warning clip's import gives.
from trainers.dpl_core.run_folder import atomic_write, sha256_file, write_json  # isort:skip

import clip
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
SHARD_DIR = "features"
FORMAT_VERSION = 1
DEFAULT_BATCH_SIZE = 256
DEFAULT_SHARD_SIZE = 8192  # pairs per shard: 16 MB of fp16 at D = 512, the most a cut-off run loses


class FeatureCacheError(ValueError):
    """A feature cache folder is of other data, incomplete, or unreadable."""


@dataclass(frozen=True)
class FeatureIndex:
    """The contents of ``index.json``: what a feature cache holds and how it was made.

    Attributes:
        manifest_sha256: the encoded pairs' SHA-256 (``ImageCaptions.sha256()`` of
            ``datasets/image_captions.py``: of the manifest's pairs, not its comments).
        clip_sha256: SHA-256 of the CLIP checkpoint file.
        num_pairs: N, the number of pairs (rows of both feature matrices).
        embed_dim: D, CLIP's joint embedding width.
        resolution: the image tower's input resolution, that images were preprocessed to.
        batch_size: pairs per forward pass (part of the result: batching changes the last bits).
        shard_size: pairs per shard file (the last shard may hold fewer).
        version: the folder format's version.
    """

    manifest_sha256: str
    clip_sha256: str
    num_pairs: int
    embed_dim: int
    resolution: int
    batch_size: int
    shard_size: int
    version: int = FORMAT_VERSION

    @property
    def num_shards(self) -> int:
        return -(-self.num_pairs // self.shard_size)

    def shard_range(self, shard: int) -> tuple[int, int]:
        """``(start, stop)``: the pairs shard ``shard`` holds."""
        return shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_pairs)


def shard_path(folder: str | os.PathLike, shard: int) -> str:
    """Path of shard number ``shard`` in cache ``folder``."""
    return os.path.join(os.fspath(folder), SHARD_DIR, f"shard_{shard:05d}.pt")


def read_index(folder: str | os.PathLike) -> FeatureIndex:
    """The :class:`FeatureIndex` of cache ``folder``.

    Raises:
        FeatureCacheError: no readable ``index.json`` there, or one of another format.
    """
    path = os.path.join(os.fspath(folder), INDEX_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise FeatureCacheError(
            f"{path} not found: not a feature cache (make one with scripts/gram/cache_features.py)"
        ) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FeatureCacheError(f"{path} is not valid JSON: {error}") from error
    fields = set(FeatureIndex.__dataclass_fields__)
    if not isinstance(data, dict) or set(data) != fields or data.get("version") != FORMAT_VERSION:
        raise FeatureCacheError(
            f"{path} is not a version-{FORMAT_VERSION} feature index: expected exactly the keys {sorted(fields)}"
        )
    return FeatureIndex(**data)


def index_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 of cache ``folder``'s ``index.json``: names the cache (a hierarchy records it)."""
    read_index(folder)  # refuse a folder that is not a cache with the clear message
    return sha256_file(os.path.join(os.fspath(folder), INDEX_FILE))


def missing_shards(folder: str | os.PathLike, index: FeatureIndex) -> list[int]:
    """Shard numbers of ``index`` whose file is not (yet) in ``folder``."""
    return [shard for shard in range(index.num_shards) if not os.path.isfile(shard_path(folder, shard))]


def clip_preprocess(resolution: int) -> Callable[[Image.Image], Tensor]:
    """CLIP's image preprocessing for ``resolution``: bicubic resize of the short side, centre
    crop, RGB, CLIP's mean/std normalisation; gives a [3, resolution, resolution] float tensor."""
    # clip.load returns this transform only beside a model it loads itself; both OpenAI's package
    # and MaPLe's copy define it under this name.
    return clip.clip._transform(resolution)


class _ImageFiles(torch.utils.data.Dataset):
    """Preprocessed images of ``paths``; an unreadable file gives its error text, not a raise,
    so that the main process can stop with one line (a worker's exception arrives wrapped)."""

    def __init__(self, paths: Sequence[str], preprocess: Callable[[Image.Image], Tensor]) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor | None, str | None]:
        try:
            with Image.open(self.paths[index]) as image:
                return self.preprocess(image), None
        except Exception as error:  # noqa: BLE001  (PIL raises many types for a bad file)
            path = self.paths[index]
            message = " ".join(str(error).replace(f" {path!r}", "").split())  # the path leads the line already
            return None, f"cannot read image {path}: {type(error).__name__}" + (f": {message}" if message else "")


def _collate(items: list[tuple[Tensor | None, str | None]]) -> tuple[Tensor | None, str | None]:
    errors = [error for _, error in items if error]
    if errors:
        return None, errors[0]
    return torch.stack([image for image, _ in items]), None  # [batch, 3, H, W]


@torch.no_grad()
def encode_pairs(
    model: nn.Module,
    images: Tensor,
    captions: Sequence[str],
) -> tuple[Tensor, Tensor]:
    """L2-normalised CLIP features of one batch, in fp16.

    Args:
        model: CLIP, on the device ``images`` are moved to.
        images: [n, 3, H, W] preprocessed images.
        captions: n captions; longer than CLIP's context they are truncated (EOT kept last).

    Returns:
        ``(image, text)``, each [n, D] fp16 on the CPU, rows of unit norm (normalised in fp32).
    """
    device = next(model.parameters()).device
    tokens = clip.tokenize(list(captions), truncate=True).to(device)  # [n, 77]
    image = model.encode_image(images.to(device, dtype=next(model.visual.parameters()).dtype)).float()
    text = model.encode_text(tokens).float()
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return image.half().cpu(), text.half().cpu()


def cache_features(
    folder: str | os.PathLike,
    image_paths: Sequence[str],
    captions: Sequence[str],
    model: nn.Module,
    *,
    manifest_sha256: str,
    clip_sha256: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureIndex:
    """Encode every pair into cache ``folder``, or finish a cache that a cut-off run left.

    Args:
        folder: the cache folder (created if needed).
        image_paths: N image files.
        captions: N captions, in the same order.
        model: frozen CLIP (eval mode) on the device to encode on.
        manifest_sha256: identity of the pairs (``ImageCaptions.sha256()``).
        clip_sha256: SHA-256 of the CLIP checkpoint file the model was loaded from.
        batch_size: pairs per forward pass.
        shard_size: pairs per shard file; a multiple of ``batch_size`` keeps batches full.
        num_workers: DataLoader processes decoding images (0: in this process).
        progress: show a tqdm bar over pairs.

    Returns:
        The cache's index.

    Raises:
        FeatureCacheError: ``folder`` is a cache of other pairs, another CLIP, or another batch
            or shard size; or an image cannot be read.
        ValueError: mismatched lengths, no pairs, or sizes below 1.
    """
    if len(image_paths) != len(captions):
        raise ValueError(f"cache_features: {len(image_paths)} image paths but {len(captions)} captions")
    if not image_paths:
        raise ValueError("cache_features: no pairs to encode")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"cache_features: batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    model.eval()
    resolution = model.visual.input_resolution
    index = FeatureIndex(
        manifest_sha256=manifest_sha256,
        clip_sha256=clip_sha256,
        num_pairs=len(image_paths),
        embed_dim=model.text_projection.shape[1],
        resolution=resolution,
        batch_size=batch_size,
        shard_size=shard_size,
    )
    folder = os.fspath(folder)
    if os.path.isfile(os.path.join(folder, INDEX_FILE)):
        _check_same_cache(folder, read_index(folder), index)
    else:
        write_json(os.path.join(folder, INDEX_FILE), asdict(index))
    os.makedirs(os.path.join(folder, SHARD_DIR), exist_ok=True)
    _remove_partial_shards(folder)

    todo = missing_shards(folder, index)
    done_pairs = index.num_pairs - sum(stop - start for start, stop in map(index.shard_range, todo))
    if done_pairs:
        logger.info("Feature cache %s: %d of %d pairs already encoded, continuing", folder, done_pairs, index.num_pairs)
    preprocess = clip_preprocess(resolution)
    with tqdm(
        total=index.num_pairs, initial=done_pairs, unit="pair", desc="CLIP features", disable=not progress
    ) as bar:
        for shard in todo:
            start, stop = index.shard_range(shard)
            loader = torch.utils.data.DataLoader(
                _ImageFiles(image_paths[start:stop], preprocess),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=_collate,
            )
            image_parts, text_parts = [], []
            for offset, (images, error) in zip(range(start, stop, batch_size), loader):
                if error:
                    raise FeatureCacheError(error)
                image, text = encode_pairs(model, images, captions[offset : offset + len(images)])
                image_parts.append(image)
                text_parts.append(text)
                bar.update(len(images))
            shard_data = {"start": start, "image": torch.cat(image_parts), "text": torch.cat(text_parts)}
            atomic_write(shard_path(folder, shard), functools.partial(torch.save, shard_data), binary=True)
    return index


def _remove_partial_shards(folder: str) -> None:
    """Delete the temporary files of shards whose writing a killed run left unfinished."""
    shard_dir = os.path.join(folder, SHARD_DIR)
    for name in os.listdir(shard_dir):
        if name.startswith(".shard_") and name.endswith(".tmp"):  # atomic_write's temporary names
            os.remove(os.path.join(shard_dir, name))


def _check_same_cache(folder: str, found: FeatureIndex, wanted: FeatureIndex) -> None:
    """Refuse to continue a cache made from other pairs, another CLIP or other sizes."""
    made_with = {
        "manifest_sha256": "another manifest (SHA-256 of its pairs)",
        "clip_sha256": "another CLIP checkpoint (SHA-256)",
        "num_pairs": "another number of pairs",
        "embed_dim": "a CLIP of another embedding width",
        "resolution": "a CLIP of another image resolution",
        "batch_size": "another batch size",
        "shard_size": "another shard size",
    }
    for key, meaning in made_with.items():
        old, new = getattr(found, key), getattr(wanted, key)
        if old != new:
            shown_old, shown_new = (f"{v[:12]}..." if isinstance(v, str) else v for v in (old, new))
            raise FeatureCacheError(
                f"{folder} holds features made with {meaning}: {shown_old} there, {shown_new} now; "
                "use another output folder, or delete this one to encode anew"
            )


def load_features(folder: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """All features of a complete cache.

    Returns:
        ``(image, text)``, each [N, D] fp16 on the CPU, row i for pair i of the manifest.

    Raises:
        FeatureCacheError: not a cache, shards missing (the run was cut off), or a shard that
            does not match the index.
    """
    index = read_index(folder)
    missing = missing_shards(folder, index)
    if missing:
        raise FeatureCacheError(
            f"feature cache {os.fspath(folder)} is incomplete: {len(missing)} of {index.num_shards} shards missing "
            f"(first: {os.path.basename(shard_path(folder, missing[0]))}); run cache_features.py again to finish it"
        )
    # Filled shard by shard rather than concatenated: at CC3M size a second copy is gigabytes.
    image = torch.empty(index.num_pairs, index.embed_dim, dtype=torch.float16)
    text = torch.empty(index.num_pairs, index.embed_dim, dtype=torch.float16)
    for shard in range(index.num_shards):
        start, stop = index.shard_range(shard)
        data = _read_shard(shard_path(folder, shard))
        expected = (stop - start, index.embed_dim)
        for name in ("image", "text"):
            tensor = data.get(name)
            if (
                data.get("start") != start
                or not isinstance(tensor, Tensor)
                or tuple(tensor.shape) != expected
                or tensor.dtype != torch.float16
            ):
                raise FeatureCacheError(
                    f"{shard_path(folder, shard)} does not match {INDEX_FILE}: expected {name} features of pairs "
                    f"{start}..{stop - 1} as fp16 {list(expected)}; delete the shard and run cache_features.py again"
                )
        image[start:stop] = data["image"]
        text[start:stop] = data["text"]
    return image, text


def _read_shard(path: str) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a foreign or damaged file
        raise FeatureCacheError(
            f"cannot read feature shard {path}: {error}; delete it and run cache_features.py again"
        ) from error
    return data if isinstance(data, dict) else {}
