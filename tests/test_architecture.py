"""The architecture format: decoding, validation, JSON round trip, summary."""

from __future__ import annotations

import json

import pytest

from trainers.dpl_core.architecture import (
    ArchitectureError,
    PromptArchitecture,
    decode,
    decode_tower,
    default_candidates,
    uniform,
)


def test_decode_takes_argmax_and_breaks_ties_towards_shorter_length():
    alpha = [
        [0.1, 0.5, 0.2],  # clear winner: candidate index 1
        [0.3, 0.3, 0.1],  # tie between 0 and 2 -> the shorter
        [0.0, 0.7, 0.7],  # tie between 4 and 6 -> 4
    ]
    assert decode_tower(alpha, (0, 4, 6)) == (4, 0, 4)
    arch = decode(alpha, [[1.0, 1.0, 1.0]], (0, 4, 6), backbone="ViT-B/16")
    assert arch.text_lengths == (4, 0, 4) and arch.image_lengths == (0,)
    assert arch.backbone == "ViT-B/16" and arch.candidates == (0, 4, 6)


def test_decode_rejects_wrong_row_width_and_nan():
    with pytest.raises(ArchitectureError, match="block 1: 2 weights for 3 candidates"):
        decode_tower([[0, 1, 2], [0, 1]], (0, 1, 2))
    with pytest.raises(ArchitectureError, match="NaN"):
        decode_tower([[0.0, float("nan")]], (0, 1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text_lengths=(1, -1), image_lengths=(0,)), "non-negative"),
        (dict(text_lengths=(1, 9), image_lengths=(0,)), r"text lengths \[\(1, 9\)\]"),
        (dict(text_lengths=(1,), image_lengths=(0,), candidates=(2, 1, 0)), "sorted and distinct"),
        (dict(text_lengths=(1.5,), image_lengths=(0,)), "integers"),
        (dict(text_lengths="12", image_lengths=(0,)), "list of integers"),
        (dict(text_lengths=(), image_lengths=()), "at least one block"),
        (dict(text_lengths=(1,), image_lengths=(0,), candidates=()), "must not be empty"),
    ],
)
def test_validation_errors(kwargs, message):
    with pytest.raises(ArchitectureError, match=message):
        PromptArchitecture(**kwargs)


def test_check_fits_reports_depth_and_backbone_mismatch():
    arch = PromptArchitecture((1,) * 12, (0,) * 12, backbone="ViT-B/16")
    arch.check_fits(12, 12, "ViT-B/16")
    with pytest.raises(ArchitectureError, match="image tower has 24 blocks but the architecture lists 12"):
        arch.check_fits(12, 24)
    with pytest.raises(ArchitectureError, match="searched for ViT-B/16 but the model is ViT-L/14"):
        arch.check_fits(12, 12, "ViT-L/14")


def test_json_round_trip_and_lists_are_normalised(tmp_path):
    arch = PromptArchitecture([0, 2, 6], [1, 0], candidates=list(range(7)), backbone="ViT-B/32")
    assert isinstance(arch.text_lengths, tuple)
    path = tmp_path / "arch.json"
    arch.save(path)
    loaded = PromptArchitecture.load(path)
    assert loaded == arch and hash(loaded) == hash(arch)
    data = json.loads(path.read_text())
    assert data["format"] == "dpl-architecture" and data["text_lengths"] == [0, 2, 6]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ArchitectureError, match="not found: .*missing.json"):
        PromptArchitecture.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchitectureError, match="bad.json: not valid JSON"):
        PromptArchitecture.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"text": [1]}))
    with pytest.raises(ArchitectureError, match="other.json: not a DPL architecture"):
        PromptArchitecture.load(other)
    data = PromptArchitecture((1,), (2,)).to_dict()
    data["image_lengths"] = [9]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    with pytest.raises(ArchitectureError, match=r"wrong.json: image lengths \[\(0, 9\)\]"):
        PromptArchitecture.load(wrong)


def test_summary_line():
    arch = PromptArchitecture((0, 2, 6), (1, 0, 3))
    assert arch.summary() == "text: 0 2 6 (8 tokens) | image: 1 0 3 (4 tokens)"


def test_uniform_presets():
    both = uniform(2, 9, text_depth=12, image_depth=12)
    assert both.text_lengths == (2,) * 9 + (0,) * 3 and both.image_lengths == both.text_lengths
    image_only = uniform(8, 12, 12, 12, towers=("image",))
    assert image_only.text_lengths == (0,) * 12 and image_only.image_lengths == (8,) * 12
    with pytest.raises(ArchitectureError, match="exceeds the text tower's 12 blocks"):
        uniform(2, 13, 12, 24)
    assert default_candidates(3) == (0, 1, 2, 3)
