#!/usr/bin/env python
"""Tables of test accuracy over seeds from CoOp/MaPLe-style output trees.

Reads each ``seed<N>/`` folder's result by the one definition of a finished run
(``trainers/dpl_core/run_folder.py``: ``result.json`` for our runs, the Dassl log for the
host trainers' runs) and prints, per dataset and method, the mean and the sample standard
deviation (or the 95% confidence interval) over seeds, the average over datasets,
base/new/harmonic mean for base-to-new runs, and the difference to a reference method, taken
over the seeds both have. Seeds that are missing or whose runs did not finish are listed and
the cell is marked ``(done/expected)``: nothing is averaged over fewer seeds without saying so.

Recognised layouts below each root (a root is an ``output/`` folder, ours or one inside a
CoOp/MaPLe checkout; a checkout itself works too, its ``output/`` prefix is skipped)::

    few-shot       <dataset>/<trainer>/<cfg>_<K>shots[/<variant>...]/seed<N>
    base-to-new    base2new/{train_base,test_base,test_new}/<dataset>/shots_<K>/<trainer>/<cfg>[/<variant>...]/seed<N>
    cross-dataset  evaluation/<trainer>/<cfg>_<K>shots[/<variant>...]/<dataset>/seed<N>

A method is ``<trainer>/<cfg>[/<variant>...]``, e.g. ``DPL/vit_b16_ep40_batch4`` or
``CoOp/vit_b16_ep50/nctx16_cscFalse_ctpend`` (CoOp's few-shot script adds the variant level).
A baseline the DPL engine runs as a preset (a DPL config named for the method, e.g.
``DPL/maple_2ctx_depth9_ep5_batch4``) is named in the tables by what it runs and where, e.g.
``MaPLe 2ctx depth 9 (DPL engine, DPL/maple_2ctx_depth9_ep5_batch4)``, beside a host checkout's
own ``MaPLe/...`` runs, which keep their names; ``--methods`` and ``--reference`` take the method.
A DPL method whose config part ends in ``+gram`` (the launchers' folders with DPL_GRAM_FILE) is
that method trained from a GRAM meta-initialisation: it is named ``<X's name> + GRAM``, e.g.
``CoOp 16ctx + GRAM (DPL engine, DPL/coop_16ctx_vit_b16_ep50+gram)`` or
``DPL/vit_b16_ep40_batch4 + GRAM``, follows X's recipe and sorts right after X ('+' sorts before
letters, digits and '_').
A DPL method's recipe (``paper`` or ``reference`` when its config is named for one, e.g.
``DPL/vit_b16_paper_ep40_batch4``, ``original`` for a baseline preset, else ``ours``) is shown in
a Recipe column once a shown method follows a named recipe, and is in every JSON and CSV row, as
is the name the tables show (``label``).
Base accuracy comes from ``test_base`` (MaPLe's reproduce scripts) when that run finished,
otherwise from the test at the end of ``train_base``. Cross-dataset tables take the source
accuracy from the few-shot run of the same method on ``--source-dataset``.

Examples::

    python scripts/parse_results.py output
    python scripts/parse_results.py output ../MaPLe/output --methods DPL MaPLe 'VPT/*' \\
        --reference MaPLe --seeds 1 2 3 --ci --csv results.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

try:  # exact t quantiles when scipy is installed; a table and a series otherwise
    from scipy import stats as _scipy_stats
except ImportError:
    _scipy_stats = None

# The repository root: one folder up here, two in a CoOp/MaPLe checkout (scripts/dpl/).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "trainers" / "dpl_core").is_dir())
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainers.dpl_core.run_folder import folder_status  # noqa: E402

logger = logging.getLogger("parse_results")

FEWSHOT, BASE2NEW, CROSS = "fewshot", "base2new", "crossdataset"
BASE2NEW_SPLITS = ("train_base", "test_base", "test_new")
# The four ImageNet variants are the domain-generalisation targets of the cross-dataset protocol;
# the papers average them separately from the ten other target datasets.
DOMAIN_SHIFT = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
# Order of the papers' tables (CoOp/CoCoOp/MaPLe); unknown datasets follow alphabetically.
DATASET_ORDER = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", *DOMAIN_SHIFT,
)

SEED_DIR = re.compile(r"^seed(\d+)$")
SHOTS_CFG = re.compile(r"^(.+)_(\d+)shots$")
SHOTS_DIR = re.compile(r"^shots_(\d+)$")

# Two-sided 95% quantiles t_{0.975, df} of Student's t for df = 1..30 (computed numerically).
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.045230, 2.042272,
)
_Z975 = 1.959963984540054


class ResultsError(ValueError):
    """Bad input: a root that does not exist, ``--methods`` of which no pattern has runs, ..."""


# ----------------------------------------------------------------------------- statistics


def t975_fallback(df: int) -> float:
    """``t_{0.975, df}`` without scipy: the table up to df 30, then Cornish-Fisher.

    The expansion (Abramowitz & Stegun 26.7.5, four terms) is within 1e-6 of the exact value
    for df >= 20, so it takes over where the table ends.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if _scipy_stats is None:
        return t975_fallback(df)
    return float(_scipy_stats.t.ppf(0.975, df))


def harmonic_mean(base: float, new: float) -> float:
    """``HM = 2*B*N/(B+N)``, the base-to-new summary of CoCoOp and its successors."""
    if base + new == 0:
        return 0.0
    return 2 * base * new / (base + new)


@dataclass(frozen=True)
class Summary:
    """One table cell: statistics over the finished runs among the expected seeds.

    ``std`` is the sample standard deviation (ddof=1) and ``ci95`` the half-width of the 95%
    t-interval; both are None with fewer than two values. Derived cells (HM) carry no spread.
    """

    mean: float | None
    std: float | None
    ci95: float | None
    seeds: tuple[int, ...]
    expected: tuple[int, ...]
    values: tuple[float, ...] = ()

    @property
    def complete(self) -> bool:
        return set(self.expected) <= set(self.seeds)


def summarise(by_seed: dict[int, float], expected: Sequence[int]) -> Summary:
    """Mean, sample std and 95% CI of the accuracies of the expected seeds."""
    seeds = tuple(s for s in expected if s in by_seed)
    values = tuple(by_seed[s] for s in seeds)
    if not values:
        return Summary(None, None, None, (), tuple(expected))
    mean = float(np.mean(values))
    std = ci95 = None
    if len(values) > 1:
        std = float(np.std(values, ddof=1))
        ci95 = t975(len(values) - 1) * std / math.sqrt(len(values))
    return Summary(mean, std, ci95, seeds, tuple(expected), values)


def hm_summary(base: Summary, new: Summary) -> Summary:
    """HM from the mean base and mean new accuracies (as the papers do, not per seed)."""
    seeds = tuple(s for s in base.expected if s in base.seeds and s in new.seeds)
    if base.mean is None or new.mean is None:
        return Summary(None, None, None, seeds, base.expected)
    return Summary(harmonic_mean(base.mean, new.mean), None, None, seeds, base.expected)


@dataclass(frozen=True)
class Paired:
    """A method's and the reference's mean accuracy over the seeds both have: what a Δ compares.

    Means over different seed sets would add the seeds' difference to the methods' (one hard
    seed missing on one side moves that mean), so a Δ is taken on the common seeds only.
    """

    method: float
    reference: float
    seeds: tuple[int, ...]  # the common seeds
    same_seeds: bool  # both have exactly these seeds: the Δ is the difference of the shown means

    @property
    def delta(self) -> float:
        return self.method - self.reference


def paired(s: Summary, ref: Summary) -> Paired | None:
    """``s`` and ``ref`` on the seeds both have; None when they share no seed."""
    common = tuple(seed for seed in s.seeds if seed in ref.seeds)
    if not common:
        return None
    mine, theirs = dict(zip(s.seeds, s.values)), dict(zip(ref.seeds, ref.values))
    return Paired(float(np.mean([mine[x] for x in common])), float(np.mean([theirs[x] for x in common])),
                  common, set(s.seeds) == set(ref.seeds))


@dataclass(frozen=True)
class Delta:
    """One Δ cell: the value (None: nothing to compare) and the mark its text carries."""

    value: float | None
    mark: str = ""  # why the Δ is not the plain difference of the shown means, or why there is none
    seeds: tuple[int, ...] | None = None  # the common seeds it was computed on (one dataset, not HM)
    same_seeds: bool | None = None

    def text(self) -> str:
        if self.value is None:
            return self.mark
        return f"{self.value:+.2f}" + (f" {self.mark}" if self.mark else "")


def cell_delta(s: Summary, ref: Summary) -> Delta:
    """Δ of one cell on the seeds both have; marked with their number when the seed sets differ."""
    pair = paired(s, ref)
    if pair is None:
        return Delta(None, "— (no common seeds)" if s.mean is not None and ref.mean is not None else "")
    n = len(pair.seeds)
    mark = "" if pair.same_seeds else f"({n} common seed{'s' if n > 1 else ''})"
    return Delta(pair.delta, mark, pair.seeds, pair.same_seeds)


def hm_delta(base: Summary, new: Summary, ref_base: Summary, ref_new: Summary) -> Delta:
    """Δ HM: the HM of the base and new means over common seeds, method minus reference."""
    pb, pn = paired(base, ref_base), paired(new, ref_new)
    if pb is None or pn is None:
        have_all = all(x.mean is not None for x in (base, new, ref_base, ref_new))
        return Delta(None, "— (no common seeds)" if have_all else "")
    same = pb.same_seeds and pn.same_seeds
    value = harmonic_mean(pb.method, pn.method) - harmonic_mean(pb.reference, pn.reference)
    return Delta(value, "" if same else "(common seeds)", None, same)


def average_mark(n_datasets: int, total: int, same_seeds: bool) -> str:
    """The mark of an average's Δ: over fewer datasets than the table has, or over common seeds."""
    marks = []
    if n_datasets < total:
        marks.append(f"({n_datasets}/{total} datasets)")
    if not same_seeds:
        marks.append("(seed sets differ)")
    return " ".join(marks)


def delta_note(ref: str, base2new: bool) -> str:
    """The footnote that says what the Δ columns compare (``ref``: the reference's label)."""
    note = (f"Δ vs {ref} is taken over the seeds both the method and {ref} have; '(k common seeds)' marks a cell "
            "whose seed sets differ (its Δ is then not the difference of the shown means); an Average row's Δ "
            "compares the averages of those means over the datasets both have")
    if base2new:
        note += " (Δ HM: HM of those base and new means)"
    return note + "."


# ----------------------------------------------------------------------------- run folders


@dataclass(frozen=True)
class SeedRun:
    """The result of one seed folder, or why there is none."""

    folder: Path
    seed: int
    accuracy: float | None
    log: Path | None  # where the result was read: result.json, or a log of a host trainer's run
    kind: str  # train, eval, search, untested (finished without a test) or unfinished
    problem: str = ""


def read_seed_folder(folder: Path, seed: int) -> SeedRun:
    """The folder's result by the one definition of a finished run (``run_folder.folder_status``)."""
    status = folder_status(folder)
    kind = "untested" if status.state == "finished" and status.accuracy is None else status.kind
    problem = status.problem if status.state != "finished" else ""
    return SeedRun(folder, seed, status.accuracy, status.source, kind, problem)


# ----------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class RunKey:
    """Everything that identifies a run except its seed."""

    setting: str  # FEWSHOT, BASE2NEW or CROSS
    split: str  # one of BASE2NEW_SPLITS for base-to-new, "" otherwise
    method: str
    shots: int
    dataset: str


@dataclass(frozen=True)
class Method:
    trainer: str
    cfg: str
    variant: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "/".join((self.trainer, self.cfg, *self.variant))


# The recipes shipped beside this repository's default configs (README, "Where every
# hyper-parameter comes from"): a DPL config whose name holds one of these words between
# underscores, e.g. vit_b16_paper_ep40_batch4. scripts/dpl/common.sh reads names by the same rule.
RECIPES = ("paper", "reference")

# The baselines the engine runs exactly, as presets of the DPL trainer (README, "The baselines,
# exactly"): a DPL config whose name starts with one of these words and "_" is that method's
# preset, e.g. maple_2ctx_depth9_ep5_batch4. Their runs sit under DPL/, so a host checkout's own
# MaPLe/... runs keep their names, but a table row must not read as the original either: it says
# what the preset runs and that the engine ran it. vpt_deep comes before vpt, its prefix.
ENGINE_PRESETS = (("coop", "CoOp"), ("vpt_deep", "VPT-deep"), ("vpt", "VPT"), ("ivlp", "IVLP"), ("maple", "MaPLe"),
                  ("mpl", "MPL"))  # fmt: skip
# The first word of a preset's name that names the backbone or the schedule, not the prompts.
SCHEDULE_WORD = re.compile(r"^(vit|rn\d+|ep\d+|batch\d+)$")
# What the config part of a GRAM run's folder name ends with (scripts/dpl/common.sh's DPL_GRAM_TAG,
# given by the launchers with DPL_GRAM_FILE); they refuse DPL configs that end with it.
GRAM_SUFFIX = "+gram"


def without_gram(method: str) -> tuple[str, bool]:
    """``(X, True)`` for ``X`` trained with GRAM (``DPL/<cfg>+gram[/...]``), else ``(method, False)``."""
    trainer, _, rest = method.partition("/")
    cfg, sep, variant = rest.partition("/")
    if trainer != "DPL" or not cfg.endswith(GRAM_SUFFIX) or cfg == GRAM_SUFFIX:
        return method, False
    return f"{trainer}/{cfg.removesuffix(GRAM_SUFFIX)}{sep}{variant}", True


def engine_preset(method: str) -> str | None:
    """What an engine preset runs, from its config name (``MaPLe 2ctx depth 9`` for
    ``DPL/maple_2ctx_depth9_ep5_batch4``); None for any other method."""
    trainer, _, rest = method.partition("/")
    if trainer != "DPL":
        return None
    cfg = rest.split("/", 1)[0]
    for word, name in ENGINE_PRESETS:
        if cfg.startswith(f"{word}_"):
            words = itertools.takewhile(lambda w: not SCHEDULE_WORD.match(w), cfg[len(word) + 1:].split("_"))
            return " ".join([name, *(re.sub(r"^depth(\d+)$", r"depth \1", w) for w in words)])
    return None


def method_label(method: str) -> str:
    """A method as the tables name it: the method, after what it runs for an engine preset;
    with `` + GRAM`` after X's name for X trained with GRAM."""
    base, gram = without_gram(method)
    preset = engine_preset(base)
    name = (base if preset is None else preset) + (" + GRAM" if gram else "")
    return name if preset is None else f"{name} (DPL engine, {method})"


def recipe_of(method: str) -> str:
    """The recipe of a method: ``paper`` or ``reference`` for a DPL config named for one,
    ``original`` for an engine preset (the original method's schedule, which its config cites),
    ``ours`` for any other DPL config (this repository's defaults or your own), ``""`` for other
    trainers. X + GRAM follows X's."""
    base = without_gram(method)[0]
    trainer, _, rest = base.partition("/")
    if trainer != "DPL":
        return ""
    if engine_preset(base) is not None:
        return "original"
    words = rest.split("/", 1)[0].split("_")
    return next((recipe for recipe in RECIPES if recipe in words), "ours")


def classify(parts: Sequence[str]) -> tuple[str, str, Method, int, str] | None:
    """Map the folders above ``seed<N>`` (relative to a root) to (setting, split, method, shots, dataset)."""
    parts = list(parts)
    if len(parts) > 1 and parts[0] == "output":
        parts = parts[1:]
    if parts and parts[0] == "base2new":
        if len(parts) < 6 or parts[1] not in BASE2NEW_SPLITS:
            return None
        shots = SHOTS_DIR.match(parts[3])
        if not shots:
            return None
        method = Method(parts[4], parts[5], tuple(parts[6:]))
        return BASE2NEW, parts[1], method, int(shots.group(1)), parts[2]
    if parts and parts[0] == "evaluation":
        if len(parts) < 4:
            return None
        cfg = SHOTS_CFG.match(parts[2])
        if not cfg:
            return None
        method = Method(parts[1], cfg.group(1), tuple(parts[3:-1]))
        return CROSS, "", method, int(cfg.group(2)), parts[-1]
    if len(parts) < 3:
        return None
    cfg = SHOTS_CFG.match(parts[2])
    if not cfg:
        return None
    return FEWSHOT, "", Method(parts[1], cfg.group(1), tuple(parts[3:])), int(cfg.group(2)), parts[0]


def expected_folder(root: Path, key: RunKey, method: Method, seed: int) -> Path:
    """Where the launchers put the run of ``key`` and ``seed`` under ``root``."""
    if key.setting == BASE2NEW:
        parts = ["base2new", key.split, key.dataset, f"shots_{key.shots}", method.trainer, method.cfg, *method.variant]
    elif key.setting == CROSS:
        parts = ["evaluation", method.trainer, f"{method.cfg}_{key.shots}shots", *method.variant, key.dataset]
    else:
        parts = [key.dataset, method.trainer, f"{method.cfg}_{key.shots}shots", *method.variant]
    return root.joinpath(*parts, f"seed{seed}")


@dataclass
class Collection:
    """All seed folders found under the roots."""

    runs: dict[RunKey, dict[int, SeedRun]] = field(default_factory=dict)
    methods: dict[str, tuple[Method, Path]] = field(default_factory=dict)  # name -> (method, first root)
    unrecognised: list[Path] = field(default_factory=list)
    # A seed found again (under another root): (key, seed, the folder kept in runs, the other folder).
    duplicates: list[tuple[RunKey, int, Path, Path]] = field(default_factory=list)


def collect(roots: Iterable[Path]) -> Collection:
    """Walk the roots and read every ``seed<N>`` folder in a recognised layout.

    A seed found twice is recorded in ``duplicates`` rather than refused here: only the
    methods the report shows must be unambiguous (``check_duplicates``).
    """
    found = Collection()
    for root in roots:
        if not root.is_dir():
            raise ResultsError(f"results root {root} is not a directory (expected an output/ folder)")
        for current, dirnames, _ in os.walk(root):
            seed_dirs = sorted(d for d in dirnames if SEED_DIR.match(d))
            # Never descend into seed folders (checkpoints, tensorboard) or hidden folders (.git).
            dirnames[:] = sorted(d for d in dirnames if not SEED_DIR.match(d) and not d.startswith("."))
            for name in seed_dirs:
                folder = Path(current) / name
                where = classify(folder.parent.relative_to(root).parts)
                if where is None:
                    found.unrecognised.append(folder)
                    continue
                setting, split, method, shots, dataset = where
                found.methods.setdefault(method.name, (method, root))
                key = RunKey(setting, split, method.name, shots, dataset)
                seed = int(SEED_DIR.match(name).group(1))
                seeds = found.runs.setdefault(key, {})
                if seed in seeds:
                    found.duplicates.append((key, seed, seeds[seed].folder, folder))
                    continue
                seeds[seed] = read_seed_folder(folder, seed)
    return found


def check_duplicates(collection: Collection, methods: Iterable[str]) -> None:
    """Refuse a seed of a shown method that exists under two roots: counting it twice, or
    picking one of the two silently, would both misreport the method."""
    methods = set(methods)
    clashes = [
        f"seed {seed} of {key.method} ({key.setting} {key.split} {key.dataset}, {key.shots} shots) exists twice: "
        f"{kept} and {other}"
        for key, seed, kept, other in collection.duplicates if key.method in methods
    ]
    if clashes:
        raise ResultsError("; ".join(clashes) + "; pass only one of the roots that hold them")


def untested_methods(collection: Collection) -> set[str]:
    """Methods whose every run finished training without a test (e.g. a search stage)."""
    kinds: dict[str, set[str]] = {}
    for key, runs in collection.runs.items():
        kinds.setdefault(key.method, set()).update(run.kind for run in runs.values())
    return {m for m, k in kinds.items() if k == {"untested"}}


def select_methods(available: Sequence[str], patterns: Sequence[str] | None,
                   hidden: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Methods matching the patterns, in pattern order, and the patterns that match nothing.

    A pattern is a method name, a glob (``'CoOp/*'``) or a bare trainer name (``MaPLe``).
    Without patterns: every method except ``hidden`` (those with nothing to show).
    A pattern without runs is not an error: a comparison across checkouts names methods
    (``VPT``) that only some trees hold; the caller reports it as missing.
    """
    names = sorted(available)
    if not patterns:
        hidden = set(hidden)
        return [n for n in names if n not in hidden], []
    selected: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        matches = [n for n in names if fnmatchcase(n, pattern) or n.split("/", 1)[0] == pattern]
        if not matches:
            unmatched.append(pattern)
        selected.extend(m for m in matches if m not in selected)
    return selected, unmatched


def resolve_reference(methods: Sequence[str], pattern: str | None) -> str | None:
    """The one selected method ``--reference`` names (same pattern rules as ``--methods``)."""
    if pattern is None:
        return None
    matches = [m for m in methods if m == pattern or fnmatchcase(m, pattern) or m.split("/", 1)[0] == pattern]
    if len(matches) != 1:
        raise ResultsError(
            f"--reference {pattern!r} must match exactly one of the selected methods {list(methods)}, "
            f"it matches {matches}"
        )
    return matches[0]


# ----------------------------------------------------------------------------- tables


def dataset_sort_key(name: str) -> tuple[int, str]:
    return (DATASET_ORDER.index(name), "") if name in DATASET_ORDER else (len(DATASET_ORDER), name)


@dataclass(frozen=True)
class Problem:
    folder: Path
    kind: str  # "missing" or "unfinished"
    detail: str = ""


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


class Report:
    """Builds the tables, their machine-readable records and the list of problems."""

    def __init__(
        self,
        collection: Collection,
        methods: Sequence[str],
        reference: str | None,
        seeds: Sequence[int] | None,
        use_ci: bool,
        source_dataset: str,
    ) -> None:
        self.collection = collection
        self.methods = list(methods)
        self.reference = reference
        self.seeds = list(seeds) if seeds else None
        self.use_ci = use_ci
        self.source_dataset = source_dataset
        self.tables: list[Table] = []
        self.records: list[dict[str, Any]] = []
        self.problems: dict[Path, Problem] = {}
        self.keys = [k for k in collection.runs if k.method in self.methods]
        # A Recipe column once a shown method follows a named recipe (otherwise every DPL row would read "ours").
        self.show_recipes = any(recipe_of(m) in RECIPES for m in self.methods)

    # -- cells

    def expected_seeds(self, setting: str) -> tuple[int, ...]:
        """``--seeds``, or every seed number found in this setting."""
        if self.seeds:
            return tuple(self.seeds)
        found = {s for k in self.keys if k.setting == setting for s in self.collection.runs[k]}
        return tuple(sorted(found))

    def cell(self, sources: Sequence[RunKey], expected: Sequence[int]) -> Summary:
        """Per expected seed, the first finished run among ``sources`` (in order of preference)."""
        by_seed: dict[int, float] = {}
        for seed in expected:
            runs = [self.collection.runs.get(k, {}).get(seed) for k in sources]
            finished = [r for r in runs if r is not None and r.accuracy is not None]
            if finished:
                by_seed[seed] = finished[0].accuracy
                continue
            present = [r for r in runs if r is not None]
            for run in present:
                self.problems[run.folder] = Problem(run.folder, "unfinished", run.problem)
            if not present:
                # Name the folder of the preferred tree that exists (train_base over test_base).
                existing = [k for k in sources if k in self.collection.runs]
                key = existing[-1] if existing else sources[-1]
                method, root = self.collection.methods[key.method]
                folder = expected_folder(root, key, method, seed)
                self.problems[folder] = Problem(folder, "missing")
        return summarise(by_seed, expected)

    def fmt(self, s: Summary) -> str:
        if s.mean is None:
            text = "—"
        else:
            text = f"{s.mean:.2f}"
            spread = s.ci95 if self.use_ci else s.std
            if spread is not None:
                text += f" ± {spread:.2f}"
        if not s.complete:
            text += f" ({len(s.seeds)}/{len(s.expected)})"
        return text

    def method_headers(self) -> list[str]:
        return ["Method", "Recipe"] if self.show_recipes else ["Method"]

    def method_cells(self, method: str) -> list[str]:
        label = method_label(method)
        return [label, recipe_of(method)] if self.show_recipes else [label]

    def record(self, setting: str, shots: int, dataset: str, method: str, metric: str, **values: Any) -> None:
        row = {"setting": setting, "shots": shots, "dataset": dataset, "method": method, "label": method_label(method),
               "recipe": recipe_of(method), "metric": metric}
        row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()})
        self.records.append(row)

    def record_cell(self, setting: str, shots: int, dataset: str, method: str, metric: str, s: Summary,
                    delta: Delta) -> None:
        self.record(
            setting, shots, dataset, method, metric, mean=s.mean, std=s.std, ci95=s.ci95, n_seeds=len(s.seeds),
            n_expected=len(s.expected), seeds=list(s.seeds), values=list(s.values), complete=s.complete,
            **self.delta_fields(delta),
        )

    @staticmethod
    def delta_fields(delta: Delta) -> dict[str, Any]:
        seeds = list(delta.seeds) if delta.seeds is not None else None
        return {"delta": delta.value, "delta_seeds": seeds, "delta_same_seeds": delta.same_seeds}

    # -- averages

    @staticmethod
    def average(means: dict[str, float | None], datasets: Sequence[str]) -> float | None:
        """Mean over ``datasets`` of the per-dataset means, skipping datasets without a mean."""
        vals = [means[d] for d in datasets if means.get(d) is not None]
        return float(np.mean(vals)) if vals else None

    def avg_text(self, value: float | None, used: int, total: int, partial: bool) -> str:
        if value is None:
            return f"— (0/{total} datasets)"
        text = f"{value:.2f}"
        if used < total:
            text += f" ({used}/{total} datasets)"
        if partial:
            text += " (partial seeds)"
        return text

    # -- single-metric tables (few-shot, cross-dataset)

    def accuracy_table(self, title: str, setting: str, shots: int,
                       rows: Sequence[tuple[str, str, str]], groups: Sequence[tuple[str, list[str]]],
                       methods: Sequence[str], expected: Sequence[int]) -> None:
        """``rows``: (row label, dataset, setting of its runs); ``groups``: (average label, row labels)."""
        headers = ["Dataset", *self.method_headers(), f"Accuracy (mean ± {'95% CI' if self.use_ci else 'std'})"]
        ref = self.reference if self.reference in methods else None
        if ref:
            headers.append(f"Δ vs {method_label(ref)}")
        table = Table(title, headers, [], [delta_note(method_label(ref), base2new=False)] if ref else [])
        means: dict[str, dict[str, float | None]] = {m: {} for m in methods}
        partial: dict[str, dict[str, bool]] = {m: {} for m in methods}
        cells: dict[tuple[str, str], Summary] = {}
        for label, dataset, run_setting in rows:
            for m in methods:
                key = RunKey(run_setting, "", m, shots, dataset)
                cells[label, m] = s = self.cell([key], expected)
                means[m][label] = s.mean
                partial[m][label] = not s.complete
        for label, dataset, _ in rows:
            for i, m in enumerate(methods):
                s = cells[label, m]
                delta = cell_delta(s, cells[label, ref]) if ref else Delta(None)
                line = [label if i == 0 else "", *self.method_cells(m), self.fmt(s)]
                if ref:
                    line.append("ref" if m == ref else delta.text())
                table.rows.append(line)
                self.record_cell(setting, shots, label, m, "accuracy", s, delta)
        for avg_label, labels in groups:
            for i, m in enumerate(methods):
                value = self.average(means[m], labels)
                used = [lab for lab in labels if means[m].get(lab) is not None]
                is_partial = any(partial[m][lab] for lab in used)
                delta = Delta(None)
                if ref:
                    pairs = [p for lab in labels if (p := paired(cells[lab, m], cells[lab, ref])) is not None]
                    if pairs:
                        same = all(p.same_seeds for p in pairs)
                        delta = Delta(float(np.mean([p.delta for p in pairs])),
                                      average_mark(len(pairs), len(labels), same), None, same)
                line = [avg_label if i == 0 else "", *self.method_cells(m),
                        self.avg_text(value, len(used), len(labels), is_partial)]
                if ref:
                    line.append("ref" if m == ref else delta.text())
                table.rows.append(line)
                self.record(setting, shots, avg_label, m, "accuracy", mean=value, n_datasets=len(used),
                            total_datasets=len(labels), complete=len(used) == len(labels) and not is_partial,
                            **self.delta_fields(delta))
        if self.reference and not ref:
            table.notes.append(f"reference {method_label(self.reference)} has no results in this table")
        self.tables.append(table)

    def methods_with(self, setting: str, shots: int) -> list[str]:
        """Methods with runs in this table.

        A method trained only on the cross-dataset source (e.g. MaPLe's ``..._cross_datasets``
        config on ImageNet) is not a few-shot method: it appears in the cross-dataset table only,
        instead of a few-shot row per dataset it never ran.
        """
        def datasets(m: str, in_setting: str) -> set[str]:
            return {k.dataset for k in self.keys if k.setting == in_setting and k.shots == shots and k.method == m}

        methods = [m for m in self.methods if datasets(m, setting)]
        if setting == FEWSHOT:
            methods = [m for m in methods if not (datasets(m, FEWSHOT) == {self.source_dataset} and datasets(m, CROSS))]
        return methods

    def datasets_with(self, setting: str, shots: int, methods: Sequence[str]) -> list[str]:
        found = {k.dataset for k in self.keys if k.setting == setting and k.shots == shots and k.method in methods}
        return sorted(found, key=dataset_sort_key)

    def shots_of(self, setting: str) -> list[int]:
        return sorted({k.shots for k in self.keys if k.setting == setting})

    def spread_name(self) -> str:
        return "95% CI (t)" if self.use_ci else "sample std"

    def build_fewshot(self) -> None:
        expected = self.expected_seeds(FEWSHOT)
        for shots in self.shots_of(FEWSHOT):
            methods = self.methods_with(FEWSHOT, shots)
            datasets = self.datasets_with(FEWSHOT, shots, methods)
            rows = [(d, d, FEWSHOT) for d in datasets]
            title = (f"Few-shot, {shots} shots: test accuracy (%), mean ± {self.spread_name()} "
                     f"over seeds {_seeds(expected)}")
            self.accuracy_table(title, FEWSHOT, shots, rows, [("Average", datasets)], methods, expected)

    def build_cross(self) -> None:
        expected = self.expected_seeds(CROSS)
        for shots in self.shots_of(CROSS):
            methods = self.methods_with(CROSS, shots)
            targets = [d for d in self.datasets_with(CROSS, shots, methods) if d != self.source_dataset]
            rows: list[tuple[str, str, str]] = []
            if any(RunKey(FEWSHOT, "", m, shots, self.source_dataset) in self.collection.runs for m in methods):
                rows.append((f"{self.source_dataset} (source)", self.source_dataset, FEWSHOT))
            rows += [(d, d, CROSS) for d in targets]
            groups = []
            other = [d for d in targets if d not in DOMAIN_SHIFT]
            shift = [d for d in targets if d in DOMAIN_SHIFT]
            if other:
                groups.append(("Average (targets)", other))
            if shift:
                groups.append(("Average (domain shift)", shift))
            title = (f"Cross-dataset, trained with {shots} shots: test accuracy (%), mean ± {self.spread_name()} "
                     f"over seeds {_seeds(expected)}")
            self.accuracy_table(title, CROSS, shots, rows, groups, methods, expected)

    def build_base2new(self) -> None:
        expected = self.expected_seeds(BASE2NEW)
        spread = "95% CI" if self.use_ci else "std"
        for shots in self.shots_of(BASE2NEW):
            methods = self.methods_with(BASE2NEW, shots)
            datasets = self.datasets_with(BASE2NEW, shots, methods)
            ref = self.reference if self.reference in methods else None
            headers = ["Dataset", *self.method_headers(), f"Base (± {spread})", f"New (± {spread})", "HM"]
            if ref:
                headers += [f"Δ Base vs {method_label(ref)}", "Δ New", "Δ HM"]
            table = Table(
                f"Base-to-new, {shots} shots: test accuracy (%), mean ± {self.spread_name()} over seeds "
                f"{_seeds(expected)}; HM of the mean base and new accuracies", headers, [],
                [delta_note(method_label(ref), base2new=True)] if ref else [])
            cells: dict[tuple[str, str], tuple[Summary, Summary, Summary]] = {}
            for d in datasets:
                for m in methods:
                    test_base, train_base, test_new = (RunKey(BASE2NEW, split, m, shots, d)
                                                       for split in ("test_base", "train_base", "test_new"))
                    base = self.cell([test_base, train_base], expected)
                    new = self.cell([test_new], expected)
                    cells[d, m] = (base, new, hm_summary(base, new))
            for d in datasets:
                for i, m in enumerate(methods):
                    trio = cells[d, m]
                    deltas = [Delta(None)] * 3
                    if ref:
                        (base, new, _), (ref_base, ref_new, _) = trio, cells[d, ref]
                        deltas = [cell_delta(base, ref_base), cell_delta(new, ref_new),
                                  hm_delta(base, new, ref_base, ref_new)]
                    line = [d if i == 0 else "", *self.method_cells(m), *(self.fmt(s) for s in trio)]
                    if ref:
                        line += ["ref"] * 3 if m == ref else [x.text() for x in deltas]
                    table.rows.append(line)
                    for metric, s, delta in zip(("base", "new", "hm"), trio, deltas):
                        self.record_cell(BASE2NEW, shots, d, m, metric, s, delta)
            self.base2new_average(table, cells, datasets, methods, ref, shots)
            if self.reference and not ref:
                table.notes.append(f"reference {method_label(self.reference)} has no results in this table")
            self.tables.append(table)

    def base2new_average(self, table: Table, cells: dict[tuple[str, str], tuple[Summary, Summary, Summary]],
                         datasets: Sequence[str], methods: Sequence[str], ref: str | None, shots: int) -> None:
        """Average base and new over datasets, and HM of those averages (as the papers' tables)."""

        def averages(m: str, over: Sequence[str]) -> tuple[float | None, float | None, float | None]:
            base = self.average({d: cells[d, m][0].mean for d in over}, over)
            new = self.average({d: cells[d, m][1].mean for d in over}, over)
            hm = harmonic_mean(base, new) if base is not None and new is not None else None
            return base, new, hm

        def has_both(m: str, d: str) -> bool:
            return cells[d, m][0].mean is not None and cells[d, m][1].mean is not None

        for i, m in enumerate(methods):
            used = [d for d in datasets if has_both(m, d)]
            partial = [any(not cells[d, m][j].complete for d in used) for j in range(3)]
            values = averages(m, used)
            deltas = [Delta(None)] * 3
            if ref:
                # Datasets where base and new both have common seeds with the reference's.
                pairs = [(pb, pn) for d in datasets
                         if (pb := paired(cells[d, m][0], cells[d, ref][0])) is not None
                         and (pn := paired(cells[d, m][1], cells[d, ref][1])) is not None]
                if pairs:
                    same_base = all(pb.same_seeds for pb, _ in pairs)
                    same_new = all(pn.same_seeds for _, pn in pairs)
                    base_m = float(np.mean([pb.method for pb, _ in pairs]))
                    base_r = float(np.mean([pb.reference for pb, _ in pairs]))
                    new_m = float(np.mean([pn.method for _, pn in pairs]))
                    new_r = float(np.mean([pn.reference for _, pn in pairs]))
                    deltas = [
                        Delta(value, average_mark(len(pairs), len(datasets), same), None, same)
                        for value, same in ((base_m - base_r, same_base), (new_m - new_r, same_new),
                                            (harmonic_mean(base_m, new_m) - harmonic_mean(base_r, new_r),
                                             same_base and same_new))
                    ]
            line = ["Average" if i == 0 else "", *self.method_cells(m),
                    *(self.avg_text(v, len(used), len(datasets), p) for v, p in zip(values, partial))]
            if ref:
                line += ["ref"] * 3 if m == ref else [x.text() for x in deltas]
            table.rows.append(line)
            for metric, value, p, delta in zip(("base", "new", "hm"), values, partial, deltas):
                self.record(BASE2NEW, shots, "Average", m, metric, mean=value, n_datasets=len(used),
                            total_datasets=len(datasets), complete=len(used) == len(datasets) and not p,
                            **self.delta_fields(delta))

    def build(self) -> None:
        self.build_fewshot()
        self.build_base2new()
        self.build_cross()
        # Unfinished runs are reported even when another run of the same seed supplied the value.
        for key in self.keys:
            expected = self.expected_seeds(key.setting)
            for seed, run in self.collection.runs[key].items():
                if seed in expected and run.accuracy is None:
                    self.problems.setdefault(run.folder, Problem(run.folder, "unfinished", run.problem))


def _seeds(seeds: Sequence[int]) -> str:
    return " ".join(str(s) for s in seeds)


# ----------------------------------------------------------------------------- output

CSV_FIELDS = ("setting", "shots", "dataset", "method", "label", "recipe", "metric", "mean", "std", "ci95", "n_seeds",
              "n_expected", "seeds", "values", "n_datasets", "total_datasets", "complete", "delta", "delta_seeds",
              "delta_same_seeds")


def write_csv(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for rec in records:
            row = {k: ("" if rec.get(k) is None else rec[k]) for k in CSV_FIELDS}
            for k in ("seeds", "values", "delta_seeds"):
                if isinstance(rec.get(k), list):
                    row[k] = " ".join(str(v) for v in rec[k])
            writer.writerow(row)


def write_json(path: Path, report: Report, missing_methods: Sequence[str] = ()) -> None:
    """Rows, problems and the ``--methods`` patterns that matched no runs (``missing_methods``)."""
    data = {
        "spread": "ci95" if report.use_ci else "std",
        "reference": report.reference,
        "missing_methods": list(missing_methods),
        "rows": report.records,
        "problems": [{"folder": str(p.folder), "problem": p.kind, "detail": p.detail}
                     for p in sorted(report.problems.values(), key=lambda p: str(p.folder))],
        "unrecognised": [str(p) for p in report.collection.unrecognised],
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def warn_problems(report: Report) -> None:
    problems = sorted(report.problems.values(), key=lambda p: str(p.folder))
    missing = [p for p in problems if p.kind == "missing"]
    unfinished = [p for p in problems if p.kind == "unfinished"]
    if missing:
        logger.warning("%d expected seed folder(s) are missing:\n%s", len(missing),
                       "\n".join(f"  {p.folder}" for p in missing))
    if unfinished:
        logger.warning("%d run(s) have no result:\n%s", len(unfinished),
                       "\n".join(f"  {p.folder}  ({p.detail})" for p in unfinished))
    if report.collection.unrecognised:
        logger.warning("%d seed folder(s) are not in a known layout (pass the output/ folder as root):\n%s",
                       len(report.collection.unrecognised), "\n".join(f"  {p}" for p in report.collection.unrecognised))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # argparse %-formats argument help but not the description: a plain '%' here.
        description="Mean ± std (or 95% CI) over seeds of CoOp/MaPLe-style output trees.",
        epilog="Cells marked (k/n) average only k of the n expected seeds; the missing and unfinished "
               "folders are listed on stderr.",
    )
    parser.add_argument("roots", nargs="+", type=Path, help="output/ folders (ours, a CoOp/MaPLe checkout's)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help="methods to show, in this order: trainer/cfg[/variant], a glob, or a trainer name")
    parser.add_argument("--reference", metavar="METHOD", help="add the difference to this method")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="N",
                        help="expected seeds (default: every seed found in the setting)")
    parser.add_argument("--ci", action="store_true", help="95%% confidence interval (t) instead of the std")
    parser.add_argument("--source-dataset", default="imagenet",
                        help="dataset the cross-dataset models were trained on (default: imagenet)")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="also write one row per cell as CSV")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write rows and problems as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        collection = collect(args.roots)
        if not collection.runs:
            raise ResultsError(f"no seed<N> folders in a known layout under {[str(r) for r in args.roots]}")
        hidden = untested_methods(collection)
        methods, unmatched = select_methods(list(collection.methods), args.methods, hidden)
        if hidden and not args.methods:
            logger.info("not shown, no run has a test result (search stages?): %s", ", ".join(sorted(hidden)))
        for pattern in unmatched:
            logger.warning("--methods %r: no runs found (missing from the report); methods found: %s",
                           pattern, ", ".join(sorted(collection.methods)))
        if not methods:
            if args.methods:
                raise ResultsError(f"none of --methods {' '.join(args.methods)} has runs under "
                                   f"{[str(r) for r in args.roots]}; methods found: {sorted(collection.methods)}")
            raise ResultsError(f"no method has a test result under {[str(r) for r in args.roots]}")
        check_duplicates(collection, methods)
        reference = resolve_reference(methods, args.reference)
    except ResultsError as error:
        parser.error(str(error))
    report = Report(collection, methods, reference, args.seeds, args.ci, args.source_dataset)
    report.build()
    for table in report.tables:
        print(f"\n{table.title}")
        print(tabulate(table.rows, headers=table.headers, tablefmt="github", disable_numparse=True))
        for note in table.notes:
            print(f"note: {note}")
    warn_problems(report)
    if args.csv:
        write_csv(args.csv, report.records)
    if args.json:
        write_json(args.json, report, unmatched)
    return 0


if __name__ == "__main__":
    sys.exit(main())
