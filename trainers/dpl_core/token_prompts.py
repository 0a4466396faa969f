"""Prompt tokens with a lifetime: the schedule of a tower's token groups and their parameters.

A token group (``architecture.TokenGroup``) enters a tower at a block and stays a sequence
position for ``lifetime`` blocks. Per block the engine (``prompted_clip``) needs three things,
computed once here from the architecture (:class:`TokenSchedule`, pure Python):

* which groups enter the sequence at that block (their tokens follow the tokens still alive,
  so the prompt area is always in slot order: earlier entry first, then group order);
* which positions of the prompt area are read afterwards: a token in the last block of its
  life is a key/value only, so it is not queried and not sent through the MLP, and the
  block's output (only the queried positions) no longer holds it;
* which groups enter as keys/values only without ever being positions: image-tower groups of
  lifetime 1. Their tokens are the same for every image, so they are projected once per batch
  (as DPL's key/value prompts). Text-tower tokens always are positions: they sit after SOT and
  the causal mask hides them from SOT and from earlier slots.

:class:`TowerTokens` owns the learned tensors of one tower's groups: one ``[count, width]``
parameter per learned group (``[classes, count, width]`` per class), one linear map per
coupled group (applied to the other tower's group entering at the same block, as MaPLe).

Core module: imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .architecture import TokenGroup


@dataclass(frozen=True)
class BlockEntries:
    """What one block does with the token groups of its tower.

    Attributes:
        enter: ``(group, token indices)`` pairs whose tokens are appended to the prompt area
            before the block.
        kv_only: ``(group, token indices)`` pairs that are this block's keys/values only
            (never positions).
        read: per prompt-area position (after ``enter``), whether its output is read later.
        positional: block 0: how many of the entering tokens take positional embeddings.
        tokens: per prompt-area position, its ``(group, token)``.
    """

    enter: tuple[tuple[int, tuple[int, ...]], ...]
    kv_only: tuple[tuple[int, tuple[int, ...]], ...]
    read: tuple[bool, ...]
    positional: int = 0
    tokens: tuple[tuple[int, int], ...] = ()

    @property
    def area(self) -> int:
        """Prompt tokens that are sequence positions in this block."""
        return len(self.read)


class TokenSchedule:
    """Per block of one tower, which tokens enter, as positions or keys/values only.

    Args:
        groups: the tower's token groups, in slot order.
        depth: the tower's number of blocks.
        kv_only_single_block: tokens of lifetime 1 become keys/values only instead of
            positions (the image tower; exact there because no mask tells positions apart).
    """

    def __init__(self, groups: Sequence[TokenGroup], depth: int, kv_only_single_block: bool) -> None:
        self.groups = tuple(groups)
        self.depth = depth
        last = [g.last_blocks(depth) for g in self.groups]
        alive: list[tuple[int, int]] = []  # (group, token) of each prompt-area position, in slot order
        blocks = []
        for block in range(depth):
            alive = [(g, j) for g, j in alive if last[g][j] >= block]
            enter, kv_only = [], []
            for g, group in enumerate(self.groups):
                if group.block != block:
                    continue
                single = tuple(j for j in range(group.count) if kv_only_single_block and last[g][j] == block)
                positions = tuple(j for j in range(group.count) if j not in single)
                if single:
                    kv_only.append((g, single))
                if positions:
                    enter.append((g, positions))
                    alive += [(g, j) for j in positions]
            positional = sum(len(tokens) for g, tokens in enter if self.groups[g].positional) if block == 0 else 0
            read = tuple(last[g][j] > block for g, j in alive)
            blocks.append(BlockEntries(tuple(enter), tuple(kv_only), read, positional, tuple(alive)))
        self.blocks = tuple(blocks)

    def __getitem__(self, block: int) -> BlockEntries:
        return self.blocks[block]

    @property
    def empty(self) -> bool:
        return not self.groups

    def area_after(self, block: int) -> int:
        """Prompt-area positions in the output of ``block`` (those read later)."""
        return sum(self.blocks[block].read)


class TowerTokens(nn.Module):
    """The learned tensors of one tower's token groups.

    Args:
        groups: the tower's token groups.
        width: the tower's token width.
        init_std: learned tokens without init words start as N(0, init_std^2).
        num_classes: rows of per-class groups (0 when there are none).
        init_vectors: group index -> ``[count, width]`` starting tokens (the token embeddings
            of the group's init words).
        source_widths: group index -> the width of the other tower's group that a coupled
            group maps.

    Attributes:
        tokens: ``ParameterDict`` keyed by group index, ``[count, width]`` or
            ``[classes, count, width]``.
        maps: ``ModuleDict`` keyed by group index, an ``nn.Linear`` per coupled group.
    """

    def __init__(
        self,
        groups: Sequence[TokenGroup],
        width: int,
        init_std: float = 0.02,
        num_classes: int = 0,
        init_vectors: Mapping[int, Tensor] | None = None,
        source_widths: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.groups = tuple(groups)
        self.width = width
        init_vectors = dict(init_vectors or {})
        source_widths = dict(source_widths or {})
        self.tokens = nn.ParameterDict()
        self.maps = nn.ModuleDict()
        for index, group in enumerate(self.groups):
            if group.source == "coupled":
                self.maps[str(index)] = nn.Linear(source_widths[index], width)
                continue
            if group.per_class and num_classes < 1:
                raise ValueError(f"group {index} ({group.describe()}) has tokens per class but num_classes is {num_classes}")
            shape = (num_classes, group.count, width) if group.per_class else (group.count, width)
            if index in init_vectors:
                start = init_vectors[index].detach().float()
                if start.shape != (group.count, width):
                    raise ValueError(f"group {index}: init vectors of shape {tuple(start.shape)}, expected {(group.count, width)}")
                value = start.expand(shape).clone()
            else:
                value = torch.randn(shape) * init_std
            self.tokens[str(index)] = nn.Parameter(value)

    def learned(self, index: int) -> Tensor:
        """The parameter of learned group ``index``."""
        return self.tokens[str(index)]

    def values(self, source: "TowerTokens | None", sources: Mapping[int, int]) -> list[Tensor]:
        """Every group's tokens: ``[count, width]``, or ``[classes, count, width]`` per class.

        Args:
            source: the other tower's tokens (for coupled groups).
            sources: coupled group index -> index of the other tower's group it maps.
        """
        out = []
        for index, group in enumerate(self.groups):
            if group.source == "coupled":
                out.append(self.maps[str(index)](source.learned(sources[index])))
            else:
                out.append(self.learned(index))
        return out


def coupled_sources(architecture, tower: str) -> dict[int, int]:
    """Coupled group index of ``tower`` -> the other tower's group index it maps."""
    return {
        index: architecture.coupling_source(tower, index)
        for index, group in enumerate(architecture.groups(tower))
        if group.source == "coupled"
    }


def identical_copies(modules: Sequence[nn.Module]) -> None:
    """Give every module the weights of the first one (MaPLe builds its deep coupling maps as
    deep copies of one ``nn.Linear``, so they start equal)."""
    for module in modules[1:]:
        module.load_state_dict(modules[0].state_dict())
