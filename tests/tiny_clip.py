"""Tiny randomly initialised CLIP models written to disk, for tests and the demo.

Random weights check behaviour, never accuracy. Widths are multiples of 64 because CLIP's
``build_model`` derives the number of heads as ``width // 64``; the two towers get different
depths and widths so that mixing them up fails loudly.
"""

from __future__ import annotations

import os

import clip
import torch

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
    """A randomly initialised ViT CLIP (fp32, eval mode) of :data:`TINY_CONFIG` dimensions."""
    config = {**TINY_CONFIG, **overrides}
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = clip.model.CLIP(**config)
        # CLIP leaves these at their constructor values; randomise them so tests see real signal.
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.data.normal_(1.0, 0.1)
                module.bias.data.normal_(0.0, 0.1)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def write_tiny_checkpoint(path: str | os.PathLike, seed: int = 0, **overrides: int) -> str:
    """Save a tiny CLIP's state dict at ``path`` (a plain state dict, as fine-tuned CLIPs ship)."""
    path = os.fspath(path)
    torch.save(make_tiny_clip(seed, **overrides).state_dict(), path)
    return path
