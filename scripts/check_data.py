#!/usr/bin/env python
"""Report which of the 15 CoOp benchmark datasets are present and complete under DATA.

    python scripts/check_data.py [DATA] [--require EuroSAT DescribableTextures]
                                 [--skip-image-check | --open-images [--workers N]]

DATA defaults to ``$DATA``. For each dataset the table shows its status, classes and images per
split, read with the same code and the same checks as the readers, without writing anything:

- ``complete``: the split (or ImageNet's folders, or a test set's folders) is readable and every
  listed image exists;
- ``incomplete``: the folder exists but something is missing (listed below the table), or, with
  ``--open-images``, a listed image cannot be decoded;
- ``no split yet``: the split file is absent but the raw annotations are present, so the reader
  would build a new split that differs from the published one;
- ``missing``: no folder.

``--open-images`` also opens and fully decodes every listed image as Dassl's ``read_image`` does
(``PIL.Image.open(path).convert("RGB")``), in a thread pool, and lists each one that fails with
its error: a truncated or corrupt file otherwise passes the existence check and only fails in
the middle of training. It reads every image, so it takes about as long as one pass of data
loading.

Exit status 1 when a dataset named with ``--require`` is not complete, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple

from PIL import Image
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's datasets/, from any cwd
import datasets  # noqa: E402  (registers the readers)
from datasets.coop_format import DatasetError, DataReport  # noqa: E402

MAX_UNREADABLE_LISTED = 20  # undecodable images listed per dataset; the rest are counted
BATCH = 256  # images handed to the thread pool at a time (bounds the pending futures)


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


def decode_error(path: str) -> Optional[str]:
    """None when ``path`` opens and decodes as Dassl's ``read_image`` reads it, else the error
    (type and message, on one line)."""
    try:
        with Image.open(path) as image:
            image.convert("RGB")  # convert() loads, i.e. decodes, the whole image first
    except Exception as err:  # noqa: BLE001  (any failure here is a failure in training)
        message = " ".join(str(err).replace(f" {path!r}", "").split())  # the path is on the line
        return f"{type(err).__name__}: {message}" if message else type(err).__name__
    return None


def undecodable(paths: Sequence[str], workers: int) -> Iterator[Tuple[str, str]]:
    """``(path, error)`` for each of ``paths`` that fails :func:`decode_error`, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), BATCH):
            batch = paths[start : start + BATCH]
            for path, error in zip(batch, pool.map(decode_error, batch)):
                if error is not None:
                    yield path, error


def format_undecodable(name: str, failures: Sequence[Tuple[str, str]], total: int) -> str:
    """``"<name>: N of M images cannot be decoded:"``, then one ``path: error`` line each, the
    first :data:`MAX_UNREADABLE_LISTED` of them and the count of the rest."""
    lines = [f"{path}: {error}" for path, error in failures[:MAX_UNREADABLE_LISTED]]
    if len(failures) > MAX_UNREADABLE_LISTED:
        lines.append(f"... and {len(failures) - MAX_UNREADABLE_LISTED} more")
    shown = "\n    ".join(lines)
    return f"{name}: {len(failures)} of {total} images cannot be decoded:\n    {shown}"


def open_images(report: DataReport, reader: type, root: str, workers: int) -> None:
    """Decode every image the dataset lists (once, whatever its splits) and record those that
    fail in ``report``, which then becomes ``incomplete``.

    The per-split records are read again with the reader's own ``read_records`` (nothing is
    written); images absent on disk are left out, the existence check reports them.
    """
    if not report.sizes:  # the records could not be read: nothing listed to open
        return
    try:
        records = reader.read_records(reader.locate(root, build=False), build=False)
    except DatasetError:  # already reported by inspect
        return
    if records is None:
        return
    listed = list(dict.fromkeys(r.impath for split in records.values() for r in split))
    present = [path for path in listed if os.path.isfile(path)]
    print(f"{report.name}: decoding {len(present)} images ...", file=sys.stderr, flush=True)
    failures = list(undecodable(present, workers))
    if failures:
        report.status = "incomplete"
        report.problems.append(format_undecodable(report.name, failures, len(present)))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    images = parser.add_mutually_exclusive_group()
    images.add_argument(
        "--skip-image-check",
        action="store_true",
        help="do not check that every listed image exists (faster)",
    )
    images.add_argument(
        "--open-images",
        action="store_true",
        help="also open and fully decode every listed image (as Dassl's read_image does) and list "
        "those that fail; reads all the data, so it is slow on the large datasets",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(32, os.cpu_count() or 1),
        metavar="N",
        help="threads decoding images with --open-images (default: the number of CPUs, at most 32)",
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
    if args.open_images:
        for report, reader in zip(reports, datasets.BENCHMARKS):
            open_images(report, reader, root, args.workers)
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
