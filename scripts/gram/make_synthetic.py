#!/usr/bin/env python
"""Write a small synthetic image-caption manifest for GRAM's demo and tests.

    python scripts/gram/make_synthetic.py DIR [--pairs 96] [--seed 0]

Writes ``DIR/images/*.png`` (6 topics x 2 visual styles, see
``datasets/image_captions.py:write_synthetic_manifest``) and ``DIR/manifest.tsv``, whose path
it prints. Exit status 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo's packages, from any cwd
from datasets.image_captions import write_synthetic_manifest  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Write the manifest; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", metavar="DIR", help="folder to write images/ and manifest.tsv into")
    parser.add_argument("--pairs", type=int, default=96, help="image-caption pairs to write (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="seed of images and captions (default 0)")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    print(write_synthetic_manifest(args.folder, pairs=args.pairs, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
