"""Tiny randomly initialised CLIP models, for the demo, the benchmark's quick mode and the tests.

Random weights check behaviour, never accuracy. Widths are multiples of 64 because CLIP's
``build_model`` derives the number of heads as ``width // 64``; the two towers get different
depths and widths so that mixing them up fails loudly.

Works with whichever ``clip`` package is importable, as :mod:`.clip_loader` does: OpenAI's, or
the modified copy in a MaPLe checkout (the demo runs there after ``scripts/install_into.sh``).
"""

from __future__ import annotations

import inspect
import os

import clip
import torch

from .clip_loader import VANILLA_DESIGN_DETAILS

# clip.model.CLIP's constructor arguments: a ViT CLIP with 2 image blocks of width 128 (32x32
# images in 8x8 patches, 17 tokens) and 3 text blocks of width 192 on CLIP's 77-token context.
TINY_CONFIG = dict(
    embed_dim=64,
    image_resolution=32,
    vision_layers=2,
    vision_width=128,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=192,
    transformer_heads=3,
    transformer_layers=3,
)


def make_tiny_clip(seed: int = 0, **overrides: int) -> torch.nn.Module:
    """A randomly initialised ViT CLIP (fp32, eval mode) of :data:`TINY_CONFIG` dimensions.

    ``overrides`` replace entries of :data:`TINY_CONFIG`. The same ``seed`` gives the same
    weights; the caller's CPU random state is left as it was.
    """
    config: dict[str, object] = {**TINY_CONFIG, **overrides}
    if "design_details" in inspect.signature(clip.model.CLIP).parameters:
        config["design_details"] = dict(VANILLA_DESIGN_DETAILS)  # MaPLe's CLIP insists on it
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(**config)
        # CLIP leaves these at their constructor values; randomise them so tests see real signal.
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.data.normal_(1.0, 0.1)
                module.bias.data.normal_(0.0, 0.1)
    return model.eval()


def write_tiny_checkpoint(path: str | os.PathLike, seed: int = 0, **overrides: int) -> str:
    """Save a tiny CLIP's state dict at ``path`` (a plain state dict, as fine-tuned CLIPs ship).

    Returns ``path`` as a string, ready for ``TRAINER.DPL.CLIP_CHECKPOINT``.
    """
    path = os.fspath(path)
    torch.save(make_tiny_clip(seed, **overrides).state_dict(), path)
    return path
