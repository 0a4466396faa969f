"""Differentiable search over how many prompt tokens enter each block and how long each lives.

The space, per tower and block ``b``: a count ``c_b`` in ``0..t`` (tokens ``(b, 0..c_b-1)``
enter at ``b``; tokens are nested, one vector per ``(b, j)``) and, for every potential token
``(b, j)``, a lifetime from a set such as ``{1, 2, 3, end}``. DPL's length search is the
lifetime set ``{1}`` (with nested prompts), VPT-shallow and CoOp-style context are block 0 with
lifetime ``end``, Modular Prompt Learning's default is one token per block that lives one block
and one that lives to the end.

The relaxation: every potential token is a sequence position from its entry block for as long
as any allowed lifetime keeps it (its last possible block as keys/values only, as the engine
does). In block ``b'`` every query's attention logit against key ``(b, j)`` gets
``log p_{b,j}(b')`` with ``p_{b,j}(b') = P(c_b > j) * P(L_{b,j} > b' - b)``, both read from the
softmaxes of the two kinds of architecture weights (cumulative sums); ``p`` is clamped to
:data:`GATE_FLOOR` inside the log, and a token with ``p = 0`` is masked exactly. With one-hot
weights every ``p`` is 0 or 1 and the supernet computes exactly the fixed architecture that
:func:`decode_tokens` returns.

Text-tower tokens of the space enter block 0 without a positional embedding
(``TokenGroup.positional`` false): a soft count cannot move the class tokens' positions.

The space and the decode are pure Python; :class:`TokenSearchWeights` holds the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .architecture import TOWERS, ArchitectureError, TokenGroup

# log(p) of a gate is taken of max(p, GATE_FLOOR): finite for any p > 0 however small (an
# exactly-zero p masks the token instead).
GATE_FLOOR = 1e-6


@dataclass(frozen=True)
class TokenSearchSpace:
    """Counts ``0..max_tokens`` per block and per-token lifetimes from ``lifetimes``.

    Attributes:
        max_tokens: ``t``, the largest count of tokens entering one block (>= 1).
        lifetimes: allowed lifetimes, increasing, ``None`` (to the tower's end) last.
    """

    max_tokens: int
    lifetimes: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ArchitectureError(f"the token search needs max_tokens >= 1, got {self.max_tokens!r}")
        lives = tuple(self.lifetimes)
        finite = [v for v in lives if v is not None]
        if not lives or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in finite):
            raise ArchitectureError(f"lifetimes must be integers >= 1 and/or None (to the end), got {list(lives)}")
        if finite != sorted(set(finite)) or (None in lives and lives[-1] is not None) or lives.count(None) > 1:
            raise ArchitectureError(f"lifetimes must be increasing and distinct, None last, got {list(lives)}")
        object.__setattr__(self, "lifetimes", lives)

    def last_possible(self, block: int, depth: int) -> int:
        """The last block a token entering at ``block`` can be alive in."""
        if None in self.lifetimes:
            return depth - 1
        return min(depth - 1, block + max(v for v in self.lifetimes if v is not None) - 1)

    def supernet_groups(self, tower: str, depth: int) -> tuple[TokenGroup, ...]:
        """One group of ``max_tokens`` potential tokens per block, alive as long as any lifetime allows."""
        if tower not in TOWERS:
            raise ArchitectureError(f"unknown tower {tower!r}; expected one of {TOWERS}")
        return tuple(
            TokenGroup(block, self.max_tokens, self.last_possible(block, depth) - block + 1,
                       positional=not (tower == "text" and block == 0))  # fmt: skip
            for block in range(depth)
        )

    def lifetime_exceeds(self, depth_offset: int) -> tuple[bool, ...]:
        """Per lifetime option, whether a token with it is still alive ``depth_offset`` blocks
        after its entry (``L > depth_offset``)."""
        return tuple(v is None or v > depth_offset for v in self.lifetimes)


def _argmax(row: Sequence[float], what: str) -> int:
    values = [float(v) for v in row]
    if any(math.isnan(v) for v in values):
        raise ArchitectureError(f"{what}: architecture weights contain NaN: {values}")
    return values.index(max(values))  # the first maximum: fewer tokens, shorter lifetime


def decode_tokens(
    space: TokenSearchSpace, tower: str, count_alpha: Sequence[Sequence[float]], life_alpha: Sequence[Sequence[Sequence[float]]]
) -> tuple[TokenGroup, ...]:
    """The token groups the search chose for one tower.

    Per block the count is the argmax of its count weights (ties to fewer tokens); each kept
    token's lifetime the argmax of its lifetime weights (ties to the shorter lifetime; "to the
    end" is the longest). A lifetime past the tower's end is "to the end".

    Args:
        count_alpha: ``[depth][max_tokens + 1]`` raw count weights.
        life_alpha: ``[depth][max_tokens][len(lifetimes)]`` raw lifetime weights.
    """
    depth = len(count_alpha)
    if len(life_alpha) != depth:
        raise ArchitectureError(f"{tower}: {depth} blocks of count weights but {len(life_alpha)} of lifetime weights")
    groups = []
    for block in range(depth):
        if len(count_alpha[block]) != space.max_tokens + 1:
            raise ArchitectureError(f"{tower} block {block}: {len(count_alpha[block])} count weights for counts 0..{space.max_tokens}")
        count = _argmax(count_alpha[block], f"{tower} block {block} counts")
        if not count:
            continue
        lives = []
        for j in range(count):
            row = life_alpha[block][j]
            if len(row) != len(space.lifetimes):
                raise ArchitectureError(f"{tower} block {block} token {j}: {len(row)} lifetime weights for {len(space.lifetimes)} lifetimes")
            life = space.lifetimes[_argmax(row, f"{tower} block {block} token {j} lifetimes")]
            lives.append(None if life is None or block + life >= depth else life)
        groups.append(TokenGroup(block, count, lives[0] if len(set(lives)) == 1 else tuple(lives),
                                 positional=not (tower == "text" and block == 0)))  # fmt: skip
    return tuple(groups)


class TokenSearchWeights(nn.Module):
    """Architecture weights of the token search: per tower, count weights ``[depth, t + 1]``
    and lifetime weights ``[depth, t, len(lifetimes)]``."""

    def __init__(self, space: TokenSearchSpace, text_depth: int, image_depth: int, init_std: float = 1e-3,
                 temperature: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.space = space
        self.temperature = float(temperature)
        t, n = space.max_tokens, len(space.lifetimes)
        self.text_counts = nn.Parameter(torch.randn(text_depth, t + 1) * init_std)
        self.image_counts = nn.Parameter(torch.randn(image_depth, t + 1) * init_std)
        self.text_lifetimes = nn.Parameter(torch.randn(text_depth, t, n) * init_std)
        self.image_lifetimes = nn.Parameter(torch.randn(image_depth, t, n) * init_std)

    def alphas(self, tower: str) -> tuple[Tensor, Tensor]:
        """``(count weights [depth, t + 1], lifetime weights [depth, t, lifetimes])`` of ``tower``."""
        if tower not in TOWERS:
            raise ValueError(f"unknown tower {tower!r}; expected one of {TOWERS}")
        return (self.text_counts, self.text_lifetimes) if tower == "text" else (self.image_counts, self.image_lifetimes)

    def probabilities(self, tower: str) -> tuple[Tensor, Tensor]:
        """fp32 softmaxes of both kinds of weights at the temperature."""
        counts, lives = self.alphas(tower)
        return torch.softmax(counts.float() / self.temperature, -1), torch.softmax(lives.float() / self.temperature, -1)

    def gates(self, tower: str) -> Tensor:
        """``[depth, t, depth]`` fp32: ``p[b, j, b'] = P(c_b > j) * P(L_{b,j} > b' - b)``, 0 for ``b' < b``."""
        counts, lives = self.probabilities(tower)
        depth, t = lives.shape[:2]
        more = counts.flip(-1).cumsum(-1).flip(-1)[:, 1:]  # [depth, t]: P(c_b > j) = sum_{c > j} P(c_b = c)
        offsets = torch.arange(depth, device=counts.device)
        exceeds = torch.tensor([self.space.lifetime_exceeds(d) for d in range(depth)], dtype=lives.dtype, device=lives.device)
        survive = lives @ exceeds.t()  # [depth, t, depth offsets]: P(L > d)
        after = offsets[None, :] - offsets[:, None]  # [b, b'] = b' - b
        survive = survive.gather(-1, after.clamp_min(0)[:, None, :].expand(depth, t, depth))
        return more[:, :, None] * survive * (after >= 0)[:, None, :].to(survive.dtype)

    def entropies(self, tower: str) -> tuple[Tensor, Tensor]:
        """Entropies (nats) of the count mixtures ``[depth]`` and lifetime mixtures ``[depth, t]``."""
        counts, lives = self.probabilities(tower)
        return (-(counts * counts.clamp_min(1e-12).log()).sum(-1), -(lives * lives.clamp_min(1e-12).log()).sum(-1))


def gate_bias(gates: Tensor) -> Tensor:
    """``log(max(p, GATE_FLOOR))``, and ``-inf`` where ``p`` is exactly 0."""
    return torch.where(gates > 0, gates.clamp_min(GATE_FLOOR).log(), torch.full_like(gates, float("-inf")))
