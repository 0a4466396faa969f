#!/usr/bin/env python
"""Pictures of what a DPL search found.

From a search output folder (``arch.json`` and ``alpha_history.jsonl``, written by the
``DPLSearch`` trainer) of a length search (``TRAINER.DPLSEARCH.SPACE lengths``) this writes:

- ``mixture_weights.png``: per tower, the final mixture weights ``softmax(alpha / T)`` as a
  blocks x candidate-lengths heat map, coloured by the deviation from uniform (``weight - 1/K``)
  so that the small differences which decide a short search show; the chosen length of every
  block boxed, and a note when the mixture is near uniform (the choice is then a near-tie);
- ``search_evolution.png``: per tower, the chosen length of every block after each epoch, and
  the mean per-block entropy of the mixture weights over epochs (``log K`` = still uniform).

The chosen length is the argmax of a block's weights, ties going to the shorter length (the
rule the search decodes with); it is recomputed from the last epoch's alphas and checked
against ``arch.json``.

Of a token search (``TRAINER.DPLSEARCH.SPACE tokens``: per block a count ``0..t`` of entering
tokens and per potential token a lifetime) it writes:

- ``count_weights.png``: per tower, the final count weights as a blocks x counts heat map,
  coloured by the deviation from uniform as ``mixture_weights.png`` is, the chosen count boxed;
- ``lifetime_weights.png``: per tower, a blocks x tokens grid: every kept token's chosen
  lifetime ("1", "2", ..., "end") coloured by its probability; the tokens beyond a block's
  chosen count are hatched (not kept);
- ``search_evolution.png``: per tower, the chosen count of every block after each epoch, and
  the mean entropies of the count and of the lifetime weights over epochs;
- ``tokens.png``: the found architecture's prompt tokens, alive per block
  (``plot_tokens.py``'s picture).

Counts and lifetimes are decoded from the last epoch's weights with the search's own rule
(``decode_tokens``: ties to fewer tokens and shorter lives, a lifetime past the tower's end is
"to the end") and checked against ``arch.json``. Reading a token search needs torch (the
decoder's module imports it); a length search's plots do not.

With ``--compare`` it draws the architectures of several searches side by side
(``architectures.png``): one row per search, one column per block, both towers, each row named
``dataset / config / seed`` (the parts that differ between the searches). The cells are the
prompt lengths of length searches, or the tokens entering each block of token searches (one
kind per figure).

Examples::

    python scripts/plot_search.py output/eurosat/DPLSearch/vit_b16_ep60_batch4_16shots/seed1
    python scripts/plot_search.py --compare output/*/DPLSearch/vit_b16_ep60_batch4_16shots/seed1 \\
        --out figures
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.colors import BoundaryNorm, CenteredNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

# The repository root: one folder up here, two in a CoOp/MaPLe checkout (scripts/dpl/).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "trainers" / "dpl_core").is_dir())
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainers.dpl_core.architecture import (  # noqa: E402
    ARCH_FILE,
    HISTORY_FILE,
    TOWERS,
    ArchitectureError,
    PromptArchitecture,
    TokenGroup,
)

if TYPE_CHECKING:
    from trainers.dpl_core.token_search import TokenSearchSpace


def _load_sibling(name: str) -> ModuleType:
    """The script ``<name>.py`` beside this one (``scripts/`` here, ``scripts/dpl/`` in a host
    checkout), found by path as ``ROOT`` is: this file is run as a script or imported as
    ``scripts.plot_search``, and only the path is the same in both."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tokens_figure = _load_sibling("plot_tokens").tokens_figure

logger = logging.getLogger("plot_search")

MAX_ANNOTATED_CELLS = 400  # beyond this, numbers in cells are unreadable


class SearchOutputError(ValueError):
    """A search folder or one of its files is missing or malformed."""


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class EpochAlphas:
    """One line of ``alpha_history.jsonl``; ``alphas[tower]`` is ``[blocks, candidates]``."""

    epoch: int
    candidates: tuple[int, ...]
    temperature: float
    alphas: dict[str, np.ndarray]


@dataclass(frozen=True)
class EpochTokenAlphas:
    """One line of a token search's ``alpha_history.jsonl``.

    ``counts[tower]`` is ``[blocks, max_tokens + 1]`` (counts 0..t), ``lifetimes[tower]`` is
    ``[blocks, max_tokens, len(space.lifetimes)]``; both raw: the probabilities are
    ``softmax(alpha / temperature)`` along the last axis.
    """

    epoch: int
    space: TokenSearchSpace
    temperature: float
    counts: dict[str, np.ndarray]
    lifetimes: dict[str, np.ndarray]


# The "space" of a history line; length searches write none.
SPACES = ("lengths", "tokens")
SHAPE_NAMES = {"lengths": "candidates/blocks", "tokens": "max_tokens/lifetimes/blocks"}


def _int_list(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise SearchOutputError(f"{where}: {what} must be a list of integers, got {value!r}")
    return tuple(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SearchOutputError(f"{path}: not valid JSON ({error})") from None


def load_architecture(path: Path) -> PromptArchitecture:
    """Read and check ``arch.json`` with the reader of the training stage."""
    if not path.is_file():
        raise SearchOutputError(f"{path} not found (expected the {ARCH_FILE} a DPLSearch run writes)")
    try:
        return PromptArchitecture.load(path)
    except ArchitectureError as error:
        raise SearchOutputError(str(error)) from None


def _alpha_matrix(value: Any, tower: str, n_candidates: int, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise SearchOutputError(
            f"{where}: {tower!r} must be a list of rows (one per block), got {type(value).__name__}")
    rows = []
    for block, row in enumerate(value):
        if (not isinstance(row, list) or len(row) != n_candidates
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in row)):
            raise SearchOutputError(f"{where}: {tower} block {block} must be a list of {n_candidates} numbers "
                                    f"(one per candidate), got {row!r}")
        rows.append(row)
    matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), n_candidates)
    if not np.isfinite(matrix).all():
        raise SearchOutputError(f"{where}: {tower} alphas are not all finite")
    return matrix


def _epoch_number(data: dict[str, Any], where: str) -> int:
    epoch = data["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise SearchOutputError(f"{where}: epoch must be an integer, got {epoch!r}")
    return epoch


def _temperature(data: dict[str, Any], where: str) -> float:
    temperature = data["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise SearchOutputError(f"{where}: temperature must be a positive number, got {temperature!r}")
    return float(temperature)


def _length_epoch(data: dict[str, Any], where: str) -> tuple[EpochAlphas, tuple[Any, ...]]:
    """A length search's history line, and the shape every line of its file must share."""
    missing = [k for k in ("epoch", "candidates", "temperature", *TOWERS) if k not in data]
    if missing:
        raise SearchOutputError(f"{where}: missing keys {missing}")
    epoch = _epoch_number(data, where)
    candidates = _int_list(data["candidates"], "candidates", where)
    temperature = _temperature(data, where)
    alphas = {t: _alpha_matrix(data[t], t, len(candidates), where) for t in TOWERS}
    return EpochAlphas(epoch, candidates, temperature, alphas), (candidates, len(alphas["text"]), len(alphas["image"]))


def _token_search() -> ModuleType:
    """``trainers.dpl_core.token_search``, imported only when a token search is read: it imports
    torch, which the plots of a length search do without."""
    try:
        return importlib.import_module("trainers.dpl_core.token_search")
    except ImportError as error:
        raise SearchOutputError(
            f"reading a token search's {HISTORY_FILE} needs torch (trainers/dpl_core/token_search.py decodes it): "
            f"{error}") from None


def _is_numbers(row: Any, n: int) -> bool:
    """Whether ``row`` is a list of ``n`` numbers (JSON booleans are not numbers)."""
    return isinstance(row, list) and len(row) == n and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) for v in row)


def _finite(array: np.ndarray, what: str, where: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise SearchOutputError(f"{where}: {what} are not all finite")
    return array


def lifetime_label(life: int | None) -> str:
    """``"end"`` for a token that lives to the tower's end, else its lifetime in blocks."""
    return "end" if life is None else str(life)


def _count_weights(value: Any, tower: str, space: TokenSearchSpace, where: str) -> np.ndarray:
    """A line's count weights of ``tower`` as ``[blocks, max_tokens + 1]`` floats."""
    n = space.max_tokens + 1
    if not isinstance(value, list):
        raise SearchOutputError(f"{where}: {tower} counts must be a list of rows (one per block), got {value!r}")
    for block, row in enumerate(value):
        if not _is_numbers(row, n):
            raise SearchOutputError(f"{where}: {tower} counts of block {block} must be {n} numbers "
                                    f"(counts 0..{space.max_tokens}), got {row!r}")
    return _finite(np.asarray(value, dtype=np.float64).reshape(len(value), n), f"{tower} counts", where)


def _lifetime_weights(value: Any, tower: str, space: TokenSearchSpace, where: str) -> np.ndarray:
    """A line's lifetime weights of ``tower`` as ``[blocks, max_tokens, len(lifetimes)]`` floats."""
    t, n = space.max_tokens, len(space.lifetimes)
    if not isinstance(value, list):
        raise SearchOutputError(f"{where}: {tower} lifetimes must be a list (one entry per block), got {value!r}")
    for block, rows in enumerate(value):
        if not isinstance(rows, list) or len(rows) != t:
            raise SearchOutputError(f"{where}: {tower} lifetimes of block {block} must be {t} rows "
                                    f"(one per token), got {rows!r}")
        for j, row in enumerate(rows):
            if not _is_numbers(row, n):
                raise SearchOutputError(
                    f"{where}: {tower} lifetimes of block {block} token {j} must be {n} numbers (lifetimes "
                    f"{', '.join(lifetime_label(v) for v in space.lifetimes)}), got {row!r}")
    return _finite(np.asarray(value, dtype=np.float64).reshape(len(value), t, n), f"{tower} lifetimes", where)


def _token_epoch(data: dict[str, Any], where: str) -> tuple[EpochTokenAlphas, tuple[Any, ...]]:
    """A token search's history line, and the shape every line of its file must share."""
    missing = [k for k in ("epoch", "max_tokens", "lifetimes", "temperature", *TOWERS) if k not in data]
    if missing:
        raise SearchOutputError(f"{where}: missing keys {missing}")
    epoch = _epoch_number(data, where)
    temperature = _temperature(data, where)
    if not isinstance(data["lifetimes"], list):
        raise SearchOutputError(f"{where}: lifetimes must be a list of integers and null, got {data['lifetimes']!r}")
    try:
        space = _token_search().TokenSearchSpace(data["max_tokens"], tuple(data["lifetimes"]))
    except ArchitectureError as error:
        raise SearchOutputError(f"{where}: {error}") from None
    counts, lifetimes = {}, {}
    for tower in TOWERS:
        weights = data[tower]
        if not isinstance(weights, dict):
            raise SearchOutputError(f"{where}: {tower} must be an object with counts and lifetimes, got {weights!r}")
        missing = [k for k in ("counts", "lifetimes") if k not in weights]
        if missing:
            raise SearchOutputError(f"{where}: {tower} is missing keys {missing}")
        counts[tower] = _count_weights(weights["counts"], tower, space, where)
        lifetimes[tower] = _lifetime_weights(weights["lifetimes"], tower, space, where)
        if len(counts[tower]) != len(lifetimes[tower]):
            raise SearchOutputError(f"{where}: {tower} has {len(counts[tower])} blocks of count weights but "
                                    f"{len(lifetimes[tower])} of lifetime weights")
    shape = (space.max_tokens, space.lifetimes, len(counts["text"]), len(counts["image"]))
    return EpochTokenAlphas(epoch, space, temperature, counts, lifetimes), shape


def load_alpha_history(path: Path) -> list[EpochAlphas] | list[EpochTokenAlphas]:
    """Read ``alpha_history.jsonl``: one JSON object per finished epoch, sorted by epoch.

    Every line must be of the same search space (``"space": "tokens"`` or none, a length
    search) and shape. A resumed search can log an epoch twice (the run restarted from an
    earlier checkpoint); the later line wins.
    """
    if not path.is_file():
        raise SearchOutputError(f"{path} not found (expected the {HISTORY_FILE} a DPLSearch run writes)")
    by_epoch: dict[int, EpochAlphas | EpochTokenAlphas] = {}
    space: str | None = None
    shape: tuple[Any, ...] | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise SearchOutputError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise SearchOutputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        this_space = data.get("space", "lengths")
        if this_space not in SPACES:
            raise SearchOutputError(f"{where}: unknown space {this_space!r}; expected one of {list(SPACES)}")
        if space is not None and this_space != space:
            raise SearchOutputError(f"{where}: a line of a {this_space} search after lines of a {space} search "
                                    "(two searches in one folder?)")
        space = this_space
        record, this_shape = (_token_epoch if space == "tokens" else _length_epoch)(data, where)
        if shape is not None and this_shape != shape:
            raise SearchOutputError(
                f"{where}: {SHAPE_NAMES[space]} {this_shape} differ from the earlier lines' {shape}")
        shape = this_shape
        if record.epoch in by_epoch:
            logger.warning("%s: epoch %d logged again (resumed search?); using the later line", where, record.epoch)
        by_epoch[record.epoch] = record
    if not by_epoch:
        raise SearchOutputError(f"{path} is empty (the search has not finished an epoch yet)")
    return [by_epoch[e] for e in sorted(by_epoch)]


def _check_token_search(folder: Path, arch: PromptArchitecture, last: EpochTokenAlphas) -> None:
    """Raise unless ``arch`` can be the architecture of the token search ``last`` comes from."""
    if any(n for tower in TOWERS for n in arch.lengths(tower)):
        raise SearchOutputError(f"{folder}: {HISTORY_FILE} is a token search's, but {ARCH_FILE} has key/value "
                                "prompt lengths (a length search's)")
    for tower in TOWERS:
        if len(last.counts[tower]) != len(arch.lengths(tower)):
            raise SearchOutputError(
                f"{folder}: {HISTORY_FILE} has {len(last.counts[tower])} {tower} blocks but {ARCH_FILE} "
                f"{len(arch.lengths(tower))}")


def load_search(folder: Path) -> tuple[PromptArchitecture, list[EpochAlphas] | list[EpochTokenAlphas]]:
    """Read a search output folder and check that its two files describe the same search."""
    if not folder.is_dir():
        raise SearchOutputError(f"search folder {folder} does not exist (expected a DPLSearch output directory)")
    arch = load_architecture(folder / ARCH_FILE)
    history = load_alpha_history(folder / HISTORY_FILE)
    last = history[-1]
    if isinstance(last, EpochTokenAlphas):
        _check_token_search(folder, arch, last)
        return arch, history
    if last.candidates != arch.candidates:
        raise SearchOutputError(
            f"{folder}: {HISTORY_FILE} has candidates {list(last.candidates)} but {ARCH_FILE} {list(arch.candidates)}")
    for tower in TOWERS:
        if len(last.alphas[tower]) != len(arch.lengths(tower)):
            raise SearchOutputError(
                f"{folder}: {HISTORY_FILE} has {len(last.alphas[tower])} {tower} blocks but {ARCH_FILE} "
                f"{len(arch.lengths(tower))}")
    return arch, history


def load_architecture_arg(path: Path) -> PromptArchitecture:
    """An ``arch.json`` given directly or as the search folder that holds it."""
    if path.is_dir():
        return load_architecture(path / ARCH_FILE)
    if path.suffix == ".json":
        return load_architecture(path)
    raise SearchOutputError(f"{path} is neither a search folder nor an {ARCH_FILE} file")


# ----------------------------------------------------------------------------- maths


def mixture_weights(alpha: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(alpha / temperature)`` along the last axis. ``alpha``: [blocks, candidates]
    (or a token search's ``[blocks, tokens, lifetimes]``); the result has its shape."""
    z = alpha / temperature
    z = z - z.max(axis=-1, keepdims=True)  # stable for large alphas
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def chosen_indices(alpha: np.ndarray) -> np.ndarray:
    """Per block the index of the largest alpha; ties go to the first (= shortest) candidate.

    ``np.argmax`` returns the first maximum, and candidates are sorted ascending.
    """
    return np.argmax(alpha, axis=1) if alpha.size else np.zeros(0, dtype=int)


def chosen_lengths(alpha: np.ndarray, candidates: Sequence[int]) -> tuple[int, ...]:
    return tuple(candidates[i] for i in chosen_indices(alpha))


def mean_entropy(weights: np.ndarray) -> float:
    """Mean over blocks of the entropy (nats) of each block's mixture weights.

    ``weights``: [blocks, options], or [blocks, tokens, options] (the mean is then over every
    potential token)."""
    p = np.clip(weights, 1e-300, 1.0)
    return float(np.mean(-(weights * np.log(p)).sum(axis=-1)))


def check_agreement(arch: PromptArchitecture, last: EpochAlphas, source: Path | str = ARCH_FILE) -> list[str]:
    """Blocks where ``arch.json`` (read from ``source``) differs from the decode of the last
    epoch's alphas (and warn)."""
    differences = []
    for tower in TOWERS:
        decoded = chosen_lengths(last.alphas[tower], last.candidates)
        for block, (saved, found) in enumerate(zip(arch.lengths(tower), decoded)):
            if saved != found:
                differences.append(f"{tower} block {block}: {ARCH_FILE} {saved}, alphas {found}")
    if differences:
        logger.warning("%s disagrees with the alphas of epoch %d in %s: %s", source, last.epoch,
                       HISTORY_FILE, "; ".join(differences))
    return differences


def block_tokens(groups: Sequence[TokenGroup], depth: int) -> list[tuple[int | None, ...]]:
    """Per block of a tower of ``depth`` blocks, the lifetimes of the tokens entering there in
    slot order (None = to the end); a block's count is the length of its tuple."""
    tokens: list[list[int | None]] = [[] for _ in range(depth)]
    for group in groups:
        tokens[group.block].extend(group.lifetimes)
    return [tuple(t) for t in tokens]


def chosen_tokens(epoch: EpochTokenAlphas, tower: str) -> list[tuple[int | None, ...]]:
    """Per block, the lifetimes of the tokens ``epoch``'s weights choose (see ``block_tokens``).

    Decoded by the search's own ``decode_tokens``: the count is the argmax of the block's count
    weights, ties to fewer tokens; each kept token's lifetime the argmax of its lifetime
    weights, ties to the shorter; a lifetime reaching past the tower's end is "to the end".
    """
    groups = _token_search().decode_tokens(epoch.space, tower, epoch.counts[tower].tolist(),
                                           epoch.lifetimes[tower].tolist())
    return block_tokens(groups, len(epoch.counts[tower]))


def chosen_counts(epoch: EpochTokenAlphas, tower: str) -> tuple[int, ...]:
    """Per block, the number of tokens ``epoch``'s weights choose to enter there."""
    return tuple(len(lives) for lives in chosen_tokens(epoch, tower))


def lifetime_cells(epoch: EpochTokenAlphas, tower: str) -> tuple[list[list[str]], np.ndarray]:
    """What the lifetime grid shows for token ``j`` of block ``b``: its chosen lifetime and the
    probability of that lifetime; ``""`` and NaN for the tokens beyond the block's chosen count.

    The probability is that of the token living as long as its label says: for ``"end"`` the
    sum over every option that reaches the tower's end from block ``b`` (a lifetime past the end
    is "to the end", as ``decode_tokens`` has it), so a kept token of the last block is "end"
    with probability 1.

    Returns:
        ``(labels, probability)``: labels ``[blocks][max_tokens]``, probability
        ``[blocks, max_tokens]``.
    """
    weights = mixture_weights(epoch.lifetimes[tower], epoch.temperature)  # [blocks, tokens, lifetimes]
    depth, t, _ = weights.shape
    labels = [[""] * t for _ in range(depth)]
    probability = np.full((depth, t), np.nan)
    for block, lives in enumerate(chosen_tokens(epoch, tower)):
        reached = [None if life is None or block + life >= depth else life for life in epoch.space.lifetimes]
        for j, life in enumerate(lives):
            labels[block][j] = lifetime_label(life)
            probability[block, j] = sum(p for p, option in zip(weights[block, j], reached) if option == life)
    return labels, probability


def _describe_tokens(lives: tuple[int | None, ...]) -> str:
    if not lives:
        return "no tokens"
    return f"{len(lives)} token{'s' * (len(lives) > 1)} ({' '.join(lifetime_label(v) for v in lives)})"


def check_token_agreement(arch: PromptArchitecture, last: EpochTokenAlphas,
                          source: Path | str = ARCH_FILE) -> list[str]:
    """Blocks whose tokens in ``arch.json`` (read from ``source``) differ from the decode of the
    last epoch's weights (and warn)."""
    differences = []
    for tower in TOWERS:
        saved = block_tokens(arch.groups(tower), len(arch.lengths(tower)))
        for block, (ours, found) in enumerate(zip(saved, chosen_tokens(last, tower))):
            if ours != found:
                differences.append(f"{tower} block {block}: {ARCH_FILE} {_describe_tokens(ours)}, "
                                   f"weights {_describe_tokens(found)}")
    if differences:
        logger.warning("%s disagrees with the weights of epoch %d in %s: %s", source, last.epoch,
                       HISTORY_FILE, "; ".join(differences))
    return differences


# ----------------------------------------------------------------------------- drawing

# A mixture whose weights all lie within this fraction of 1/K of uniform is "near-uniform": its
# argmax, the chosen length, is then a near-tie that a little more search could overturn.
NEAR_UNIFORM = 0.1
# Room above log K in the entropy panel, so the curves of a young search (at log K) stay visible.
ENTROPY_HEADROOM = 1.2
SEED_NAME = re.compile(r"^seed\d+$")
SHOTS_CFG = re.compile(r"^.+_\d+shots$")
SHOTS_DIR = re.compile(r"^shots_(\d+)$")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # draw with Agg, without pyplot's global state
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    return path


def _length_norm(candidates: Sequence[int]) -> tuple[Any, BoundaryNorm]:
    """A discrete colour map with one colour per candidate length."""
    values = list(candidates)
    if len(values) == 1:
        edges = [values[0] - 0.5, values[0] + 0.5]
    else:
        mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
        edges = [values[0] - (mids[0] - values[0])] + mids + [values[-1] + (values[-1] - mids[-1])]
    cmap = colormaps["viridis"].resampled(len(values))
    return cmap, BoundaryNorm(edges, cmap.N)


def _annotate(ax: Axes, matrix: np.ndarray, fmt: str, light: np.ndarray, xs: Sequence[float] | None = None) -> None:
    """Write each cell's value, in white where ``light`` (the cell's colour is dark)."""
    if matrix.size > MAX_ANNOTATED_CELLS:
        return
    for (i, j), value in np.ndenumerate(matrix):
        if np.isnan(value):
            continue
        x = xs[j] if xs is not None else j
        ax.text(x, i, format(value, fmt), ha="center", va="center", fontsize=7,
                color="white" if light[i, j] else "black")


def _towers(arch: PromptArchitecture) -> list[str]:
    return [t for t in TOWERS if arch.lengths(t)]


def uniform_deviation(weights: np.ndarray) -> np.ndarray:
    """``weight - 1/K`` per cell: what makes a block's choice, whatever K is."""
    return weights - 1.0 / weights.shape[1]


def is_near_uniform(weights: np.ndarray) -> bool:
    """Every weight within ``NEAR_UNIFORM / K`` of ``1/K``."""
    return bool(np.abs(uniform_deviation(weights)).max(initial=0.0) < NEAR_UNIFORM / weights.shape[1])


def deviation_norm(deviations: Sequence[np.ndarray]) -> CenteredNorm:
    """One colour scale, centred at 0 (uniform), spanning the largest deviation of any tower.

    Scaled to the data rather than to [-1/K, 1 - 1/K] so that the small deviations of a short
    search, which still decide the argmax, are visible; the colour bar gives the scale.
    """
    largest = max(float(np.abs(d).max(initial=0.0)) for d in deviations)
    return CenteredNorm(vcenter=0.0, halfrange=largest if largest > 0 else 1e-6)


def weight_decimals(deviation: np.ndarray) -> int:
    """Decimals that show the largest deviation from uniform with two significant digits (2..4)."""
    largest = float(np.abs(deviation).max(initial=0.0))
    if largest == 0:
        return 4
    return min(4, max(2, 1 - math.floor(math.log10(largest))))


def _weights_figure(weights: dict[str, np.ndarray], chosen: dict[str, Sequence[int]], options: Sequence[str],
                    xlabel: str, heading: str, noun: str, mixture: str) -> Figure:
    """Heat maps of per-block weights, one per tower, the chosen option of every block boxed.

    The colour is the deviation from uniform (``weight - 1/K``, diverging around 0), the
    numbers are the weights with as many decimals as the deviations need: after a short search
    every weight is close to 1/K and a plain weight scale shows one colour everywhere.

    Args:
        weights: per tower ``[blocks, K]`` probabilities, the towers in drawing order.
        chosen: per tower the index of each block's chosen option.
        options: the K column labels.
        heading: the title's start (what the weights are, after which epoch).
        noun: what a column is ("length", "count"), for the titles.
        mixture: what the weights are called in the near-uniform note ("mixture").
    """
    towers = list(weights)
    k = len(options)
    deviation = {t: uniform_deviation(w) for t, w in weights.items()}
    norm = deviation_norm(list(deviation.values()))
    max_blocks = max(len(w) for w in weights.values())
    fig = _new_figure(2.0 + 3.2 * len(towers) + 0.45 * k, 2.0 + 0.35 * max_blocks)
    axes = fig.subplots(1, len(towers), squeeze=False)[0]
    image = None
    for ax, tower in zip(axes, towers):
        decimals = weight_decimals(deviation[tower])
        image = ax.imshow(deviation[tower], cmap="RdBu_r", norm=norm, aspect="auto")
        _annotate(ax, weights[tower], f".{decimals}f", light=np.abs(deviation[tower]) > 0.6 * norm.halfrange)
        for block, index in enumerate(chosen[tower]):
            ax.add_patch(Rectangle((index - 0.5, block - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
        ax.set_xticks(range(k), list(options))
        ax.set_yticks(range(len(weights[tower])))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("block")
        picked = " ".join(options[i] for i in chosen[tower])
        spread = float(np.abs(deviation[tower]).max(initial=0.0))
        ax.set_title(f"{tower} tower: chosen {picked}\nmax |w − 1/K| = {spread:.{decimals}f}"
                     + (" (near-uniform)" if is_near_uniform(weights[tower]) else ""), fontsize=10)
    fig.colorbar(image, ax=list(axes), label=f"weight − 1/K  (1/K = {1 / k:.3g})")
    title = f"{heading}; colour: deviation from uniform; box: chosen {noun}"
    near = [t for t in towers if is_near_uniform(weights[t])]
    if near:
        title += (f"\nNear-uniform {mixture} ({', '.join(near)}): every weight within {NEAR_UNIFORM:.0%} of 1/K, "
                  f"so the chosen {noun}s are near-ties")
    fig.suptitle(title, fontsize=10)
    return fig


def mixture_figure(arch: PromptArchitecture, history: Sequence[EpochAlphas]) -> Figure:
    """Heat maps of the last epoch's mixture weights per tower, chosen lengths boxed (see
    ``_weights_figure``)."""
    last = history[-1]
    towers = _towers(arch)
    return _weights_figure(
        {t: mixture_weights(last.alphas[t], last.temperature) for t in towers},
        {t: chosen_indices(last.alphas[t]) for t in towers},
        [str(c) for c in last.candidates], "prompt length (candidate)",
        f"Mixture weights softmax(α/T) after epoch {last.epoch} (T = {last.temperature:g})", "length", "mixture",
    )


def plot_mixture(arch: PromptArchitecture, history: Sequence[EpochAlphas], out: Path) -> Path:
    """Write ``mixture_weights.png`` (see ``mixture_figure``)."""
    return _save(mixture_figure(arch, history), out / "mixture_weights.png")


def count_figure(arch: PromptArchitecture, history: Sequence[EpochTokenAlphas]) -> Figure:
    """Heat maps of the last epoch's count weights per tower (blocks x counts 0..t), chosen
    counts boxed (see ``_weights_figure``)."""
    last = history[-1]
    towers = _towers(arch)
    return _weights_figure(
        {t: mixture_weights(last.counts[t], last.temperature) for t in towers},
        {t: chosen_counts(last, t) for t in towers},
        [str(c) for c in range(last.space.max_tokens + 1)], "tokens entering the block (count)",
        f"Count weights softmax(α/T) after epoch {last.epoch} (T = {last.temperature:g})", "count", "count weights",
    )


def lifetime_figure(arch: PromptArchitecture, history: Sequence[EpochTokenAlphas]) -> Figure:
    """Per tower a blocks x tokens grid of the last epoch's lifetime choices (see
    ``lifetime_cells``): a kept token's cell names its lifetime and is coloured by that
    lifetime's probability; the tokens beyond a block's chosen count are hatched."""
    last = history[-1]
    towers = _towers(arch)
    t, n = last.space.max_tokens, len(last.space.lifetimes)
    max_blocks = max(len(arch.lengths(tower)) for tower in towers)
    fig = _new_figure(3.0 + (1.4 + 0.55 * t) * len(towers), 2.4 + 0.4 * max_blocks)
    axes = fig.subplots(1, len(towers), squeeze=False)[0]
    # A fixed 0..1 scale: probabilities of different towers and searches compare; the numbers in
    # the cells carry what a young search's near-uniform colours do not.
    norm = Normalize(0.0, 1.0)
    cmap = colormaps["Blues"].with_extremes(bad="#f2f2f2")  # bad: the tokens not kept
    image = None
    for ax, tower in zip(axes, towers):
        labels, probability = lifetime_cells(last, tower)
        image = ax.imshow(np.ma.masked_invalid(probability), cmap=cmap, norm=norm, aspect="auto")
        for (block, j), p in np.ndenumerate(probability):
            if np.isnan(p):
                ax.add_patch(Rectangle((j - 0.5, block - 0.5), 1, 1, fill=False, hatch="///",
                                       edgecolor="#b0b0b0", linewidth=0))
            else:
                ax.text(j, block, f"{labels[block][j]}\n{p:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if p > 0.6 else "black")
        ax.set_xticks(range(t))
        ax.set_yticks(range(len(probability)))
        ax.set_xlabel("token j of the block")
        ax.set_ylabel("block")
        kept = int(np.count_nonzero(~np.isnan(probability)))
        ax.set_title(f"{tower} tower: {kept} token{'s' * (kept != 1)} kept", fontsize=10)
    bar = fig.colorbar(image, ax=list(axes), label="probability of the chosen lifetime")
    bar.ax.axhline(1.0 / n, color="black", linestyle="--", linewidth=1)
    options = ", ".join(lifetime_label(v) for v in last.space.lifetimes)
    fig.suptitle(
        f"Lifetime weights softmax(α/T) after epoch {last.epoch} (T = {last.temperature:g}), options {options}\n"
        "cell: chosen lifetime of kept token (block, j) and its probability\n"
        f"end: to the tower's end (or past it); hatched: not kept; dashed on the bar: uniform 1/{n}",
        fontsize=10,
    )
    return fig


def _epoch_edges(epochs: Sequence[int]) -> np.ndarray:
    """Cell edges around each epoch for pcolormesh (epochs need not be contiguous)."""
    e = np.asarray(epochs, dtype=float)
    if len(e) == 1:
        return np.array([e[0] - 0.5, e[0] + 0.5])
    mids = (e[1:] + e[:-1]) / 2
    return np.concatenate([[e[0] - (mids[0] - e[0])], mids, [e[-1] + (e[-1] - mids[-1])]])


def _chosen_map(ax: Axes, epochs: Sequence[int], chosen: np.ndarray, values: Sequence[int], title: str) -> QuadMesh:
    """Draw ``chosen`` ([blocks, epochs]: a block's choice after each epoch) with one colour per
    value in ``values``; returns the mesh for the colour bar."""
    cmap, norm = _length_norm(values)
    blocks = np.arange(len(chosen) + 1) - 0.5
    mesh = ax.pcolormesh(_epoch_edges(epochs), blocks, chosen, cmap=cmap, norm=norm)
    _annotate(ax, chosen, ".0f", light=chosen < (values[0] + values[-1]) / 2, xs=epochs)
    ax.set_ylim(blocks[-1], blocks[0])  # block 0 on top, as in the heat maps
    ax.set_yticks(range(len(chosen)))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("block")
    ax.set_title(title)
    return mesh


def _entropy_panel(ax: Axes, epochs: Sequence[int], entropies: dict[str, list[float]], k: int, title: str,
                   legend: bool = True) -> None:
    """Mean entropy per tower over epochs, against ``log k`` (uniform weights over k options)."""
    for tower, entropy in entropies.items():
        ax.plot(epochs, entropy, marker="o", markersize=3, label=tower)
    log_k = math.log(k)
    ax.axhline(log_k, color="grey", linestyle="--", linewidth=1)
    # The line's label sits just above it at the left, in the headroom no curve can reach.
    ax.text(0.01, log_k, f"uniform (log {k} = {log_k:.2f})", transform=ax.get_yaxis_transform(),
            ha="left", va="bottom", fontsize=8, color="grey")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean entropy (nats)")
    ax.set_ylim(0, ENTROPY_HEADROOM * log_k if log_k > 0 else 1.0)
    if legend:
        # Outside the axes: a young search's curves run along log K, where an inside legend would sit.
        ax.legend(title="tower", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_title(title)


def evolution_figure(arch: PromptArchitecture, history: Sequence[EpochAlphas]) -> Figure:
    """Chosen length per block after each epoch (one map per tower) and mean mixture entropy."""
    towers = _towers(arch)
    epochs = [h.epoch for h in history]
    candidates = history[-1].candidates
    max_blocks = max(len(arch.lengths(t)) for t in towers)
    fig = _new_figure(2.5 + 4.0 * len(towers), 3.0 + 0.3 * max_blocks)
    grid = fig.add_gridspec(2, len(towers), height_ratios=[max(max_blocks, 3), 3])
    mesh = None
    for column, tower in enumerate(towers):
        chosen = np.array([chosen_lengths(h.alphas[tower], h.candidates) for h in history], dtype=float).T
        mesh = _chosen_map(fig.add_subplot(grid[0, column]), epochs, chosen, candidates,
                           f"{tower} tower: chosen length per block")
    fig.colorbar(mesh, ax=fig.axes, ticks=list(candidates), label="prompt length")
    entropies = {t: [mean_entropy(mixture_weights(h.alphas[t], h.temperature)) for h in history] for t in towers}
    _entropy_panel(fig.add_subplot(grid[1, :]), epochs, entropies, len(candidates),
                   "Mean per-block entropy of the mixture weights")
    return fig


def plot_evolution(arch: PromptArchitecture, history: Sequence[EpochAlphas], out: Path) -> Path:
    """Write ``search_evolution.png`` (see ``evolution_figure``)."""
    return _save(evolution_figure(arch, history), out / "search_evolution.png")


def token_evolution_figure(arch: PromptArchitecture, history: Sequence[EpochTokenAlphas]) -> Figure:
    """Chosen count per block after each epoch (one map per tower), and the mean entropies of
    the count weights (per block) and of the lifetime weights (per potential token)."""
    towers = _towers(arch)
    epochs = [h.epoch for h in history]
    space = history[-1].space
    counts = list(range(space.max_tokens + 1))
    max_blocks = max(len(arch.lengths(t)) for t in towers)
    # Two columns whatever the towers: the two entropy panels sit side by side below.
    fig = _new_figure(10.5, 3.0 + 0.3 * max_blocks)
    grid = fig.add_gridspec(2, 2, height_ratios=[max(max_blocks, 3), 3])
    cells = [grid[0, :]] if len(towers) == 1 else [grid[0, 0], grid[0, 1]]
    maps, mesh = [], None
    for cell, tower in zip(cells, towers):
        chosen = np.array([chosen_counts(h, tower) for h in history], dtype=float).T
        maps.append(fig.add_subplot(cell))
        mesh = _chosen_map(maps[-1], epochs, chosen, counts, f"{tower} tower: chosen count per block")
    fig.colorbar(mesh, ax=maps, ticks=counts, label="tokens entering the block")
    count_entropy = {t: [mean_entropy(mixture_weights(h.counts[t], h.temperature)) for h in history] for t in towers}
    life_entropy = {t: [mean_entropy(mixture_weights(h.lifetimes[t], h.temperature)) for h in history] for t in towers}
    _entropy_panel(fig.add_subplot(grid[1, 0]), epochs, count_entropy, len(counts),
                   "Mean per-block entropy of the count weights", legend=False)
    right = fig.add_subplot(grid[1, 1])
    _entropy_panel(right, epochs, life_entropy, len(space.lifetimes),
                   "Mean per-token entropy of the lifetime weights", legend=False)
    # One legend for both panels (the towers have the same colours), outside the grid: beside
    # the right panel it would widen that column and push the colour bar away from the maps.
    fig.legend(*right.get_legend_handles_labels(), title="tower", loc="outside right lower", fontsize=8)
    return fig


def plot_token_search(arch: PromptArchitecture, history: Sequence[EpochTokenAlphas], out: Path,
                      name: str) -> list[Path]:
    """Write ``count_weights.png``, ``lifetime_weights.png``, ``search_evolution.png`` and
    ``tokens.png`` (the found architecture, titled with ``name``) into ``out``."""
    return [
        _save(count_figure(arch, history), out / "count_weights.png"),
        _save(lifetime_figure(arch, history), out / "lifetime_weights.png"),
        _save(token_evolution_figure(arch, history), out / "search_evolution.png"),
        _save(tokens_figure(arch, f"Found architecture: {name}"), out / "tokens.png"),
    ]


def search_name(path: Path) -> tuple[str, str, str] | None:
    """(dataset, config, seed) of a search folder (or its ``arch.json``) in the CoOp output layout.

    ``<dataset>/DPLSearch/<cfg>_<K>shots/seed<S>`` gives config ``<cfg>_<K>shots``;
    ``base2new/train_base/<dataset>/shots_<K>/DPLSearch/<cfg>/seed<S>`` gives
    ``base2new <cfg>_<K>shots``. None for any other path.
    """
    folder = Path(os.path.abspath(path))
    if folder.suffix == ".json":
        folder = folder.parent
    parts = folder.parts
    if len(parts) < 4 or not SEED_NAME.match(parts[-1]) or parts[-3] != "DPLSearch":
        return None
    seed, cfg = parts[-1], parts[-2]
    shots = SHOTS_DIR.match(parts[-4])
    if shots and parts[-7:-5] == ("base2new", "train_base"):
        return parts[-5], f"base2new {cfg}_{shots.group(1)}shots", seed
    if SHOTS_CFG.match(cfg):
        return parts[-4], cfg, seed
    return None


def compare_labels(paths: Sequence[Path]) -> tuple[list[str], str]:
    """Row labels for ``--compare``, and what all rows share ("" when nothing was left out).

    Searches in the CoOp layout are named ``dataset / config / seed`` (``search_name``) by the
    fields that differ between them; the shared fields are said once, in the title. Other paths
    are named by their last three parts. Labels that still coincide (the same search under two
    roots) fall back to the paths relative to their common folder.
    """
    names = [search_name(p) for p in paths]
    shared = ""
    if len(paths) > 1 and all(names):
        varying = [i for i in range(3) if len({n[i] for n in names}) > 1]
        labels = [" / ".join(n[i] for i in varying) for n in names]
        shared = " / ".join(names[0][i] for i in range(3) if i not in varying)
    else:
        labels = [" / ".join(n) if n else "/".join(Path(os.path.abspath(p)).parts[-3:]) for n, p in zip(names, paths)]
    if len(set(labels)) < len(labels):
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath(absolute)
        labels = [os.path.relpath(a, common) if a != common else str(p) for a, p in zip(absolute, paths)]
        shared = ""
    return labels, shared


def entering_counts(arch: PromptArchitecture, tower: str) -> tuple[int, ...]:
    """Per block of ``tower``, the number of group tokens entering there."""
    return tuple(len(lives) for lives in block_tokens(arch.groups(tower), len(arch.lengths(tower))))


def compare_kind(archs: Sequence[PromptArchitecture], labels: Sequence[str]) -> str:
    """``"tokens"`` when some architectures have token groups (token searches), else
    ``"lengths"``; an error when others (or the same) have key/value prompt lengths: one figure
    draws one of the two per block."""
    with_lengths = [label for arch, label in zip(archs, labels) if any(n for t in TOWERS for n in arch.lengths(t))]
    with_groups = [label for arch, label in zip(archs, labels) if any(arch.groups(t) for t in TOWERS)]
    if with_lengths and with_groups:
        raise SearchOutputError(
            f"--compare draws one kind of architecture at a time, but {', '.join(with_lengths)} "
            f"{'has' if len(with_lengths) == 1 else 'have'} key/value prompt lengths (a length search's) and "
            f"{', '.join(with_groups)} token groups (a token search's)")
    return "tokens" if with_groups else "lengths"


def compare_figure(archs: Sequence[PromptArchitecture], labels: Sequence[str], shared: str = "") -> Figure:
    """The architectures of several searches: rows = searches, columns = blocks, one panel per
    tower; a cell is the block's prompt length (length searches) or the number of tokens
    entering it (token searches; see ``compare_kind``).

    The row labels are written once, left of the first panel; each panel gives its tower's
    total prompt tokens per search on its right. ``shared``: what every row has in common.
    """
    if compare_kind(archs, labels) == "tokens":
        per_block = entering_counts
        largest = max((n for a in archs for t in TOWERS for n in entering_counts(a, t)), default=0)
        candidates = list(range(largest + 1))
        what, title = "tokens entering", "Prompt tokens entering per block"
    else:
        per_block = PromptArchitecture.lengths
        candidates = sorted({c for a in archs for c in a.candidates})
        what, title = "prompt length", "Prompt lengths per block"
    cmap, norm = _length_norm(candidates)
    towers = [t for t in TOWERS if any(a.lengths(t) for a in archs)]
    widths = [max(len(a.lengths(t)) for a in archs) for t in towers]
    longest = max(len(label) for label in labels)
    fig = _new_figure(max(6.0, 2.0 + 0.08 * longest + 0.45 * sum(widths) + 0.5 * len(towers)),
                      2.4 + 0.45 * len(archs))
    axes = fig.subplots(1, len(towers), squeeze=False, width_ratios=widths)[0]
    image = None
    for column, (ax, tower, width) in enumerate(zip(axes, towers, widths)):
        # Searches on backbones of different depth: pad the shorter rows (drawn blank).
        matrix = np.full((len(archs), width), np.nan)
        for row, arch in enumerate(archs):
            matrix[row, : len(arch.lengths(tower))] = per_block(arch, tower)
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto")
        _annotate(ax, matrix, ".0f", light=matrix < (candidates[0] + candidates[-1]) / 2)
        ax.set_xticks(range(width))
        ax.set_yticks(range(len(archs)), list(labels) if column == 0 else [])
        totals = ax.secondary_yaxis("right")
        totals.set_yticks(range(len(archs)), [str(a.total_tokens(tower)) for a in archs])
        totals.tick_params(length=0)
        ax.set_xlabel("block")
        ax.set_title(f"{tower} tower (right: total)")
    fig.colorbar(image, ax=list(axes), ticks=candidates, label=what)
    if shared:
        title += f"\nall rows: {shared}"
    fig.suptitle(title, fontsize=10)
    return fig


def plot_compare(archs: Sequence[PromptArchitecture], labels: Sequence[str], out: Path, shared: str = "") -> Path:
    """Write ``architectures.png`` (see ``compare_figure``)."""
    return _save(compare_figure(archs, labels, shared), out / "architectures.png")


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Plot the mixture weights and architectures of DPL searches.")
    parser.add_argument("folder", nargs="?", type=Path,
                        help=f"search output folder with {ARCH_FILE} and {HISTORY_FILE}")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="DIR",
                        help=f"search folders (or {ARCH_FILE} files) to draw side by side")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="one label per --compare entry (default: dataset / config / seed, the parts "
                             "that differ)")
    parser.add_argument("--out", type=Path,
                        help="where to write the PNGs (default: the search folder; the current directory "
                             "with --compare)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if (args.folder is None) == (args.compare is None):
        parser.error("give either a search folder or --compare DIR [DIR ...]")
    if args.labels and not args.compare:
        parser.error("--labels goes with --compare")
    if args.compare and args.labels and len(args.labels) != len(args.compare):
        parser.error(f"--labels has {len(args.labels)} entries for {len(args.compare)} --compare folders")
    out = args.out or args.folder or Path.cwd()
    try:
        if args.folder is not None:
            arch, history = load_search(args.folder)
            if isinstance(history[-1], EpochTokenAlphas):
                check_token_agreement(arch, history[-1], args.folder / ARCH_FILE)
                out.mkdir(parents=True, exist_ok=True)
                written = plot_token_search(arch, history, out, compare_labels([args.folder])[0][0])
            else:
                check_agreement(arch, history[-1], args.folder / ARCH_FILE)
                out.mkdir(parents=True, exist_ok=True)
                written = [plot_mixture(arch, history, out), plot_evolution(arch, history, out)]
        else:
            archs = [load_architecture_arg(p) for p in args.compare]
            labels, shared = (args.labels, "") if args.labels else compare_labels(args.compare)
            compare_kind(archs, labels)  # refuse a mixed comparison before writing anything
            out.mkdir(parents=True, exist_ok=True)
            written = [plot_compare(archs, labels, out, shared)]
    except SearchOutputError as error:
        parser.error(str(error))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
