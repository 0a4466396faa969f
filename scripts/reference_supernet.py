"""Plain, obviously-correct reference of the prompted towers and the supernet (SPEC §2).

Every candidate length runs its own full attention call through the block's own
``nn.MultiheadAttention`` on the literal key/value sequence of the paper
(text: ``[SOT ; P ; x_1 .. x_{N-1}]`` with the causal mask extended to it; image: ``[x ; P]``),
on the full 77-token context in CLIP's LND layout. The mixture weights are the caller's: the
tests compute ``softmax(alpha / T)`` themselves. The fast implementation is tested against this
(``tests/test_prompted_clip.py``), and ``scripts/benchmark.py`` runs it as its naive way, which
is why it lives beside the benchmark.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def _text_key_mask(length: int, num_prompts: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[N, N + c]`` additive mask for keys ``[SOT ; P ; x_1..x_{N-1}]``: causal among real tokens."""
    mask = torch.zeros(length, length + num_prompts, dtype=dtype, device=device)
    later = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)  # real key after the query
    mask[:, num_prompts:] = mask[:, num_prompts:].masked_fill(later, float("-inf"))
    return mask


def naive_block(
    block: nn.Module, x: Tensor, text: bool, candidate_prompts: Sequence[Tensor], weights: Sequence[float] | Tensor
) -> Tensor:
    """One block; ``x`` is ``[N, B, D]``; output = sum_c weights[c] * attention over candidate c."""
    length, batch, _ = x.shape
    q = block.ln_1(x)
    out = 0.0
    for prompts, weight in zip(candidate_prompts, weights):
        p = prompts.to(x.dtype)[:, None, :].expand(-1, batch, -1)  # [c, B, D]
        if text:
            kv = torch.cat([x[:1], p, x[1:]], dim=0)
            mask = _text_key_mask(length, p.shape[0], x.dtype, x.device)
        else:
            kv = torch.cat([x, p], dim=0)
            mask = None
        kv = block.ln_1(kv)
        out = out + weight * block.attn(q, kv, kv, need_weights=False, attn_mask=mask)[0]
    x = x + out
    return x + block.mlp(block.ln_2(x))


def naive_encode_text(
    clip_model: nn.Module, tokens: Tensor, prompts: Sequence[Sequence[Tensor]], weights: Sequence[Tensor]
) -> Tensor:
    """Text features of ``[C, 77]`` token ids, pooled at their EOT; ``prompts[l][c]`` is candidate
    c's ``[len, D]`` prompts in block l."""
    return naive_encode_text_embeddings(clip_model, clip_model.token_embedding(tokens), tokens.argmax(dim=-1), prompts, weights)


def naive_encode_text_embeddings(
    clip_model: nn.Module, embeddings: Tensor, pooled: Tensor, prompts: Sequence[Sequence[Tensor]], weights: Sequence[Tensor]
) -> Tensor:
    """Text features of ``[C, 77, D]`` token embeddings, pooled at positions ``[C]``."""
    x = embeddings + clip_model.positional_embedding  # [C, 77, D]
    x = x.permute(1, 0, 2)  # NLD -> LND
    for block, block_prompts, block_weights in zip(clip_model.transformer.resblocks, prompts, weights):
        x = naive_block(block, x, True, block_prompts, block_weights)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), pooled] @ clip_model.text_projection


def naive_encode_image(
    clip_model: nn.Module, images: Tensor, prompts: Sequence[Sequence[Tensor]], weights: Sequence[Tensor]
) -> Tensor:
    """Image features; same conventions as :func:`naive_encode_text`."""
    visual = clip_model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls_token = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls_token, x], dim=1) + visual.positional_embedding)
    x = x.permute(1, 0, 2)
    for block, block_prompts, block_weights in zip(visual.transformer.resblocks, prompts, weights):
        x = naive_block(block, x, False, block_prompts, block_weights)
    return visual.ln_post(x.permute(1, 0, 2)[:, 0]) @ visual.proj
