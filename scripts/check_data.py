#!/usr/bin/env python
"""Report which of the 15 CoOp benchmark datasets are present and complete under DATA.

    python scripts/check_data.py [DATA] [--require EuroSAT DescribableTextures] [--skip-image-check]

DATA defaults to ``$DATA``. For each dataset the table shows its status, classes and images per
split, read with the same code and the same checks as the readers, without writing anything:

- ``complete``: the split (or ImageNet's folders, or a test set's folders) is readable and every
  listed image exists;
- ``incomplete``: the folder exists but something is missing (listed below the table);
- ``no split yet``: the split file is absent but the raw annotations are present, so the reader
  would build a new split that differs from the published one;
- ``missing``: no folder.

Exit status 1 when a dataset named with ``--require`` is not complete, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's datasets/, from any cwd
import datasets  # noqa: E402  (registers the readers)
from datasets.coop_format import DataReport  # noqa: E402


def table_row(report: DataReport, reader: type, root: str) -> List[object]:
    """One table row: name, status, classes, train/val/test sizes (``-`` when unknown), folder."""
    sizes = report.sizes
    val = sizes.get("val", "-")
    if sizes and reader.val_is_test:
        val = "= test"
    return [
        report.name,
        report.status,
        "-" if report.classes is None else report.classes,
        sizes.get("train", "-"),
        val,
        sizes.get("test", "-"),
        os.path.relpath(report.path, root),
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data",
        nargs="?",
        default=os.environ.get("DATA"),
        help="folder holding the datasets (default: $DATA)",
    )
    parser.add_argument(
        "--require",
        nargs="+",
        default=[],
        metavar="NAME",
        help="exit with status 1 unless these datasets (registry names, e.g. EuroSAT) are complete",
    )
    parser.add_argument(
        "--skip-image-check",
        action="store_true",
        help="do not check that every listed image exists (faster)",
    )
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("give DATA (the folder holding the datasets) or set $DATA")
    root = os.path.abspath(os.path.expanduser(args.data))
    if not os.path.isdir(root):
        parser.error(f"DATA folder not found: {root}")
    known = {reader.__name__.lower(): reader.__name__ for reader in datasets.BENCHMARKS}
    unknown = [name for name in args.require if name.lower() not in known]
    if unknown:
        parser.error(
            f"unknown dataset {', '.join(unknown)}; choose from {', '.join(known.values())}"
        )
    required = {known[name.lower()] for name in args.require}

    reports = [
        reader.inspect(root, check_images=not args.skip_image_check)
        for reader in datasets.BENCHMARKS
    ]
    rows = [table_row(report, reader, root) for report, reader in zip(reports, datasets.BENCHMARKS)]
    print(f"Datasets under {root}\n")
    print(
        tabulate(rows, headers=["dataset", "status", "classes", "train", "val", "test", "folder"])
    )
    problems = [report for report in reports if report.problems]
    if problems:
        print("\nWhat is missing:")
        for report in problems:
            for problem in report.problems:
                print("- " + problem.replace("\n", "\n  "))
    failed = [
        report.name for report in reports if report.name in required and report.status != "complete"
    ]
    if failed:
        print(f"\nRequired but not complete: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
