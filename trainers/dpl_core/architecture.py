"""The prompt architecture as plain data.

A :class:`PromptArchitecture` says which prompts every transformer block of both CLIP towers
receives. It is produced by the search (:func:`decode`) or written by hand (the presets of
CoOp, VPT, IVLP, MaPLe), stored as ``arch.json`` and read by the training stage. Two kinds of
prompts, both "tokens with a lifetime" (see :class:`TokenGroup`):

* per-block **key/value prompts** (``text_lengths``/``image_lengths``, DPL's search space):
  tokens that live one block and serve only as keys/values of every position (in the text
  tower they stand before SOT, so every position sees them);
* **token groups**: tokens that enter a tower at a block and stay sequence positions for a
  number of blocks (image: after the patches; text: after SOT, before the class tokens).

This module is pure Python: no torch, no Dassl.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from trainers.dpl_core.run_folder import atomic_write

FORMAT_NAME = "dpl-architecture"
FORMAT_VERSION = 3  # 2 added "model", 3 the token groups; version 1 and 2 files are still read
TOWERS = ("text", "image")
# The files a search writes into its output folder: the decoded architecture (this format)
# and one JSON line of raw alphas per finished epoch.
ARCH_FILE = "arch.json"
HISTORY_FILE = "alpha_history.jsonl"


TOKEN_SOURCES = ("learned", "coupled")


class ArchitectureError(ValueError):
    """An architecture that is malformed or does not fit the model it is used with."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TokenGroup:
    """``count`` prompt tokens that enter a tower at block ``block`` and live ``lifetime`` blocks.

    While alive a token is a sequence position: it is queried, goes through the MLP, and its
    output is its input in the next block. In the last block of its life its output is never
    read, so it serves only as keys/values there. Hand-designed deep prompts are groups:
    VPT-deep/IVLP/MaPLe put a group of lifetime 1 into every prompted block (each replaces the
    previous one in the same slots) and the last prompted group lives to the end; CoOp's
    context is one group entering at block 0 that lives to the end.

    Block-0 tokens enter with the input: in the image tower after the positional embedding and
    before ``ln_pre`` (no positional embedding of their own); in the text tower at positions
    ``1..count`` after SOT, with the positional embeddings of those positions (the class tokens
    move back by ``count``). Later groups enter as they are.

    Attributes:
        block: entry block (0-based).
        count: number of tokens (>= 1).
        lifetime: blocks alive, the entry block included (>= 1); None = to the tower's end; or
            one such value per token (Modular Prompt Learning's stack removes single tokens).
        source: ``learned`` (own parameters) or ``coupled``: a learned linear map of the other
            tower's group entering at the same block (MaPLe's image prompts).
        init: text tower, learned: the words whose token embeddings start the tokens (CoOp's
            and MaPLe's "a photo of a": the first ``count`` tokens); "" = N(0, std^2).
        per_class: text tower, learned: one set of tokens per class (CoOp's class-specific
            context).
        positional: block-0 text tokens take the positional embeddings of positions 1..count
            and move the class tokens back (CoOp's layout); False: they enter as later tokens
            do, without a positional embedding, and the class tokens keep their positions (the
            token search's space, whose soft counts cannot move positions). Positional groups
            come before the others of block 0.
    """

    block: int
    count: int
    lifetime: int | None | tuple[int | None, ...] = 1
    source: str = "learned"
    init: str = ""
    per_class: bool = False
    positional: bool = True

    def __post_init__(self) -> None:
        if not _is_int(self.block) or self.block < 0:
            raise ArchitectureError(f"token group block must be an integer >= 0, got {self.block!r}")
        if not _is_int(self.count) or self.count < 1:
            raise ArchitectureError(f"token group count must be an integer >= 1, got {self.count!r}")
        if isinstance(self.lifetime, (list, tuple)):
            object.__setattr__(self, "lifetime", tuple(self.lifetime))
            if len(self.lifetime) != self.count:
                raise ArchitectureError(f"token group lifetimes must give one value per token ({self.count}), got {list(self.lifetime)}")
        for value in self.lifetimes:
            if value is not None and (not _is_int(value) or value < 1):
                raise ArchitectureError(f"token group lifetime must be an integer >= 1 or null (to the end), got {self.lifetime!r}")
        if self.source not in TOKEN_SOURCES:
            raise ArchitectureError(f"token group source must be one of {TOKEN_SOURCES}, got {self.source!r}")
        if not isinstance(self.init, str) or not isinstance(self.per_class, bool) or not isinstance(self.positional, bool):
            raise ArchitectureError(f"token group init must be a string, per_class and positional booleans, got "
                                    f"{self.init!r}, {self.per_class!r}, {self.positional!r}")
        if self.source == "coupled" and (self.init or self.per_class):
            raise ArchitectureError("a coupled token group is a map of another group: it takes no init and no per_class")

    @property
    def lifetimes(self) -> tuple[int | None, ...]:
        """The lifetime of each token."""
        return self.lifetime if isinstance(self.lifetime, tuple) else (self.lifetime,) * self.count

    def last_blocks(self, depth: int) -> tuple[int, ...]:
        """The last block each token is alive in, for a tower of ``depth`` blocks."""
        return tuple(depth - 1 if life is None else self.block + life - 1 for life in self.lifetimes)

    def describe(self) -> str:
        def blocks(life: int | None) -> str:
            return "to the end" if life is None else f"{life} block{'s' * (life > 1)}"

        if isinstance(self.lifetime, tuple):
            life = "lifetimes " + " ".join("end" if v is None else str(v) for v in self.lifetime)
        else:
            life = blocks(self.lifetime)
        extras = [self.source] if self.source != "learned" else []
        extras += [f"init '{self.init}'"] * bool(self.init) + ["per class"] * self.per_class
        extras += ["no position"] * (not self.positional)
        return f"{self.count}@{self.block} ({life}{', ' + ', '.join(extras) if extras else ''})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.lifetime, tuple):
            data["lifetime"] = list(self.lifetime)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "TokenGroup":
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not {"block", "count"} <= set(data) or set(data) - set(names):
            raise ArchitectureError(f"{source}: a token group is an object with keys {names} (block and count required), got {data!r}")
        return cls(**data)


def default_candidates(max_length: int) -> tuple[int, ...]:
    """Candidate context lengths ``0..max_length`` (the paper's search space)."""
    if max_length < 0:
        raise ArchitectureError(f"max_length must be >= 0, got {max_length}")
    return tuple(range(max_length + 1))


@dataclass(frozen=True)
class ModelShape:
    """The shape of a loaded CLIP that an architecture must fit (read by ``clip_loader.model_shape``)."""

    text_depth: int
    text_width: int
    image_depth: int
    image_width: int
    resolution: int  # input images are resolution x resolution pixels
    patch_size: int

    @classmethod
    def from_dict(cls, data: Any, source: str) -> "ModelShape":
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise ArchitectureError(f"{source}: \"model\" must hold exactly {names}, got {data!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in data.values()):
            raise ArchitectureError(f"{source}: \"model\" values must be positive integers, got {data}")
        return cls(**data)

    def describe(self) -> str:
        return (
            f"text {self.text_depth} blocks x {self.text_width}, image {self.image_depth} blocks x "
            f"{self.image_width}, {self.resolution}px input, patch {self.patch_size}"
        )


@dataclass(frozen=True)
class PromptArchitecture:
    """The prompts of both towers: per-block key/value prompt lengths and token groups.

    Attributes:
        text_lengths: key/value prompt vectors per text-tower block, one entry per block (so
            its length is the tower's depth).
        image_lengths: key/value prompt vectors per image-tower block, one entry per block.
        candidates: the lengths the search could choose from (sorted, distinct, >= 0).
        backbone: the CLIP backbone name the architecture was searched with (e.g.
            ``"ViT-B/16"``); empty when unknown.
        model: the shape of the CLIP actually loaded for the search (a fine-tuned or tiny
            checkpoint may carry any backbone name); None when unknown (hand-written lengths,
            version-1 files).
        text_groups, image_groups: the token groups of each tower, in slot order (a group's
            tokens follow those of earlier groups alive in the same block).
    """

    text_lengths: tuple[int, ...]
    image_lengths: tuple[int, ...]
    candidates: tuple[int, ...] = field(default=tuple(range(7)))
    backbone: str = ""
    model: ModelShape | None = None
    text_groups: tuple[TokenGroup, ...] = ()
    image_groups: tuple[TokenGroup, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from JSON or configs but store tuples so the object stays hashable.
        for name in ("text_lengths", "image_lengths", "candidates"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ArchitectureError(f"{name} must be a list of integers, got {value!r}")
            items = tuple(value)
            for item in items:
                if isinstance(item, bool) or not isinstance(item, int):
                    raise ArchitectureError(f"{name} must hold integers, got {item!r} in {list(items)}")
                if item < 0:
                    raise ArchitectureError(f"{name} must be non-negative, got {item} in {list(items)}")
            object.__setattr__(self, name, items)
        if not self.candidates:
            raise ArchitectureError("candidates must not be empty")
        if list(self.candidates) != sorted(set(self.candidates)):
            raise ArchitectureError(f"candidates must be sorted and distinct, got {list(self.candidates)}")
        if not self.text_lengths and not self.image_lengths:
            raise ArchitectureError("an architecture needs at least one block in one tower")
        allowed = set(self.candidates)
        for tower in TOWERS:
            bad = [(block, n) for block, n in enumerate(self.lengths(tower)) if n not in allowed]
            if bad:
                raise ArchitectureError(
                    f"{tower} lengths {bad[:5]} (block, length) are not among the candidates "
                    f"{list(self.candidates)}"
                )
        if not isinstance(self.backbone, str):
            raise ArchitectureError(f"backbone must be a string, got {self.backbone!r}")
        if self.model is not None and (
            self.model.text_depth != len(self.text_lengths) or self.model.image_depth != len(self.image_lengths)
        ):
            raise ArchitectureError(
                f"the lengths cover {len(self.text_lengths)} text and {len(self.image_lengths)} image blocks, "
                f"but the model they were made for has {self.model.text_depth} and {self.model.image_depth}"
            )
        for tower in TOWERS:
            self._check_groups(tower)

    def _check_groups(self, tower: str) -> None:
        name = f"{tower}_groups"
        value = getattr(self, name)
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
            raise ArchitectureError(f"{name} must be a list of token groups, got {value!r}")
        groups = tuple(value)
        if not all(isinstance(g, TokenGroup) for g in groups):
            raise ArchitectureError(f"{name} must hold TokenGroup objects, got {groups!r}")
        object.__setattr__(self, name, groups)
        depth = len(self.lengths(tower))
        other = "image" if tower == "text" else "text"
        for index, group in enumerate(groups):
            where = f"{tower} group {index} ({group.describe()})"
            if group.block >= depth:
                raise ArchitectureError(f"{where} enters at block {group.block}, but the {tower} tower has {depth} blocks")
            if max(group.last_blocks(depth)) >= depth:
                raise ArchitectureError(f"{where} would live to block {max(group.last_blocks(depth))}, past the {tower} tower's last block {depth - 1}")
            if tower == "image" and (group.init or group.per_class or not group.positional):
                raise ArchitectureError(f"{where}: init words, per_class and positional false exist in the text tower only")
            if group.source == "coupled":
                source = self.coupling_source(tower, index)
                if source is None:
                    raise ArchitectureError(f"{where} is coupled, but the {other} tower has no learned group entering at block {group.block}")
                if self.groups(other)[source].count != group.count:
                    raise ArchitectureError(f"{where} is coupled to {other} group {source}, which has "
                                            f"{self.groups(other)[source].count} tokens, not {group.count}")
        first = [g.positional for g in groups if g.block == 0]
        if first != sorted(first, reverse=True):
            raise ArchitectureError(f"{tower} groups of block 0: the positional ones must come before the others, got {first}")

    def groups(self, tower: str) -> tuple[TokenGroup, ...]:
        """The token groups of ``tower``."""
        if tower not in TOWERS:
            raise ArchitectureError(f"unknown tower {tower!r}; expected one of {TOWERS}")
        return self.text_groups if tower == "text" else self.image_groups

    def coupling_source(self, tower: str, index: int) -> int | None:
        """Index of the other tower's learned group that coupled group ``index`` of ``tower``
        maps, or None: the k-th coupled group entering at a block maps the other tower's k-th
        learned group entering there, or its only one (Modular Prompt Learning maps one text
        group through several maps)."""
        other = "image" if tower == "text" else "text"
        block = self.groups(tower)[index].block
        rank = sum(1 for g in self.groups(tower)[:index] if g.block == block and g.source == "coupled")
        sources = [i for i, g in enumerate(self.groups(other)) if g.block == block and g.source == "learned"]
        if len(sources) == 1:
            return sources[0]
        return sources[rank] if rank < len(sources) else None

    def lengths(self, tower: str) -> tuple[int, ...]:
        """Per-block lengths of ``tower`` (``"text"`` or ``"image"``)."""
        if tower == "text":
            return self.text_lengths
        if tower == "image":
            return self.image_lengths
        raise ArchitectureError(f"unknown tower {tower!r}; expected one of {TOWERS}")

    def total_tokens(self, tower: str) -> int:
        """Key/value prompt vectors summed over the blocks of ``tower`` plus its group tokens."""
        return sum(self.lengths(tower)) + sum(g.count for g in self.groups(tower))

    def check_fits(
        self, text_depth: int, image_depth: int, backbone: str | None = None, model: ModelShape | None = None
    ) -> None:
        """Raise :class:`ArchitectureError` unless the depths match, and the backbone name and the
        loaded model's shape (when both sides know them)."""
        problems = []
        if len(self.text_lengths) != text_depth:
            problems.append(f"text tower has {text_depth} blocks but the architecture lists {len(self.text_lengths)}")
        if len(self.image_lengths) != image_depth:
            problems.append(f"image tower has {image_depth} blocks but the architecture lists {len(self.image_lengths)}")
        if backbone and self.backbone and backbone != self.backbone:
            problems.append(f"it was searched for {self.backbone} but the model is {backbone}")
        if model is not None and self.model is not None and model != self.model:
            problems.append(f"it was searched on a CLIP of {self.model.describe()} but the loaded one has {model.describe()}")
        if problems:
            raise ArchitectureError("architecture does not fit the model: " + "; ".join(problems))

    def summary(self) -> str:
        """One line, e.g. ``text: 0 2 6 (8 tokens) | image: 1 0 3 + groups 2@0 (to the end) (6 tokens)``."""
        parts = []
        for tower in TOWERS:
            lengths = " ".join(str(n) for n in self.lengths(tower))
            groups = self.groups(tower)
            listed = f" + groups {', '.join(g.describe() for g in groups)}" if groups else ""
            parts.append(f"{tower}: {lengths}{listed} ({self.total_tokens(tower)} tokens)")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready, self-describing dictionary."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "backbone": self.backbone,
            "candidates": list(self.candidates),
            "text_lengths": list(self.text_lengths),
            "image_lengths": list(self.image_lengths),
            "model": None if self.model is None else asdict(self.model),
            "text_groups": [g.to_dict() for g in self.text_groups],
            "image_groups": [g.to_dict() for g in self.image_groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "architecture") -> "PromptArchitecture":
        """Inverse of :meth:`to_dict`; ``source`` names the origin in error messages."""
        if not isinstance(data, dict):
            raise ArchitectureError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_NAME:
            raise ArchitectureError(f"{source}: not a DPL architecture (expected \"format\": \"{FORMAT_NAME}\")")
        version = data.get("version")
        if version not in (1, 2, FORMAT_VERSION):
            raise ArchitectureError(f"{source}: unsupported version {version!r}, expected 1 to {FORMAT_VERSION}")
        expected = {"format", "version", "backbone", "candidates", "text_lengths", "image_lengths"}
        if version >= 2:
            expected.add("model")
        if version >= 3:
            expected |= {"text_groups", "image_groups"}
        missing = sorted(expected - set(data))
        unknown = sorted(set(data) - expected)
        if missing or unknown:
            raise ArchitectureError(f"{source}: missing keys {missing}, unknown keys {unknown}")
        model = data.get("model")
        try:
            groups = {}
            for tower in TOWERS:
                listed = data.get(f"{tower}_groups", [])
                if not isinstance(listed, list):
                    raise ArchitectureError(f"\"{tower}_groups\" must be a list, got {listed!r}")
                groups[tower] = tuple(TokenGroup.from_dict(g, f"{tower}_groups[{i}]") for i, g in enumerate(listed))
            return cls(
                text_lengths=data["text_lengths"],
                image_lengths=data["image_lengths"],
                candidates=data["candidates"],
                backbone=data["backbone"],
                model=None if model is None else ModelShape.from_dict(model, source),
                text_groups=groups["text"],
                image_groups=groups["image"],
            )
        except ArchitectureError as error:
            raise ArchitectureError(f"{source}: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (atomically: a cut-off write never leaves a half file)."""
        atomic_write(path, lambda handle: handle.write(json.dumps(self.to_dict(), indent=2) + "\n"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PromptArchitecture":
        """Read a file written by :meth:`save`."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ArchitectureError(f"architecture file not found: {path} (expected the arch.json of a DPLSearch run)")
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ArchitectureError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, source=path)


def decode_tower(alpha: Sequence[Sequence[float]], candidates: Sequence[int]) -> tuple[int, ...]:
    """Per-block argmax of architecture weights; ties go to the shorter length.

    Args:
        alpha: ``[blocks][len(candidates)]`` raw architecture weights (softmax is monotonic,
            so argmax over alphas equals argmax over mixture weights at any temperature).
        candidates: sorted candidate lengths, one per column.
    """
    lengths = []
    for block, row in enumerate(alpha):
        row = [float(v) for v in row]
        if len(row) != len(candidates):
            raise ArchitectureError(f"block {block}: {len(row)} weights for {len(candidates)} candidates")
        if any(math.isnan(v) for v in row):
            raise ArchitectureError(f"block {block}: architecture weights contain NaN: {row}")
        best = max(row)
        lengths.append(candidates[row.index(best)])  # first maximum = shortest length
    return tuple(lengths)


def decode(
    alpha_text: Sequence[Sequence[float]],
    alpha_image: Sequence[Sequence[float]],
    candidates: Sequence[int],
    backbone: str = "",
    model: ModelShape | None = None,
) -> PromptArchitecture:
    """Architecture chosen by the search: per block the candidate with the largest weight."""
    candidates = tuple(candidates)
    return PromptArchitecture(
        text_lengths=decode_tower(alpha_text, candidates),
        image_lengths=decode_tower(alpha_image, candidates),
        candidates=candidates,
        backbone=backbone,
        model=model,
    )


def uniform(
    length: int, depth: int, text_depth: int, image_depth: int, towers: Sequence[str] = TOWERS, backbone: str = ""
) -> PromptArchitecture:
    """A hand-designed architecture: ``length`` prompts in the first ``depth`` blocks of ``towers``.

    This expresses the manual deep prompts of VPT-deep / IVLP (e.g. 2 prompts in 9 blocks of
    both towers) so they run on the same engine as searched architectures.
    """
    for tower in towers:
        if tower not in TOWERS:
            raise ArchitectureError(f"unknown tower {tower!r}; expected one of {TOWERS}")

    def tower_lengths(tower: str, tower_depth: int) -> tuple[int, ...]:
        if depth > tower_depth:
            raise ArchitectureError(f"depth {depth} exceeds the {tower} tower's {tower_depth} blocks")
        n = length if tower in towers else 0
        return tuple(n if block < depth else 0 for block in range(tower_depth))

    return PromptArchitecture(
        text_lengths=tower_lengths("text", text_depth),
        image_lengths=tower_lengths("image", image_depth),
        candidates=tuple(sorted({0, length})),
        backbone=backbone,
    )


def deep_prompt_groups(count: int, depth: int, init: str = "", source: str = "learned") -> tuple[TokenGroup, ...]:
    """Deep prompts as VPT-deep, IVLP and MaPLe define them: ``count`` tokens in each of the
    first ``depth`` blocks, each set replacing the previous block's in the same slots (lifetime
    1); the last prompted block's tokens stay in the sequence to the tower's end.

    Args:
        init: the block-0 tokens' init words (text tower); deeper tokens start random.
        source: ``coupled`` for MaPLe's image side (a map of the text group of each block).
    """
    if depth < 1:
        raise ArchitectureError(f"deep prompts need a depth >= 1, got {depth}")
    return tuple(
        TokenGroup(block, count, None if block == depth - 1 else 1, source, init if block == 0 else "")
        for block in range(depth)
    )


def context_group(count: int, init: str = "", per_class: bool = False) -> tuple[TokenGroup, ...]:
    """CoOp's context: ``count`` text tokens after SOT from block 0 to the end."""
    return (TokenGroup(0, count, None, init=init, per_class=per_class),)


def modular_groups(
    n_ctx: int, n_add: int, n_rm: int, depth: int, source: str = "learned", init: str = ""
) -> tuple[TokenGroup, ...]:
    """Modular Prompt Learning's add/remove/carry rule as token groups with lifetimes.

    Block 0 receives ``n_ctx`` tokens. Each block ``l`` in ``1..depth-1`` first removes the
    ``n_rm`` newest tokens (the tail of the prompt area: they were last alive in block
    ``l - 1``), then adds ``n_add`` groups of ``n_ctx`` tokens (one group per map, in map
    order); every other token is carried. After block ``depth - 1`` every token still present
    lives to the tower's end.

    Args:
        source: ``coupled`` for MPL's image tower (every added group is its own map of the text
            tokens entering at its block); ``learned`` for independent tokens.
        init: the block-0 tokens' init words (text tower, learned).

    Raises:
        ArchitectureError: when a block would remove more prompt tokens than are present (the
            original code then removes patch tokens; its assert checks ``n_rm <= n_add * n_ctx``).
    """
    for name, value, least in (("N_CTX", n_ctx, 1), ("N_ADD_OP", n_add, 0), ("N_RM_OP", n_rm, 0), ("PROMPT_DEPTH", depth, 1)):
        if not _is_int(value) or value < least:
            raise ArchitectureError(f"{name} must be an integer >= {least}, got {value!r}")
    entries = [(0, n_ctx)] + [(block, n_ctx) for block in range(1, depth) for _ in range(n_add)]
    lifetimes: list[list[int | None]] = [[None] * count for _, count in entries]
    stack: list[tuple[int, int]] = [(0, j) for j in range(n_ctx)]  # (group, token), oldest first
    group = 1
    for block in range(1, depth):
        if n_rm > len(stack):
            raise ArchitectureError(
                f"block {block} would remove {n_rm} prompt tokens but only {len(stack)} are present "
                f"(N_CTX {n_ctx}, N_ADD_OP {n_add}, N_RM_OP {n_rm}): the rest are the class token and the patches"
            )
        for g, j in stack[len(stack) - n_rm :]:
            lifetimes[g][j] = block - entries[g][0]
        del stack[len(stack) - n_rm :]
        for _ in range(n_add):
            stack += [(group, j) for j in range(n_ctx)]
            group += 1
    groups = []
    for g, (block, count) in enumerate(entries):
        lives = tuple(lifetimes[g])
        groups.append(TokenGroup(block, count, lives[0] if len(set(lives)) == 1 else lives, source,
                                 init if g == 0 else ""))  # fmt: skip
    return tuple(groups)


def alive_tokens(groups: Sequence[TokenGroup], depth: int) -> list[list[tuple[int, int]]]:
    """Per block, the ``(group, token)`` pairs alive in it (entered, not past their last block),
    in slot order."""
    last = [g.last_blocks(depth) for g in groups]
    return [
        [(g, j) for g, group in enumerate(groups) for j in range(group.count) if group.block <= block <= last[g][j]]
        for block in range(depth)
    ]
