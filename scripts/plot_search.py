#!/usr/bin/env python
"""Pictures of what a DPL search found.

From a search output folder (``arch.json`` and ``alpha_history.jsonl``, written by the
``DPLSearch`` trainer) this writes:

- ``mixture_weights.png``: per tower, the final mixture weights ``softmax(alpha / T)`` as a
  blocks x candidate-lengths heat map, coloured by the deviation from uniform (``weight - 1/K``)
  so that the small differences which decide a short search show; the chosen length of every
  block boxed, and a note when the mixture is near uniform (the choice is then a near-tie);
- ``search_evolution.png``: per tower, the chosen length of every block after each epoch, and
  the mean per-block entropy of the mixture weights over epochs (``log K`` = still uniform).

With ``--compare`` it draws the architectures of several searches side by side
(``architectures.png``): one row per search, one column per block, both towers, each row named
``dataset / config / seed`` (the parts that differ between the searches).

The chosen length is the argmax of a block's weights, ties going to the shorter length (the
rule the search decodes with); it is recomputed from the last epoch's alphas and checked
against ``arch.json``.

Examples::

    python scripts/plot_search.py output/eurosat/DPLSearch/vit_b16_ep60_batch4_16shots/seed1
    python scripts/plot_search.py --compare output/*/DPLSearch/vit_b16_ep60_batch4_16shots/seed1 \\
        --out figures
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, CenteredNorm
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
)

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


def load_alpha_history(path: Path) -> list[EpochAlphas]:
    """Read ``alpha_history.jsonl``: one JSON object per finished epoch, sorted by epoch.

    A resumed search can log an epoch twice (the run restarted from an earlier checkpoint);
    the later line wins.
    """
    if not path.is_file():
        raise SearchOutputError(f"{path} not found (expected the {HISTORY_FILE} a DPLSearch run writes)")
    by_epoch: dict[int, EpochAlphas] = {}
    shape: tuple[tuple[int, ...], int, int] | None = None
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
        missing = [k for k in ("epoch", "candidates", "temperature", *TOWERS) if k not in data]
        if missing:
            raise SearchOutputError(f"{where}: missing keys {missing}")
        epoch = data["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise SearchOutputError(f"{where}: epoch must be an integer, got {epoch!r}")
        candidates = _int_list(data["candidates"], "candidates", where)
        temperature = data["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise SearchOutputError(f"{where}: temperature must be a positive number, got {temperature!r}")
        alphas = {t: _alpha_matrix(data[t], t, len(candidates), where) for t in TOWERS}
        this_shape = (candidates, len(alphas["text"]), len(alphas["image"]))
        if shape is not None and this_shape != shape:
            raise SearchOutputError(
                f"{where}: candidates/blocks {this_shape} differ from the earlier lines' {shape}")
        shape = this_shape
        if epoch in by_epoch:
            logger.warning("%s: epoch %d logged again (resumed search?); using the later line", where, epoch)
        by_epoch[epoch] = EpochAlphas(epoch, candidates, float(temperature), alphas)
    if not by_epoch:
        raise SearchOutputError(f"{path} is empty (the search has not finished an epoch yet)")
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_search(folder: Path) -> tuple[PromptArchitecture, list[EpochAlphas]]:
    """Read a search output folder and check that its two files describe the same search."""
    if not folder.is_dir():
        raise SearchOutputError(f"search folder {folder} does not exist (expected a DPLSearch output directory)")
    arch = load_architecture(folder / ARCH_FILE)
    history = load_alpha_history(folder / HISTORY_FILE)
    last = history[-1]
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
    """``softmax(alpha / temperature)`` per block row. ``alpha``: [blocks, candidates]."""
    z = alpha / temperature
    z = z - z.max(axis=1, keepdims=True)  # stable for large alphas
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def chosen_indices(alpha: np.ndarray) -> np.ndarray:
    """Per block the index of the largest alpha; ties go to the first (= shortest) candidate.

    ``np.argmax`` returns the first maximum, and candidates are sorted ascending.
    """
    return np.argmax(alpha, axis=1) if alpha.size else np.zeros(0, dtype=int)


def chosen_lengths(alpha: np.ndarray, candidates: Sequence[int]) -> tuple[int, ...]:
    return tuple(candidates[i] for i in chosen_indices(alpha))


def mean_entropy(weights: np.ndarray) -> float:
    """Mean over blocks of the entropy (nats) of each block's mixture weights."""
    p = np.clip(weights, 1e-300, 1.0)
    return float(np.mean(-(weights * np.log(p)).sum(axis=1)))


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


def mixture_figure(arch: PromptArchitecture, history: Sequence[EpochAlphas]) -> Figure:
    """Heat maps of the last epoch's mixture weights per tower, chosen lengths boxed.

    The colour is the deviation from uniform (``weight - 1/K``, diverging around 0), the
    numbers are the weights with as many decimals as the deviations need: after a short search
    every weight is close to 1/K and a plain weight scale shows one colour everywhere.
    """
    last = history[-1]
    towers = _towers(arch)
    k = len(last.candidates)
    weights = {t: mixture_weights(last.alphas[t], last.temperature) for t in towers}
    deviation = {t: uniform_deviation(w) for t, w in weights.items()}
    norm = deviation_norm(list(deviation.values()))
    max_blocks = max(len(arch.lengths(t)) for t in towers)
    fig = _new_figure(2.0 + 3.2 * len(towers) + 0.45 * k, 2.0 + 0.35 * max_blocks)
    axes = fig.subplots(1, len(towers), squeeze=False)[0]
    image = None
    for ax, tower in zip(axes, towers):
        decimals = weight_decimals(deviation[tower])
        image = ax.imshow(deviation[tower], cmap="RdBu_r", norm=norm, aspect="auto")
        _annotate(ax, weights[tower], f".{decimals}f", light=np.abs(deviation[tower]) > 0.6 * norm.halfrange)
        for block, index in enumerate(chosen_indices(last.alphas[tower])):
            ax.add_patch(Rectangle((index - 0.5, block - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
        ax.set_xticks(range(k), [str(c) for c in last.candidates])
        ax.set_yticks(range(len(weights[tower])))
        ax.set_xlabel("prompt length (candidate)")
        ax.set_ylabel("block")
        chosen = " ".join(map(str, chosen_lengths(last.alphas[tower], last.candidates)))
        spread = float(np.abs(deviation[tower]).max(initial=0.0))
        ax.set_title(f"{tower} tower: chosen {chosen}\nmax |w − 1/K| = {spread:.{decimals}f}"
                     + (" (near-uniform)" if is_near_uniform(weights[tower]) else ""), fontsize=10)
    fig.colorbar(image, ax=list(axes), label=f"weight − 1/K  (1/K = {1 / k:.3g})")
    title = (f"Mixture weights softmax(α/T) after epoch {last.epoch} (T = {last.temperature:g}); "
             "colour: deviation from uniform; box: chosen length")
    near = [t for t in towers if is_near_uniform(weights[t])]
    if near:
        title += (f"\nNear-uniform mixture ({', '.join(near)}): every weight within {NEAR_UNIFORM:.0%} of 1/K, "
                  "so the chosen lengths are near-ties")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_mixture(arch: PromptArchitecture, history: Sequence[EpochAlphas], out: Path) -> Path:
    """Write ``mixture_weights.png`` (see ``mixture_figure``)."""
    return _save(mixture_figure(arch, history), out / "mixture_weights.png")


def _epoch_edges(epochs: Sequence[int]) -> np.ndarray:
    """Cell edges around each epoch for pcolormesh (epochs need not be contiguous)."""
    e = np.asarray(epochs, dtype=float)
    if len(e) == 1:
        return np.array([e[0] - 0.5, e[0] + 0.5])
    mids = (e[1:] + e[:-1]) / 2
    return np.concatenate([[e[0] - (mids[0] - e[0])], mids, [e[-1] + (e[-1] - mids[-1])]])


def evolution_figure(arch: PromptArchitecture, history: Sequence[EpochAlphas]) -> Figure:
    """Chosen length per block after each epoch (one map per tower) and mean mixture entropy."""
    towers = _towers(arch)
    epochs = [h.epoch for h in history]
    candidates = history[-1].candidates
    cmap, norm = _length_norm(candidates)
    max_blocks = max(len(arch.lengths(t)) for t in towers)
    fig = _new_figure(2.5 + 4.0 * len(towers), 3.0 + 0.3 * max_blocks)
    grid = fig.add_gridspec(2, len(towers), height_ratios=[max(max_blocks, 3), 3])
    mesh = None
    for column, tower in enumerate(towers):
        ax = fig.add_subplot(grid[0, column])
        chosen = np.array([chosen_lengths(h.alphas[tower], h.candidates) for h in history], dtype=float).T
        blocks = np.arange(len(chosen) + 1) - 0.5
        mesh = ax.pcolormesh(_epoch_edges(epochs), blocks, chosen, cmap=cmap, norm=norm)
        _annotate(ax, chosen, ".0f", light=chosen < (candidates[0] + candidates[-1]) / 2, xs=epochs)
        ax.set_ylim(blocks[-1], blocks[0])  # block 0 on top, as in the heat maps
        ax.set_yticks(range(len(chosen)))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("block")
        ax.set_title(f"{tower} tower: chosen length per block")
    fig.colorbar(mesh, ax=fig.axes, ticks=list(candidates), label="prompt length")
    ax = fig.add_subplot(grid[1, :])
    for tower in towers:
        entropy = [mean_entropy(mixture_weights(h.alphas[tower], h.temperature)) for h in history]
        ax.plot(epochs, entropy, marker="o", markersize=3, label=tower)
    log_k = math.log(len(candidates))
    ax.axhline(log_k, color="grey", linestyle="--", linewidth=1)
    # The line's label sits just above it at the left, in the headroom no curve can reach.
    ax.text(0.01, log_k, f"uniform (log {len(candidates)} = {log_k:.2f})", transform=ax.get_yaxis_transform(),
            ha="left", va="bottom", fontsize=8, color="grey")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean entropy (nats)")
    ax.set_ylim(0, ENTROPY_HEADROOM * log_k if log_k > 0 else 1.0)
    # Outside the axes: a young search's curves run along log K, where an inside legend would sit.
    ax.legend(title="tower", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_title("Mean per-block entropy of the mixture weights")
    return fig


def plot_evolution(arch: PromptArchitecture, history: Sequence[EpochAlphas], out: Path) -> Path:
    """Write ``search_evolution.png`` (see ``evolution_figure``)."""
    return _save(evolution_figure(arch, history), out / "search_evolution.png")


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


def compare_figure(archs: Sequence[PromptArchitecture], labels: Sequence[str], shared: str = "") -> Figure:
    """Chosen lengths of several searches: rows = searches, columns = blocks, one panel per tower.

    The row labels are written once, left of the first panel; each panel gives its tower's
    total prompt length per search on its right. ``shared``: what every row has in common.
    """
    candidates = sorted({c for a in archs for c in a.candidates})
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
            matrix[row, : len(arch.lengths(tower))] = arch.lengths(tower)
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto")
        _annotate(ax, matrix, ".0f", light=matrix < (candidates[0] + candidates[-1]) / 2)
        ax.set_xticks(range(width))
        ax.set_yticks(range(len(archs)), list(labels) if column == 0 else [])
        totals = ax.secondary_yaxis("right")
        totals.set_yticks(range(len(archs)), [str(sum(a.lengths(tower))) for a in archs])
        totals.tick_params(length=0)
        ax.set_xlabel("block")
        ax.set_title(f"{tower} tower (right: total)")
    fig.colorbar(image, ax=list(axes), ticks=candidates, label="prompt length")
    title = "Prompt lengths per block"
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
            check_agreement(arch, history[-1], args.folder / ARCH_FILE)
            out.mkdir(parents=True, exist_ok=True)
            written = [plot_mixture(arch, history, out), plot_evolution(arch, history, out)]
        else:
            archs = [load_architecture_arg(p) for p in args.compare]
            labels, shared = (args.labels, "") if args.labels else compare_labels(args.compare)
            out.mkdir(parents=True, exist_ok=True)
            written = [plot_compare(archs, labels, out, shared)]
    except SearchOutputError as error:
        parser.error(str(error))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
