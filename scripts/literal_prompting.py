"""Literal, obviously-correct implementations of prompt tokens, to check the engine against
(tests/test_token_prompts.py) and to time it against (scripts/benchmark_presets.py).

Two kinds, both built from the definitions and run on the real token sequence through CLIP's
own blocks on the full 77-token text context (no truncation, no shortcut, every position
queried and sent through the MLP):

* the methods as their papers' code defines them (CoOp, VPT-deep, IVLP, MaPLe): the class
  prompt holds the context slots, deep prompts overwrite the same slots block after block, and
  every block is CLIP's own ``ResidualAttentionBlock.forward`` (with its own causal mask);
* :func:`literal_groups_text` / :func:`literal_groups_image`: any token groups with
  lifetimes, by keeping the list of live tokens and concatenating the sequence at each block.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from clip import clip
from torch import Tensor

from trainers.dpl_core.architecture import TokenGroup


def tokenize(texts: Sequence[str]) -> Tensor:
    return clip.tokenize(list(texts))


def logits(clip_model, image_features: Tensor, text_features: Tensor) -> Tensor:
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    return clip_model.logit_scale.exp() * image_features @ text_features.t()


# ----------------------------------------------------------------------------- the methods' own form


def slotted_text_features(clip_model, tokenized: Tensor, ctx: Tensor, deep: Sequence[Tensor] = ()) -> Tensor:
    """CoOp / IVLP / MaPLe text encoder: ``ctx`` overwrites the embeddings at positions
    ``1..n`` of the tokenised prompts (which hold placeholder or init words there); in block
    ``i`` (1 <= i <= len(deep)) positions ``1..n`` are overwritten by ``deep[i - 1]``.

    Args:
        tokenized: ``[classes, 77]`` prompts with ``n`` slot tokens after SOT.
        ctx: ``[n, width]`` shared or ``[classes, n, width]`` class-specific context.
    """
    n = ctx.shape[-2]
    x = clip_model.token_embedding(tokenized)
    ctx = ctx.expand(x.shape[0], -1, -1) if ctx.dim() == 2 else ctx
    x = torch.cat([x[:, :1], ctx, x[:, 1 + n :]], dim=1) + clip_model.positional_embedding
    x = x.permute(1, 0, 2)  # LND, as CLIP's blocks take it
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = torch.cat([x[:1], deep[i - 1].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n :]])
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ clip_model.text_projection


def deep_image_features(clip_model, images: Tensor, shallow: Tensor | None = None, deep: Sequence[Tensor] = ()) -> Tensor:
    """VPT / IVLP / MaPLe image encoder: ``shallow`` appended after the positional embedding,
    before ``ln_pre``; in block ``i`` (1 <= i <= len(deep)) the last ``n`` tokens are
    overwritten by ``deep[i - 1]``."""
    visual = clip_model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    if shallow is not None:
        x = torch.cat([x, shallow.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i <= len(deep):
            n = deep[i - 1].shape[0]
            x = torch.cat([x[:-n], deep[i - 1].unsqueeze(1).expand(-1, x.shape[1], -1)])
        x = block(x)
    return visual.ln_post(x.permute(1, 0, 2)[:, 0]) @ visual.proj


def modular_image_features(clip_model, images: Tensor, shallow: Tensor, added: Sequence[Tensor], n_rm: int) -> Tensor:
    """Modular Prompt Learning's image encoder: ``shallow`` appended after the positional
    embedding, before ``ln_pre``; in block ``i`` (1 <= i <= len(added)) the last ``n_rm`` tokens
    are dropped and ``added[i - 1]`` (``[n_add * n_ctx, width]``, map after map) appended; every
    other token is carried."""
    visual = clip_model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = torch.cat([x, shallow.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i <= len(added):
            x = x[: x.shape[0] - n_rm]
            x = torch.cat([x, added[i - 1].unsqueeze(1).expand(-1, x.shape[1], -1)])
        x = block(x)
    return visual.ln_post(x.permute(1, 0, 2)[:, 0]) @ visual.proj


# ----------------------------------------------------------------------------- any token groups


def _run_block(block, x: Tensor, causal: bool) -> Tensor:
    """CLIP's block on ``x`` ``[batch, L, width]``: every position queried, mask rebuilt for L."""
    length = x.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1) if causal else None
    h = block.ln_1(x).permute(1, 0, 2)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0].permute(1, 0, 2)
    return x + block.mlp(block.ln_2(x))


def _expand(value: Tensor, batch: int) -> Tensor:
    return value if value.dim() == 3 else value.expand(batch, -1, -1)


def literal_groups_text(clip_model, tokenized: Tensor, groups: Sequence[TokenGroup], values: Sequence[Tensor]) -> Tensor:
    """Text features with token groups: live tokens sit after SOT in entry order; block-0
    tokens take the positional embeddings of their positions (the 77-token sequence loses as
    much padding); a token is dropped after the last block of its life.

    Args:
        tokenized: ``[classes, 77]`` class prompts without slots.
        values: per group ``[count, width]`` or ``[classes, count, width]``.
    """
    blocks = clip_model.transformer.resblocks
    depth = len(blocks)
    emb = clip_model.token_embedding(tokenized)
    batch, context = emb.shape[:2]
    live: list[int] = []  # the last block of each live token, in slot order
    first = [_expand(values[i], batch) for i, g in enumerate(groups) if g.block == 0]
    live = [last for g in groups if g.block == 0 for last in g.last_blocks(depth)]
    x = torch.cat([emb[:, :1], *first, emb[:, 1:]], dim=1)[:, :context] + clip_model.positional_embedding
    for b, block in enumerate(blocks):
        if b:
            keep = [j for j, last in enumerate(live) if last >= b]
            prompts, rest = x[:, 1 : 1 + len(live)][:, keep], x[:, 1 + len(live) :]
            new = [_expand(values[i], batch) for i, g in enumerate(groups) if g.block == b]
            live = [live[j] for j in keep] + [last for g in groups if g.block == b for last in g.last_blocks(depth)]
            x = torch.cat([x[:, :1], prompts, *new, rest], dim=1)
        x = _run_block(block, x, causal=True)
    x = clip_model.ln_final(x)
    return x[torch.arange(batch), tokenized.argmax(dim=-1) + len(live)] @ clip_model.text_projection


def literal_groups_image(clip_model, images: Tensor, groups: Sequence[TokenGroup], values: Sequence[Tensor]) -> Tensor:
    """Image features with token groups: live tokens follow CLS and the patches in entry
    order; block-0 tokens go through ``ln_pre`` with the rest; a token is dropped after the
    last block of its life."""
    visual = clip_model.visual
    blocks = visual.transformer.resblocks
    depth = len(blocks)
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    batch = x.shape[0]
    x = torch.cat([visual.class_embedding + torch.zeros(batch, 1, x.shape[-1]), x], dim=1) + visual.positional_embedding
    real = x.shape[1]
    first = [_expand(values[i], batch) for i, g in enumerate(groups) if g.block == 0]
    live = [last for g in groups if g.block == 0 for last in g.last_blocks(depth)]
    x = visual.ln_pre(torch.cat([x, *first], dim=1))
    for b, block in enumerate(blocks):
        if b:
            keep = [j for j, last in enumerate(live) if last >= b]
            new = [_expand(values[i], batch) for i, g in enumerate(groups) if g.block == b]
            live = [live[j] for j in keep] + [last for g in groups if g.block == b for last in g.last_blocks(depth)]
            x = torch.cat([x[:, :real], x[:, real:][:, keep], *new], dim=1)
        x = _run_block(block, x, causal=False)
    return visual.ln_post(x[:, 0]) @ visual.proj
