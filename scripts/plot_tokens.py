#!/usr/bin/env python
"""Picture of the prompt tokens an architecture puts into each block: when each one enters and
how long it lives.

For every tower with prompts, one panel: one row per prompt token (in slot order, DPL's
key/value prompts on top), one column per block. A token's bar runs from its entry block to the
last block of its life; blocks where it is a sequence position are solid, its last block (where
it serves only as keys/values) is hatched. Colours tell learned tokens, coupled tokens (a map
of the other tower's) and DPL's key/value prompts apart. Above each panel: the number of
tokens alive per block.

Works for any ``arch.json`` of the engine: a search's, the presets in ``configs/architectures/``
(CoOp, VPT, IVLP, MaPLe, Modular Prompt Learning) or one written by hand.

Examples::

    python scripts/plot_tokens.py configs/architectures/mpl_c1_add2_rm1_depth9.json
    python scripts/plot_tokens.py output/eurosat/DPLSearch/vit_b16_ep60_batch4_16shots/seed1/arch.json --out tokens.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

# The repository root: one folder up here, two in a CoOp/MaPLe checkout (scripts/dpl/).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "trainers" / "dpl_core").is_dir())
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainers.dpl_core.architecture import TOWERS, ArchitectureError, PromptArchitecture, alive_tokens  # noqa: E402

COLOURS = {"key/value": "#9e9e9e", "learned": "#1f77b4", "coupled": "#ff7f0e"}


@dataclass(frozen=True)
class TokenRow:
    """One prompt token of a tower: ``kind`` (key/value, learned or coupled), entry and last block."""

    label: str
    kind: str
    entry: int
    last: int


def token_rows(arch: PromptArchitecture, tower: str) -> list[TokenRow]:
    """The tower's prompt tokens, DPL's key/value prompts first (block by block), then every
    group token in slot order."""
    depth = len(arch.lengths(tower))
    rows = [TokenRow(f"kv {block}.{j}", "key/value", block, block)
            for block, count in enumerate(arch.lengths(tower)) for j in range(count)]  # fmt: skip
    for index, group in enumerate(arch.groups(tower)):
        for j, last in enumerate(group.last_blocks(depth)):
            rows.append(TokenRow(f"g{index}.{j}", group.source, group.block, last))
    kv, grouped = rows[: sum(arch.lengths(tower))], rows[sum(arch.lengths(tower)) :]
    return kv + sorted(grouped, key=lambda r: r.entry)  # slot order: earlier entry first (stable: group order)


def alive_counts(arch: PromptArchitecture, tower: str) -> list[int]:
    """Prompt tokens alive per block: key/value prompts plus group tokens."""
    depth = len(arch.lengths(tower))
    groups = alive_tokens(arch.groups(tower), depth)
    return [arch.lengths(tower)[block] + len(groups[block]) for block in range(depth)]


def tokens_figure(arch: PromptArchitecture, title: str) -> Figure:
    towers = [t for t in TOWERS if arch.total_tokens(t)] or list(TOWERS)
    heights = [max(len(token_rows(arch, t)), 1) for t in towers]
    width = max(6.5, 1.2 + 0.45 * max(len(arch.lengths(t)) for t in towers))  # room for the title and legend
    fig = Figure(figsize=(width, 1.6 + 0.18 * sum(heights) + 0.9 * len(towers)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(towers), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, tower in zip(axes, towers):
        rows = token_rows(arch, tower)
        depth = len(arch.lengths(tower))
        for y, row in enumerate(rows):
            colour = COLOURS[row.kind]
            if row.last > row.entry:
                ax.add_patch(Rectangle((row.entry, y + 0.1), row.last - row.entry, 0.8, color=colour))
            ax.add_patch(Rectangle((row.last, y + 0.1), 1, 0.8, facecolor=colour, alpha=0.35, hatch="///", edgecolor=colour))
        ax.set_xlim(0, depth)
        ax.set_ylim(max(len(rows), 1), 0)  # an empty tower still gets a row's height
        ax.set_xticks([b + 0.5 for b in range(depth)], [str(b) for b in range(depth)])
        ax.set_yticks([y + 0.5 for y in range(len(rows))], [r.label for r in rows] if len(rows) <= 40 else [])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("block")
        counts = alive_counts(arch, tower)
        top = ax.secondary_xaxis("top")
        top.set_xticks([b + 0.5 for b in range(depth)], [str(c) for c in counts])
        top.tick_params(labelsize=8)
        ax.set_title(f"{tower} tower: {arch.total_tokens(tower)} prompt tokens; alive per block on top", fontsize=9)
        ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    handles = [Patch(color=c, label=k) for k, c in COLOURS.items()]
    handles.append(Patch(facecolor="white", hatch="///", edgecolor="black", label="last block: keys/values only"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", type=Path, help="an arch.json of the engine")
    parser.add_argument("--out", type=Path, help="PNG to write (default: <arch name>_tokens.png beside the file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        arch = PromptArchitecture.load(args.arch)
    except ArchitectureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.arch.with_name(f"{args.arch.stem}_tokens.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    tokens_figure(arch, args.arch.name).savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
