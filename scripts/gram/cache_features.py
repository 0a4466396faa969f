#!/usr/bin/env python
"""Encode image-caption pairs once with a frozen CLIP, into a resumable feature cache.

    python scripts/gram/cache_features.py MANIFEST --out DIR
        [--clip-checkpoint FILE | --backbone ViT-B/16] [--clip-cache DIR]
        [--batch-size 256] [--device cpu|cuda] [--workers N]

MANIFEST is a ``path<TAB>caption`` file or an img2dataset ``files`` folder
(``datasets/image_captions.py``). DIR receives ``index.json`` and ``features/shard_*.pt``
(``trainers/gram/features.py``). Run the same command again after an interruption: it encodes
only the missing shards, and refuses a DIR made from another manifest, CLIP or batch size.
Exit status 2 with one ``error:`` line on bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo's packages, from any cwd
import torch  # noqa: E402

from datasets.image_captions import ManifestError, read_image_captions  # noqa: E402
from trainers.dpl_core.clip_loader import CLIPLoadError, load_clip, resolve_checkpoint  # noqa: E402
from trainers.dpl_core.run_folder import sha256_file  # noqa: E402
from trainers.gram.features import DEFAULT_BATCH_SIZE, FeatureCacheError, cache_features  # noqa: E402

logger = logging.getLogger("cache_features")


def main(argv: Sequence[str] | None = None) -> int:
    """Build or finish the cache; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", metavar="MANIFEST", help="path<TAB>caption file, or an img2dataset output folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="feature cache folder (created, or continued)")
    clip_source = parser.add_mutually_exclusive_group()
    clip_source.add_argument("--clip-checkpoint", metavar="FILE", help="local CLIP weights (JIT archive or state dict)")
    clip_source.add_argument(
        "--backbone", default="ViT-B/16", help="OpenAI CLIP name, looked up in --clip-cache (default ViT-B/16)"
    )
    parser.add_argument("--clip-cache", metavar="DIR", help="CLIP cache folder (default ~/.cache/clip)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"pairs per forward pass (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where CLIP runs (default: cuda when available)")
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="image-decoding processes (default: up to 8)"
    )
    args = parser.parse_args(argv)
    # Importing Dassl (the datasets package registers its readers there) runs
    # logging.disable(logging.WARNING), which would hide this script's progress lines.
    logging.disable(logging.NOTSET)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be >= 1 and --workers >= 0")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch finds no CUDA device", file=sys.stderr)
        return 2
    try:
        pairs = read_image_captions(args.manifest)
        checkpoint = resolve_checkpoint(args.backbone, args.clip_checkpoint, args.clip_cache)
        model = load_clip(args.backbone, checkpoint).to(device)
        index = cache_features(
            args.out,
            pairs.paths,
            pairs.captions,
            model,
            manifest_sha256=pairs.sha256(),
            clip_sha256=sha256_file(checkpoint),
            batch_size=args.batch_size,
            num_workers=args.workers,
        )
    except CLIPLoadError as error:
        # The loader's hints name train.py's config key; this script's option is --clip-checkpoint.
        print(f"error: {error} (here: --clip-checkpoint FILE)", file=sys.stderr)
        return 2
    except (ManifestError, FeatureCacheError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    megabytes = 2 * index.num_pairs * index.embed_dim * 2 / 1e6  # two fp16 matrices
    logger.info(
        "Feature cache %s: %d pairs, %d-dim image and text features (%.2f MB)",
        args.out,
        index.num_pairs,
        index.embed_dim,
        megabytes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
