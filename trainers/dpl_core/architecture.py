"""The searched prompt architecture as plain data.

A :class:`PromptArchitecture` says how many deep prompt vectors every transformer block of
both CLIP towers receives. It is produced by the search (:func:`decode`), stored as
``arch.json`` and read by the training stage. This module is pure Python: no torch, no Dassl.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from trainers.dpl_core.run_folder import atomic_write

FORMAT_NAME = "dpl-architecture"
FORMAT_VERSION = 2  # 2 added "model"; version 1 files (without it) are still read
TOWERS = ("text", "image")
# The files a search writes into its output folder: the decoded architecture (this format)
# and one JSON line of raw alphas per finished epoch.
ARCH_FILE = "arch.json"
HISTORY_FILE = "alpha_history.jsonl"


class ArchitectureError(ValueError):
    """An architecture that is malformed or does not fit the model it is used with."""


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
    """Per-block prompt lengths of both towers.

    Attributes:
        text_lengths: prompt vectors per text-tower block, one entry per block.
        image_lengths: prompt vectors per image-tower block, one entry per block.
        candidates: the lengths the search could choose from (sorted, distinct, >= 0).
        backbone: the CLIP backbone name the architecture was searched with (e.g.
            ``"ViT-B/16"``); empty when unknown.
        model: the shape of the CLIP actually loaded for the search (a fine-tuned or tiny
            checkpoint may carry any backbone name); None when unknown (hand-written lengths,
            version-1 files).
    """

    text_lengths: tuple[int, ...]
    image_lengths: tuple[int, ...]
    candidates: tuple[int, ...] = field(default=tuple(range(7)))
    backbone: str = ""
    model: ModelShape | None = None

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

    def lengths(self, tower: str) -> tuple[int, ...]:
        """Per-block lengths of ``tower`` (``"text"`` or ``"image"``)."""
        if tower == "text":
            return self.text_lengths
        if tower == "image":
            return self.image_lengths
        raise ArchitectureError(f"unknown tower {tower!r}; expected one of {TOWERS}")

    def total_tokens(self, tower: str) -> int:
        """Prompt vectors summed over the blocks of ``tower``."""
        return sum(self.lengths(tower))

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
        """One line, e.g. ``text: 0 2 6 (8 tokens) | image: 1 0 3 (4 tokens)``."""
        parts = []
        for tower in TOWERS:
            lengths = " ".join(str(n) for n in self.lengths(tower))
            parts.append(f"{tower}: {lengths} ({self.total_tokens(tower)} tokens)")
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "architecture") -> "PromptArchitecture":
        """Inverse of :meth:`to_dict`; ``source`` names the origin in error messages."""
        if not isinstance(data, dict):
            raise ArchitectureError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_NAME:
            raise ArchitectureError(f"{source}: not a DPL architecture (expected \"format\": \"{FORMAT_NAME}\")")
        version = data.get("version")
        if version not in (1, FORMAT_VERSION):
            raise ArchitectureError(f"{source}: unsupported version {version!r}, expected 1 or {FORMAT_VERSION}")
        expected = {"format", "version", "backbone", "candidates", "text_lengths", "image_lengths"}
        if version >= 2:
            expected.add("model")
        missing = sorted(expected - set(data))
        unknown = sorted(set(data) - expected)
        if missing or unknown:
            raise ArchitectureError(f"{source}: missing keys {missing}, unknown keys {unknown}")
        model = data.get("model")
        try:
            return cls(
                text_lengths=data["text_lengths"],
                image_lengths=data["image_lengths"],
                candidates=data["candidates"],
                backbone=data["backbone"],
                model=None if model is None else ModelShape.from_dict(model, source),
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
