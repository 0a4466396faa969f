"""The tiny random CLIP of the demo, the benchmark's --tiny mode and the tests."""

from __future__ import annotations

import clip
import torch

from trainers.dpl_core.tiny_clip import TINY_CONFIG, make_tiny_clip


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold equal tensors under the same names."""
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def test_same_seed_same_weights_and_the_callers_random_state_is_kept():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = make_tiny_clip(seed=4)
    assert torch.equal(torch.rand(3), expected_next)
    assert same_weights(first, make_tiny_clip(seed=4))
    assert not torch.equal(first.visual.conv1.weight, make_tiny_clip(seed=5).visual.conv1.weight)
    assert len(first.transformer.resblocks) == TINY_CONFIG["transformer_layers"] == 3
    assert len(first.visual.transformer.resblocks) == TINY_CONFIG["vision_layers"] == 2
    assert not first.training and first.visual.conv1.weight.dtype == torch.float32


def test_a_maple_style_clip_gets_the_vanilla_design_details(monkeypatch):
    """In a MaPLe checkout (the demo after install_into.sh) CLIP's constructor needs design_details."""
    vanilla = clip.model.CLIP
    seen = []

    class MapleCLIP(vanilla):
        def __init__(self, *args, design_details: dict, **kwargs) -> None:
            seen.append(design_details)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(clip.model, "CLIP", MapleCLIP)
    model = make_tiny_clip(seed=2)
    assert [(d["trainer"], d["vision_depth"], d["language_depth"]) for d in seen] == [("CoOp", 0, 0)]
    monkeypatch.setattr(clip.model, "CLIP", vanilla)
    assert same_weights(model, make_tiny_clip(seed=2))
