#!/usr/bin/env python
"""Cluster a feature cache into GRAM's topic / visual-mode hierarchy (CHC).

    python scripts/gram/cluster.py FEATURES_DIR --out hierarchy.json
        [--topics 200] [--modes 4] [--min-leaf 128] [--held-out 0.05] [--seed 0]

Text features into ``--topics`` spherical k-means topics, each topic's image features into
``--modes`` visual modes; leaves under ``--min-leaf`` pairs are dropped (the default 128 is
2 x (support + query) for GRAM's 32 + 32), and whole topics holding ``--held-out`` of the
leaves are set aside for meta-validation (``trainers/gram/hierarchy.py``). The same seed and
cache give the same file. Exit status 2 with one ``error:`` line on bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo's packages, from any cwd
from trainers.gram.features import FeatureCacheError, index_sha256, load_features  # noqa: E402
from trainers.gram.hierarchy import HierarchyConfig, HierarchyError, build_hierarchy  # noqa: E402

logger = logging.getLogger("cluster")
DEFAULTS = HierarchyConfig()


def main(argv: Sequence[str] | None = None) -> int:
    """Cluster and write the hierarchy; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("features", metavar="FEATURES_DIR", help="a complete cache of scripts/gram/cache_features.py")
    parser.add_argument("--out", required=True, metavar="FILE", help="hierarchy JSON to write")
    parser.add_argument(
        "--topics", type=int, default=DEFAULTS.topics, help=f"K1, text topics (default {DEFAULTS.topics})"
    )
    parser.add_argument(
        "--modes", type=int, default=DEFAULTS.modes, help=f"K2, visual modes per topic (default {DEFAULTS.modes})"
    )
    parser.add_argument(
        "--min-leaf", type=int, default=DEFAULTS.min_leaf, help=f"smallest leaf kept (default {DEFAULTS.min_leaf})"
    )
    parser.add_argument(
        "--held-out",
        type=float,
        default=DEFAULTS.held_out,
        help=f"share of leaves for meta-validation (default {DEFAULTS.held_out})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help=f"clustering and held-out seed (default {DEFAULTS.seed})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = HierarchyConfig(
            topics=args.topics,
            modes=args.modes,
            min_leaf=args.min_leaf,
            held_out=args.held_out,
            seed=args.seed,
            features_sha256=index_sha256(args.features),
        )
        image, text = load_features(args.features)
        hierarchy = build_hierarchy(image, text, config)
    except (FeatureCacheError, HierarchyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hierarchy.save(args.out)
    logger.info(
        "Wrote %s: %d train and %d held-out leaves",
        args.out,
        len(hierarchy.split("train")),
        len(hierarchy.split("val")),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
