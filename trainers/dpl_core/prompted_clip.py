"""CLIP with deep prompts spliced into every transformer block of both towers.

The frozen CLIP model is reused as it is: this module owns the loop over each tower's
residual blocks and calls every block's own ``ln_1``, attention weights, ``ln_2`` and ``mlp``.
Prompts never enter the token sequence. In block ``l`` with real tokens ``x`` and prompts
``P_l`` (SPEC §2)::

    q  = ln_1(x)                      # queries: real tokens only
    kv = ln_1([x ; P_l])              # keys/values: real tokens plus prompts
    x  = x + attn(q, kv, kv)
    x  = x + mlp(ln_2(x))

In the text tower every query sees every prompt and the causal mask among real tokens is
kept; the output length never changes, so EOT pooling is untouched. With all lengths 0 the
model is exactly vanilla CLIP. Only the pooled position (EOT, CLS) of a tower's last block
reaches the features, so that block queries and runs the MLP on it alone (exact). The text
tower reads CLIP's token embeddings of token ids (:meth:`PromptedCLIP.encode_text`) or given
embeddings pooled at given positions (:meth:`PromptedCLIP.encode_text_embeddings`), e.g. the
reference implementation's averaged-template input (:func:`averaged_template_embeddings`).

The search supernet mixes, per block, the attention outputs of all candidate lengths with
``softmax(alpha / temperature)``. It is computed in one pass: the real tokens are projected
once, all candidates' prompts are projected once, and the per-candidate softmax partitions
are merged (they share the scores against the real tokens and differ only in the scores
against their own prompts).

Attention runs on torch's fused ``scaled_dot_product_attention`` (torch >= 2.0) or, on older
torch, on the same computation written out (:func:`softmax_attention`).

Core module: imports only torch and clip (through the architecture dataclass, pure Python).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from clip import clip
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .architecture import TOWERS, PromptArchitecture
from .token_prompts import TokenSchedule, TowerTokens, coupled_sources, identical_copies
from .token_search import TokenSearchSpace, TokenSearchWeights, gate_bias

# Automatic class chunking (TRAINER.DPL.CLASS_CHUNK_SIZE 0): chunks of this many length-sorted
# class prompts, recomputed in backward once there are more classes than RECOMPUTE_ABOVE_CLASSES
# (the text tower's activations grow with the class count; ~8 MB per class for ViT-B/16, t=6).
AUTO_CLASS_CHUNK = 64
RECOMPUTE_ABOVE_CLASSES = 256


def softmax_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """``softmax(query key^T / sqrt(dh)) value`` with a boolean mask, written out.

    The same value as ``F.scaled_dot_product_attention(query, key, value, attn_mask)`` with its
    defaults (no dropout, not causal, scale ``1 / sqrt(dh)``), the only way this module calls
    it; torch < 2.0 has no such function. The scale goes on the queries before the product, as
    ``nn.MultiheadAttention`` (vanilla CLIP) applies it.

    Args:
        query: ``[..., Q, dh]``.
        key, value: ``[..., N, dh]``.
        attn_mask: bool, broadcastable to ``[..., Q, N]``, True where a query may see a key
            (every query sees at least one key), or float, added to the scores; None = all.

    Returns:
        ``[..., Q, dh]``.
    """
    scores = (query * query.shape[-1] ** -0.5) @ key.transpose(-1, -2)  # [..., Q, N]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    return torch.softmax(scores, dim=-1) @ value


# Chosen once: torch's fused kernels where it has them (2.0+), else the same attention written out.
# Every attention of this module goes through this name, so tests can swap in the fallback.
scaled_dot_product_attention = getattr(F, "scaled_dot_product_attention", softmax_attention)


def tower_blocks(clip_model: nn.Module, tower: str) -> nn.ModuleList:
    """The residual blocks of ``tower`` (``"text"`` or ``"image"``) of a ViT CLIP."""
    if tower == "text":
        return clip_model.transformer.resblocks
    if tower == "image":
        visual = clip_model.visual
        if not hasattr(visual, "transformer"):
            raise ValueError("the image tower is not a vision transformer; DPL needs a ViT CLIP backbone")
        return visual.transformer.resblocks
    raise ValueError(f"unknown tower {tower!r}; expected one of {TOWERS}")


def tower_width(clip_model: nn.Module, tower: str) -> int:
    """Token width of ``tower``, read from the model's first block."""
    return tower_blocks(clip_model, tower)[0].attn.embed_dim


def tower_depths(clip_model: nn.Module) -> tuple[int, int]:
    """``(text_depth, image_depth)``: number of residual blocks per tower."""
    return len(tower_blocks(clip_model, "text")), len(tower_blocks(clip_model, "image"))


def truncate_tokens(tokens: Tensor) -> Tensor:
    """Drop the columns after the last end-of-text token of any row.

    With the causal mask, positions after a row's EOT never influence its pooled feature, so
    the shortest sequence that holds every EOT gives exactly the same text features. CLIP's
    EOT token has the largest id, which is how CLIP itself finds it (``argmax``).

    Args:
        tokens: ``[classes, context_length]`` token ids.

    Returns:
        ``[classes, n]`` with ``n = max EOT position + 1``.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1
    return tokens[:, :length]


def class_chunks(pooled: Tensor, chunk_size: int) -> list[tuple[Tensor, int]]:
    """How :meth:`PromptedCLIP.encode_text_embeddings` splits the class prompts into chunks.

    Rows are sorted by their pooling position and taken ``chunk_size`` at a time; each chunk is
    cut after its own last pooling position (exact by the causal mask).

    Args:
        pooled: ``[classes]`` position each row's feature is pooled at (its EOT token).
        chunk_size: rows per chunk (> 0).

    Returns:
        Per chunk, ``(row indices [rows], positions to encode)``.
    """
    lengths = pooled + 1
    order = torch.argsort(lengths)
    bounds = lengths[order].split(chunk_size)
    longest = torch.stack([b.max() for b in bounds]).tolist()  # one host sync
    return [(index, int(length)) for index, length in zip(order.split(chunk_size), longest)]


def averaged_template_embeddings(token_embedding: nn.Module, tokens: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """The reference implementation's training-stage text input (its ``CTX_INIT: ensemble``).

    The token embeddings of every template's class prompts, each on CLIP's full context (so
    templates of different lengths meet position by position, padding included), averaged over
    the templates; the features are then pooled at the end-of-text position of the *last*
    template's tokenisation. The result is cut after the last pooling position, which the
    causal mask makes exact.

    Args:
        token_embedding: CLIP's ``token_embedding``.
        tokens: per template, in order, ``[classes, context_length]`` token ids of its class
            prompts (untruncated), on ``token_embedding``'s device.

    Returns:
        ``(embeddings [classes, n, width] fp32, pooled [classes])`` with
        ``n = max(pooled) + 1``, ready for :meth:`PromptedCLIP.encode_text_embeddings`.
    """
    total, last, count = None, None, 0
    for template_tokens in tokens:  # a running sum: all templates at once would hold 60x the embeddings
        embedded = token_embedding(template_tokens).float()  # [classes, context, width]
        total = embedded if total is None else total + embedded
        last, count = template_tokens, count + 1
    if last is None:
        raise ValueError("averaged_template_embeddings needs at least one template")
    pooled = last.argmax(dim=-1)  # the last template's EOT, the largest token id
    return (total / count)[:, : int(pooled.max()) + 1], pooled


def prompted_attention(
    attn: nn.MultiheadAttention,
    queries: Tensor,
    tokens: Tensor,
    key_mask: Tensor | None,
    prompts: Tensor | None,
    segments: Tensor | None = None,
    mixture: Tensor | None = None,
) -> Tensor:
    """Multi-head attention of queries over real tokens plus prompts.

    Args:
        attn: the block's own attention module (its weights only are used).
        queries: ``[batch, queries, width]`` normalised real tokens that ask (after ``ln_1``);
            pass ``tokens`` itself for every position, which projects q, k, v in one matmul.
        tokens: ``[batch, tokens, width]`` normalised real tokens that answer (keys/values).
        key_mask: bool, True where a query may see a real key, or float, added to the attention
            logits (the token search's gates), ``[queries, tokens]`` or
            ``[batch, 1, queries, tokens]``; None = all. Prompts are always visible.
        prompts: ``[prompt_tokens, width]`` normalised prompts, or None / empty for none.
        segments: ``[prompt_tokens, candidates]`` 0/1 membership of each prompt vector in each
            candidate (supernet only).
        mixture: ``[candidates]`` mixture weights (supernet only); when given, the result is
            ``sum_c mixture[c] * attention(queries, [tokens ; prompts of candidate c])``.

    Returns:
        ``[batch, queries, width]`` attention output after the output projection.
    """
    batch, length, width = tokens.shape
    num_queries = queries.shape[1]
    heads = attn.num_heads
    head_dim = width // heads
    w_kv = attn.in_proj_weight[width:]
    b_kv = attn.in_proj_bias[width:] if attn.in_proj_bias is not None else None
    if queries is tokens:
        q, k, v = F.linear(tokens, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    else:
        b_q = attn.in_proj_bias[:width] if attn.in_proj_bias is not None else None
        q = F.linear(queries, attn.in_proj_weight[:width], b_q)
        k, v = F.linear(tokens, w_kv, b_kv).chunk(2, dim=-1)
    q = q.view(batch, num_queries, heads, head_dim).transpose(1, 2)  # [B, H, Q, dh]
    k, v = (t.view(batch, length, heads, head_dim).transpose(1, 2) for t in (k, v))  # [B, H, N, dh]
    has_prompts = prompts is not None and prompts.shape[0] > 0
    if has_prompts:
        k_p, v_p = F.linear(prompts, w_kv, b_kv).chunk(2, dim=-1)
        k_p, v_p = (t.view(-1, heads, head_dim).transpose(0, 1) for t in (k_p, v_p))  # [H, T, dh]

    if not has_prompts:
        out = scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    elif mixture is None:
        keys = torch.cat([k, k_p.expand(batch, -1, -1, -1)], dim=2)  # [B, H, N + T, dh]
        values = torch.cat([v, v_p.expand(batch, -1, -1, -1)], dim=2)
        mask = None
        if key_mask is not None:
            visible = key_mask.new_ones if key_mask.dtype == torch.bool else key_mask.new_zeros
            mask = torch.cat([key_mask, visible(*key_mask.shape[:-1], k_p.shape[1])], dim=-1)
        out = scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    else:
        out = _mixed_candidate_attention(q, k, v, k_p, v_p, key_mask, segments, mixture)

    out = out.transpose(1, 2).reshape(batch, num_queries, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def _mixed_candidate_attention(
    q: Tensor, k: Tensor, v: Tensor, k_p: Tensor, v_p: Tensor, key_mask: Tensor | None, segments: Tensor, mixture: Tensor
) -> Tensor:
    """``sum_c mixture[c] * softmax-attention over [x ; P_c]`` in one pass.

    For candidate ``c`` with prompt set ``S_c``, attention is
    ``(A_x + A_c) / (Z_x + Z_c)`` where ``A``/``Z`` are the exp-score-weighted values and the
    partition sums over real keys (``x``) and over ``S_c``. All candidates share ``A_x``,
    ``Z_x``; ``Z_c`` is a segment sum of the prompt exp-scores. With
    ``r_c = mixture[c] / (Z_x + Z_c)`` the mixture is
    ``A_x * sum_c r_c + sum_j (sum_{c: j in S_c} r_c) * e_j * v_j``.

    Shapes: q ``[B, H, Q, dh]``; k, v ``[B, H, N, dh]``; k_p, v_p ``[H, T, dh]``; key_mask
    ``[Q, N]`` or ``[B, 1, Q, N]``; segments ``[T, C]``; mixture ``[C]``. Returns
    ``[B, H, Q, dh]``. Computed in at least fp32.
    """
    dtype = q.dtype
    compute = torch.promote_types(dtype, torch.float32)
    q, k, v, k_p, v_p = (t.to(compute) for t in (q, k, v, k_p, v_p))
    q = q * q.shape[-1] ** -0.5
    scores_x = q @ k.transpose(-1, -2)  # [B, H, Q, N]
    if key_mask is not None:
        scores_x = scores_x.masked_fill(~key_mask, float("-inf"))
    scores_p = q @ k_p.transpose(-1, -2)  # [B, H, Q, T]
    # A common shift keeps exp() finite; any constant gives the same value and gradient.
    shift = torch.maximum(scores_x.amax(-1, keepdim=True), scores_p.amax(-1, keepdim=True)).detach()
    exp_x = torch.exp(scores_x - shift)
    exp_p = torch.exp(scores_p - shift)
    segments = segments.to(compute)
    z_x = exp_x.sum(-1, keepdim=True)  # [B, H, Q, 1]
    z_c = exp_p @ segments  # [B, H, Q, C]
    ratio = mixture.to(compute) / (z_x + z_c)  # [B, H, Q, C]
    out = (exp_x @ v) * ratio.sum(-1, keepdim=True) + (exp_p * (ratio @ segments.t())) @ v_p
    return out.to(dtype)


def run_block(
    block: nn.Module,
    x: Tensor,
    key_mask: Tensor | None,
    prompts: Tensor | None,
    segments: Tensor | None = None,
    mixture: Tensor | None = None,
    pooled: Tensor | None = None,
    query_index: Tensor | None = None,
) -> Tensor:
    """One CLIP residual block with prompts as extra keys/values.

    Args:
        block: a CLIP ``ResidualAttentionBlock`` (``ln_1``, ``attn``, ``ln_2``, ``mlp``).
        x: ``[batch, tokens, width]``.
        key_mask: ``[tokens, tokens]`` bool, True where a query may see a real key; None = all.
        prompts, segments, mixture: see :func:`prompted_attention`; ``prompts`` are raw
            (``ln_1`` is applied here, as to the real tokens).
        pooled: ``[batch]`` position of the one output per row that is still needed (the
            tower's last block): only that position is queried and sent through the MLP, every
            position still serves as key/value. None computes every position.
        query_index: ``[queries]`` positions whose outputs are read later, the same in every
            row (prompt tokens in the last block of their life are left out); every position
            still serves as key/value. None computes every position. Not with ``pooled``.

    Returns:
        ``[batch, tokens, width]``, ``[batch, 1, width]`` when ``pooled`` is given, or
        ``[batch, queries, width]`` with ``query_index``.
    """
    if prompts is not None:
        prompts = block.ln_1(prompts.to(x.dtype))
    tokens = block.ln_1(x)
    queries = tokens
    if pooled is not None:
        rows = torch.arange(x.shape[0], device=x.device)
        x, queries = x[rows, pooled].unsqueeze(1), tokens[rows, pooled].unsqueeze(1)  # [B, 1, width]
        if key_mask is not None:
            key_mask = key_mask[pooled].unsqueeze(1).unsqueeze(1)  # [B, 1, 1, tokens]
    elif query_index is not None:
        x, queries = x[:, query_index], tokens[:, query_index]  # [B, Q, width]
        if key_mask is not None:
            key_mask = key_mask[query_index]  # [Q, tokens]
    x = x + prompted_attention(block.attn, queries, tokens, key_mask, prompts, segments, mixture)
    return x + block.mlp(block.ln_2(x))


def join_key_value_prompts(prompts: Tensor | None, tokens: Tensor | None) -> Tensor | None:
    """``[T, width]`` keys/values-only prompts of a block: DPL's prompts, then the token groups'."""
    if tokens is None:
        return prompts
    return tokens if prompts is None else torch.cat([prompts.to(tokens.dtype), tokens])


def init_word_vectors(clip_model: nn.Module, words: str, count: int) -> Tensor:
    """``[count, width]`` token embeddings of the first ``count`` tokens of ``words`` (how CoOp,
    IVLP and MaPLe start their context from "a photo of a")."""
    tokens = clip.tokenize(words)[0]
    available = int(tokens.argmax()) - 1  # between SOT and EOT
    if count > available:
        raise ValueError(f"init words '{words}' are {available} tokens, fewer than the group's {count}")
    device = clip_model.token_embedding.weight.device
    with torch.no_grad():
        return clip_model.token_embedding(tokens[1 : 1 + count].to(device)).float().cpu()


class TowerRun:
    """A tower's token groups during one forward pass: where they enter the sequence, which
    positions each block queries, and the keys/values-only tokens of each block.

    Args:
        schedule: the tower's :class:`TokenSchedule`.
        values: per group, ``[count, width]`` tokens, or ``[classes, count, width]`` per class.
        after_first: the prompt area starts after the first position (text: after SOT) rather
            than after all real tokens (image).
        entry: applied to the whole block-0 sequence once its tokens are in (text: add the
            positional embeddings; image: ``ln_pre``), and to block-0 keys/values-only tokens.
        rows: ``[batch]`` class of each row, for per-class groups (text).
        bias: per block, ``[area]`` fp32 additive attention logits of the prompt-area keys (the
            token search's ``log p``), or None.
    """

    def __init__(
        self,
        schedule: TokenSchedule,
        values: Sequence[Tensor],
        after_first: bool,
        entry: Callable[[Tensor], Tensor],
        rows: Tensor | None = None,
        bias: Sequence[Tensor] | None = None,
    ) -> None:
        self.schedule = schedule
        self.values = values
        self.after_first = after_first
        self.entry = entry
        self.rows = rows
        self.bias = bias
        self.start = 1

    def _value(self, group: int, tokens: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """``[..., len(tokens), width]``: the listed tokens of one group."""
        value = self.values[group].to(dtype)
        if len(tokens) == value.shape[-2]:
            return value
        return value[..., list(tokens), :]

    def _tokens(self, entries: Sequence[tuple[int, tuple[int, ...]]], batch: int, dtype: torch.dtype) -> Tensor:
        parts = []
        for group, tokens in entries:
            value = self._value(group, tokens, dtype)
            if value.dim() == 3:  # per class
                parts.append(value if self.rows is None else value[self.rows])
            else:
                parts.append(value.expand(batch, -1, -1))
        return torch.cat(parts, dim=1)

    def enter(self, x: Tensor, block: int) -> Tensor:
        """``x`` ``[batch, n, width]`` (block 0: the real tokens; later: the previous block's
        output) with this block's entering tokens in the prompt area. In block 0 the entry
        transform sees the positional tokens and not the others (``TokenGroup.positional``)."""
        entries = self.schedule[block]
        if block == 0:
            self.start = 1 if self.after_first else x.shape[1]
        at = self.start + (self.schedule.area_after(block - 1) if block else 0)
        new = self._tokens(entries.enter, x.shape[0], x.dtype) if entries.enter else None
        if block == 0:
            if new is not None and entries.positional:
                x = torch.cat([x[:, :at], new[:, : entries.positional], x[:, at:]], dim=1)
            x = self.entry(x)
            if new is None or new.shape[1] == entries.positional:
                return x
            at, new = at + entries.positional, new[:, entries.positional :]
        elif new is None:
            return x
        return torch.cat([x[:, :at], new, x[:, at:]], dim=1)

    def kv_only(self, block: int, dtype: torch.dtype) -> Tensor | None:
        """``[tokens, width]`` keys/values-only tokens of ``block`` (raw, before ``ln_1``), or None."""
        entries = self.schedule[block].kv_only
        if not entries:
            return None
        tokens = torch.cat([self._value(group, indices, dtype) for group, indices in entries])
        return self.entry(tokens) if block == 0 else tokens

    def key_mask(self, block: int, length: int, causal: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """The block's attention mask over a ``length``-long sequence: ``causal`` (bool
        ``[length, length]`` or None) as it is, or with the prompt-area keys' gates, a float
        ``[length, length]`` mask (``-inf`` where not visible)."""
        if self.bias is None:
            return causal
        bias = self.bias[block]
        full = bias.new_zeros(length)
        full[self.start : self.start + bias.shape[0]] = bias
        full = full.to(dtype)
        if causal is None:
            return full.expand(length, length)
        return torch.where(causal, full, torch.full_like(full, float("-inf")))

    def query_index(self, block: int, length: int, device: torch.device) -> Tensor | None:
        """``[queries]`` positions of a ``length``-long sequence that ``block`` must compute
        (all but the prompt tokens in their last block), or None for all of them."""
        read = self.schedule[block].read
        if all(read):
            return None
        end = self.start + len(read)
        kept = [self.start + i for i, r in enumerate(read) if r]  # built on the host: no device sync
        return torch.tensor([*range(self.start), *kept, *range(end, length)], device=device)

    def pooled(self, pooled: Tensor) -> Tensor:
        """Pooling positions of the real tokens, moved past the last block's prompt area."""
        shift = self.schedule[self.schedule.depth - 1].area
        return pooled + shift * (pooled >= self.start)


class TowerPrompts(nn.Module):
    """Learned prompts of one tower for a fixed architecture: ``lengths[l]`` vectors in block ``l``.

    Attributes:
        prompts: one ``[lengths[l], width]`` parameter per block (empty where the length is 0).
    """

    def __init__(self, lengths: Sequence[int], width: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.lengths = tuple(int(n) for n in lengths)
        self.prompts = nn.ParameterList(
            [nn.Parameter(torch.randn(n, width) * init_std) for n in self.lengths]
        )

    def block_inputs(self, block: int) -> tuple[Tensor | None, Tensor | None]:
        """``(prompts [n, width] or None, segments=None)`` for block ``block``."""
        return (self.prompts[block] if self.lengths[block] else None), None


class CandidatePrompts(nn.Module):
    """Supernet prompts of one tower: separate vectors for every (block, candidate length).

    Per block, the prompts of all candidates are stored in one parameter, candidate after
    candidate (candidate ``c`` owns ``c`` consecutive rows), so one projection covers them all.

    Attributes:
        prompts: one ``[sum(candidates), width]`` parameter per block.
        segments: ``[sum(candidates), num_candidates]`` buffer, 1 where a row belongs to a candidate.
    """

    def __init__(self, depth: int, candidates: Sequence[int], width: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.candidates = tuple(int(c) for c in candidates)
        total = sum(self.candidates)
        self.prompts = nn.ParameterList([nn.Parameter(torch.randn(total, width) * init_std) for _ in range(depth)])
        owner = torch.repeat_interleave(torch.arange(len(self.candidates)), torch.tensor(self.candidates))
        self.register_buffer("segments", F.one_hot(owner, len(self.candidates)).float(), persistent=False)

    def block_inputs(self, block: int) -> tuple[Tensor | None, Tensor | None]:
        """``(all candidates' prompts [T, width], segments [T, C])`` for block ``block``."""
        if not self.segments.shape[0]:
            return None, None
        return self.prompts[block], self.segments

    def candidate(self, block: int, index: int) -> Tensor:
        """The ``[candidates[index], width]`` prompts of one candidate in one block (a view)."""
        start = sum(self.candidates[:index])
        return self.prompts[block][start : start + self.candidates[index]]


class ArchitectureWeights(nn.Module):
    """The architecture parameters ``alpha`` of both towers, ``[depth, num_candidates]`` each."""

    def __init__(
        self, text_depth: int, image_depth: int, num_candidates: int, init_std: float = 1e-3, temperature: float = 1.0
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.text = nn.Parameter(torch.randn(text_depth, num_candidates) * init_std)
        self.image = nn.Parameter(torch.randn(image_depth, num_candidates) * init_std)

    def alpha(self, tower: str) -> Tensor:
        """``[depth, num_candidates]`` raw weights of ``tower``."""
        if tower not in TOWERS:
            raise ValueError(f"unknown tower {tower!r}; expected one of {TOWERS}")
        return self.text if tower == "text" else self.image

    def mixture(self, tower: str) -> Tensor:
        """``[depth, num_candidates]`` fp32 ``softmax(alpha / temperature)`` per block."""
        return torch.softmax(self.alpha(tower).float() / self.temperature, dim=-1)

    def entropy(self, tower: str) -> Tensor:
        """``[depth]`` entropy (nats) of each block's mixture."""
        p = self.mixture(tower)
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


class PromptedCLIP(nn.Module):
    """A frozen CLIP whose blocks receive deep prompts in both towers.

    Build with :meth:`fixed` (training stage) or :meth:`supernet` (search stage).

    Attributes:
        clip_model: the frozen CLIP (not trained; every parameter has ``requires_grad=False``).
        text_prompts, image_prompts: :class:`TowerPrompts` or :class:`CandidatePrompts`.
        arch_weights: :class:`ArchitectureWeights` for a supernet, else None.
        activation_checkpointing: recompute block activations in backward to save memory.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        text_prompts: TowerPrompts | CandidatePrompts,
        image_prompts: TowerPrompts | CandidatePrompts,
        arch_weights: ArchitectureWeights | None = None,
        activation_checkpointing: bool = False,
        text_tokens: TowerTokens | None = None,
        image_tokens: TowerTokens | None = None,
        couplings: dict[str, dict[int, int]] | None = None,
        token_weights: TokenSearchWeights | None = None,
    ) -> None:
        super().__init__()
        self.clip_model = clip_model.requires_grad_(False)
        self.text_prompts = text_prompts
        self.image_prompts = image_prompts
        self.arch_weights = arch_weights
        self.activation_checkpointing = activation_checkpointing
        text_depth, image_depth = tower_depths(clip_model)
        self.text_tokens = text_tokens if text_tokens is not None else TowerTokens((), tower_width(clip_model, "text"))
        self.image_tokens = image_tokens if image_tokens is not None else TowerTokens((), tower_width(clip_model, "image"))
        self.couplings = {"text": {}, "image": {}, **(couplings or {})}
        # Lifetime-1 image tokens are keys/values only; text tokens stay positions (masked from
        # SOT); in the token search every token is a position, so that its gate applies.
        self.schedules = {
            "text": TokenSchedule(self.text_tokens.groups, text_depth, kv_only_single_block=False),
            "image": TokenSchedule(self.image_tokens.groups, image_depth, kv_only_single_block=token_weights is None),
        }
        if arch_weights is not None and (self.text_tokens.groups or self.image_tokens.groups):
            raise ValueError("the length-search supernet takes no token groups")
        self.token_weights = token_weights
        if token_weights is not None:
            for tower in TOWERS:
                if any(g.block != i or g.source != "learned" for i, g in enumerate(self.schedules[tower].groups)):
                    raise ValueError("the token-search supernet takes one learned group per block (TokenSearchSpace.supernet_groups)")
        for tower, prompts, depth in (("text", text_prompts, text_depth), ("image", image_prompts, image_depth)):
            if len(prompts.prompts) != depth:
                raise ValueError(f"{tower} prompts cover {len(prompts.prompts)} blocks; the {tower} tower has {depth}")
        if isinstance(text_prompts, CandidatePrompts) != (arch_weights is not None):
            raise ValueError("candidate prompts and architecture weights go together (supernet) or not at all")
        context = clip_model.positional_embedding.shape[0]
        longest = context + sum(g.count for g in self.text_tokens.groups)  # every text token alive at once
        causal = torch.ones(longest, longest, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", causal, persistent=False)  # [longest, longest], True = visible

    @classmethod
    def fixed(
        cls,
        clip_model: nn.Module,
        architecture: PromptArchitecture,
        init_std: float = 0.02,
        num_classes: int = 0,
        identical_coupling_init: bool = True,
        **kwargs,
    ) -> "PromptedCLIP":
        """Training-stage model with exactly the prompts of ``architecture``.

        Args:
            num_classes: rows of per-class token groups (CoOp's class-specific context).
            identical_coupling_init: coupled maps of blocks >= 1 start as copies of one map
                (MaPLe's deep copies); otherwise each has its own random start.
        """
        architecture.check_fits(*tower_depths(clip_model))
        widths = {tower: tower_width(clip_model, tower) for tower in TOWERS}
        couplings = {tower: coupled_sources(architecture, tower) for tower in TOWERS}
        tokens = {}
        for tower in TOWERS:
            other = "image" if tower == "text" else "text"
            groups = architecture.groups(tower)
            init = {i: init_word_vectors(clip_model, g.init, g.count) for i, g in enumerate(groups) if g.init}
            sources = {i: widths[other] for i in couplings[tower]}
            tokens[tower] = TowerTokens(groups, widths[tower], init_std, num_classes, init, sources)
            if identical_coupling_init:
                identical_copies([m for i, m in tokens[tower].maps.items() if groups[int(i)].block > 0])
        return cls(
            clip_model,
            TowerPrompts(architecture.text_lengths, widths["text"], init_std),
            TowerPrompts(architecture.image_lengths, widths["image"], init_std),
            text_tokens=tokens["text"],
            image_tokens=tokens["image"],
            couplings=couplings,
            **kwargs,
        )

    @classmethod
    def supernet(
        cls,
        clip_model: nn.Module,
        candidates: Sequence[int],
        init_std: float = 0.02,
        alpha_init_std: float = 1e-3,
        temperature: float = 1.0,
        **kwargs,
    ) -> "PromptedCLIP":
        """Search-stage model: every block mixes the candidate lengths ``candidates``."""
        text_depth, image_depth = tower_depths(clip_model)
        return cls(
            clip_model,
            CandidatePrompts(text_depth, candidates, tower_width(clip_model, "text"), init_std),
            CandidatePrompts(image_depth, candidates, tower_width(clip_model, "image"), init_std),
            ArchitectureWeights(text_depth, image_depth, len(candidates), alpha_init_std, temperature),
            **kwargs,
        )

    @classmethod
    def token_supernet(
        cls,
        clip_model: nn.Module,
        space: TokenSearchSpace,
        init_std: float = 0.02,
        alpha_init_std: float = 1e-3,
        temperature: float = 1.0,
        **kwargs,
    ) -> "PromptedCLIP":
        """Search-stage model of the token search: every potential token of ``space`` in both
        towers, its attention logits gated by ``log p`` (see ``token_search``)."""
        text_depth, image_depth = tower_depths(clip_model)
        no_prompts = {tower: TowerPrompts((0,) * depth, tower_width(clip_model, tower))
                      for tower, depth in (("text", text_depth), ("image", image_depth))}  # fmt: skip
        return cls(
            clip_model,
            no_prompts["text"],
            no_prompts["image"],
            text_tokens=TowerTokens(space.supernet_groups("text", text_depth), tower_width(clip_model, "text"), init_std),
            image_tokens=TowerTokens(space.supernet_groups("image", image_depth), tower_width(clip_model, "image"), init_std),
            token_weights=TokenSearchWeights(space, text_depth, image_depth, alpha_init_std, temperature),
            **kwargs,
        )

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the frozen CLIP weights."""
        return self.clip_model.visual.conv1.weight.dtype

    def prompt_parameters(self) -> list[nn.Parameter]:
        """Everything learned: prompt vectors, group tokens and coupling maps of both towers."""
        return [p for module in (self.text_prompts, self.image_prompts, self.text_tokens, self.image_tokens)
                for p in module.parameters()]  # fmt: skip

    def _tower_run(self, tower: str, entry: Callable[[Tensor], Tensor], rows: Tensor | None = None) -> TowerRun:
        """The token groups of ``tower`` for one forward pass (see :class:`TowerRun`)."""
        own, other = (self.text_tokens, self.image_tokens) if tower == "text" else (self.image_tokens, self.text_tokens)
        values = own.values(other, self.couplings[tower])
        bias = None
        if self.token_weights is not None:
            gates = gate_bias(self.token_weights.gates(tower))  # [entry block, token, block]
            bias = []
            for block, entries in enumerate(self.schedules[tower].blocks):  # group g enters at block g
                entered, token = zip(*entries.tokens) if entries.tokens else ((), ())
                bias.append(gates[list(entered), list(token), block])
        return TowerRun(self.schedules[tower], values, after_first=tower == "text", entry=entry, rows=rows, bias=bias)

    def _run_tower(self, tower: str, x: Tensor, run: TowerRun, pooled: Tensor | None = None) -> Tensor:
        """Run ``x`` ``[batch, tokens, width]`` (the real tokens, before the tower's entry
        transform) through every block of ``tower``, with the token groups of ``run``.

        With ``pooled`` (``[batch]`` positions among the real tokens) the last block computes
        only those positions, since nothing else reaches the features, and ``[batch, width]``
        is returned.
        """
        prompts = self.text_prompts if tower == "text" else self.image_prompts
        mixture = self.arch_weights.mixture(tower) if self.arch_weights is not None else None
        use_checkpoint = self.activation_checkpointing and torch.is_grad_enabled()
        blocks = tower_blocks(self.clip_model, tower)
        last = len(blocks) - 1
        for index, block in enumerate(blocks):
            x = run.enter(x, index)
            length = x.shape[1]
            key_mask = run.key_mask(index, length, self.causal_mask[:length, :length] if tower == "text" else None, x.dtype)
            block_prompts, segments = prompts.block_inputs(index)
            block_prompts = join_key_value_prompts(block_prompts, run.kv_only(index, x.dtype))
            weights = mixture[index] if mixture is not None else None
            keep = run.pooled(pooled) if index == last and pooled is not None else None
            queries = run.query_index(index, length, x.device) if keep is None else None
            arguments = (block, x, key_mask, block_prompts, segments, weights, keep, queries)
            if use_checkpoint:
                x = checkpoint(run_block, *arguments, use_reentrant=False)
            else:
                x = run_block(*arguments)
        return x if pooled is None else x.squeeze(1)

    def encode_text(self, tokens: Tensor, chunk_size: int = 0, recompute_chunks: bool = False) -> Tensor:
        """Text features of token ids, unnormalised: CLIP's token embeddings, pooled at each
        row's EOT token (see :meth:`encode_text_embeddings` for the arguments).

        Args:
            tokens: ``[classes, n]`` token ids; ``n`` may be shorter than the context length
                (see :func:`truncate_tokens`) as long as every row holds its EOT token.

        Returns:
            ``[classes, embed_dim]``.
        """
        eot = tokens.argmax(dim=-1)  # CLIP pools at the end-of-text token, the largest id
        return self.encode_text_embeddings(self.clip_model.token_embedding(tokens), eot, chunk_size, recompute_chunks)

    def encode_text_embeddings(
        self, embeddings: Tensor, pooled: Tensor, chunk_size: int = 0, recompute_chunks: bool = False
    ) -> Tensor:
        """Text features of given token embeddings, pooled at given positions, unnormalised.

        Args:
            embeddings: ``[classes, n, width]`` token embeddings (before the positional
                embedding); ``n`` may be shorter than the context length as long as it is
                greater than every pooling position.
            pooled: ``[classes]`` position whose output is each row's feature.
            chunk_size: 0 encodes all rows at once. Otherwise rows are sorted by pooling
                position and encoded ``chunk_size`` at a time, each chunk cut after its own last
                pooling position: short prompts stop paying for the longest one (exact, by the
                causal mask).
            recompute_chunks: when gradients are recorded, keep no activations of a chunk but
                recompute them in backward, so memory is bounded by one chunk for any class count.

        Returns:
            ``[classes, embed_dim]``.
        """
        if not 0 < chunk_size < embeddings.shape[0]:
            return self._encode_text(embeddings, pooled)
        chunks = class_chunks(pooled, chunk_size)
        order = torch.cat([index for index, _ in chunks])
        recompute = recompute_chunks and torch.is_grad_enabled()
        features = []
        for index, length in chunks:
            chunk = embeddings[index, :length], pooled[index], index
            if recompute:
                features.append(checkpoint(self._encode_text, *chunk, use_reentrant=False))
            else:
                features.append(self._encode_text(*chunk))
        return torch.cat(features)[torch.argsort(order)]

    def _encode_text(self, embeddings: Tensor, pooled: Tensor, rows: Tensor | None = None) -> Tensor:
        """Features of ``embeddings`` ``[classes, n, width]`` pooled at ``pooled``; ``rows`` are
        the classes of the rows (None: all classes in order) for per-class token groups."""
        model = self.clip_model
        context = model.positional_embedding.shape[0]
        inserted = self.schedules["text"][0].positional  # only these take positional embeddings
        if embeddings.shape[1] + inserted > context:
            raise ValueError(
                f"class prompts of {embeddings.shape[1]} tokens plus {inserted} prompt tokens after SOT exceed "
                f"CLIP's context length {context}: shorten the class names or the template"
            )
        position = model.positional_embedding.to(self.dtype)
        run = self._tower_run("text", lambda x: x + position[: x.shape[1]], rows)
        x = self._run_tower("text", embeddings.to(self.dtype), run, pooled=pooled)  # [classes, width]
        return model.ln_final(x) @ model.text_projection

    def encode_image(self, images: Tensor) -> Tensor:
        """Image features, unnormalised.

        Args:
            images: ``[batch, 3, resolution, resolution]`` normalised pixels.

        Returns:
            ``[batch, embed_dim]``.
        """
        visual = self.clip_model.visual
        x = visual.conv1(images.to(self.dtype))  # [B, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [B, grid**2, width]
        cls_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_token, x], dim=1) + visual.positional_embedding.to(x.dtype)  # [B, grid**2 + 1, width]
        cls_position = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x = self._run_tower("image", x, self._tower_run("image", visual.ln_pre), pooled=cls_position)  # [B, width]
        return visual.ln_post(x) @ visual.proj

    def logits(self, image_features: Tensor, text_features: Tensor) -> Tensor:
        """``[batch, classes]`` scaled cosine similarities, as CLIP's zero-shot head, in at least fp32."""
        dtype = torch.promote_types(image_features.dtype, torch.float32)
        image_features = F.normalize(image_features.to(dtype), dim=-1)
        text_features = F.normalize(text_features.to(dtype), dim=-1)
        return self.clip_model.logit_scale.exp().to(dtype) * image_features @ text_features.t()

    def forward(self, images: Tensor, tokens: Tensor, chunk_size: int = 0, recompute_chunks: bool = False) -> Tensor:
        """``[batch, classes]`` logits of ``images`` against the class prompts ``tokens``."""
        return self.logits(self.encode_image(images), self.encode_text(tokens, chunk_size, recompute_chunks))
