"""Equivalences and gradient flow of the prompted CLIP towers and the one-pass supernet."""

from __future__ import annotations

import hashlib
import math

import clip
import pytest
import torch

from scripts.reference_supernet import naive_encode_image, naive_encode_text, naive_encode_text_embeddings
from trainers.dpl_core.architecture import PromptArchitecture
from trainers.dpl_core.clip_loader import load_clip
from trainers.dpl_core.prompted_clip import (
    ArchitectureWeights,
    PromptedCLIP,
    averaged_template_embeddings,
    class_chunks,
    run_block,
    tower_blocks,
    tower_depths,
    truncate_tokens,
)
from trainers.dpl_core.templates import AVERAGED_EMBEDDING_TEMPLATES
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint

CLASS_PROMPTS = ["a photo of a dog.", "a photo of a red circle, a type of shape.", "cat", "a photo of a sunflower."]


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    """A tiny random CLIP written to disk and read back through the real loader."""
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")
    return load_clip("ViT-B/16", checkpoint=path)


@pytest.fixture(scope="module")
def tokens():
    return clip.tokenize(CLASS_PROMPTS)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def candidate_tensors(prompts):
    """``[block][candidate] -> [len, width]`` views of a CandidatePrompts module."""
    return [[prompts.candidate(b, i) for i in range(len(prompts.candidates))] for b in range(len(prompts.prompts))]


def random_supernet(clip_model, candidates=(0, 1, 2, 3), seed=0, temperature=1.0):
    torch.manual_seed(seed)
    model = PromptedCLIP.supernet(clip_model, candidates, init_std=0.5, temperature=temperature)
    with torch.no_grad():
        model.arch_weights.text.normal_()
        model.arch_weights.image.normal_()
    return model


def test_zero_length_prompts_are_vanilla_clip(clip_model, tokens, images):
    text_depth, image_depth = tower_depths(clip_model)
    arch = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,))
    model = PromptedCLIP.fixed(clip_model, arch)
    with torch.no_grad():
        expected_text = clip_model.encode_text(tokens)
        torch.testing.assert_close(model.encode_text(tokens), expected_text, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.encode_image(images), clip_model.encode_image(images), rtol=0, atol=1e-6)
        # The shortest sequence holding every EOT gives the same features (text tower on real tokens).
        short = truncate_tokens(tokens)
        assert short.shape[1] < tokens.shape[1]
        torch.testing.assert_close(model.encode_text(short), expected_text, rtol=1e-5, atol=1e-5)
        for chunk_size in (1, 3):
            torch.testing.assert_close(model.encode_text(short, chunk_size), expected_text, rtol=1e-5, atol=1e-5)


def test_truncate_tokens_keeps_every_eot(tokens):
    short = truncate_tokens(tokens)
    assert torch.equal(short.argmax(-1), tokens.argmax(-1))
    assert short.shape[1] == int(tokens.argmax(-1).max()) + 1


def test_class_chunks_cover_every_row_once_sorted_and_cut_after_their_own_eot(tokens):
    chunks = class_chunks(tokens.argmax(dim=-1), 3)
    assert [len(index) for index, _ in chunks] == [3, 1]
    order = torch.cat([index for index, _ in chunks])
    assert sorted(order.tolist()) == list(range(len(CLASS_PROMPTS)))
    ends = tokens.argmax(dim=-1) + 1
    assert [length for _, length in chunks] == [int(ends[index].max()) for index, _ in chunks]
    assert ends[order].tolist() == sorted(ends.tolist())


# ----- the reference implementation's averaged-template text input (TEXT_INPUT averaged_template_embeddings)

# Class names of different token lengths; the last one makes the longest templates reach far
# beyond the last template's end of text.
AVERAGED_CLASS_NAMES = ["dog", "red circle", "sunflower", "a very long and complicated name of a class"]


def test_the_averaged_templates_are_the_reference_codes_list():
    """The list of the reference's trainers/imagenet_templates.py (IMAGENET_TEMPLATES, commit
    9a958e8), in its order: the SHA-256 of the templates joined by newlines."""
    joined = "\n".join(AVERAGED_EMBEDDING_TEMPLATES).encode()
    assert hashlib.sha256(joined).hexdigest() == "dc3398ed3ffc7c259342582bc0f36d7ac66c4dee17981a37b77b0fc9c23d4f72"
    assert len(AVERAGED_EMBEDDING_TEMPLATES) == 60 and AVERAGED_EMBEDDING_TEMPLATES[-1] == "itap of the {}."


def literal_averaged_input(clip_model, names):
    """The reference's "ensemble" input written out: per template, the token embeddings of its
    class prompts on the full context; their mean over templates; the last template's EOT."""
    per_template = []
    for template in AVERAGED_EMBEDDING_TEMPLATES:
        tokens = clip.tokenize([template.replace("{}", name) for name in names])  # [classes, 77]
        per_template.append(clip_model.token_embedding(tokens))  # [classes, 77, width]
    return torch.stack(per_template, dim=1).mean(dim=1), tokens.argmax(dim=-1)  # tokens: the last template's


def test_averaged_template_input_without_prompts_is_clip_on_the_averaged_embeddings(clip_model):
    names = AVERAGED_CLASS_NAMES
    with torch.no_grad():
        embeddings, pooled = literal_averaged_input(clip_model, names)
        # Vanilla CLIP's own transformer, ln_final and text_projection on all 77 positions.
        x = (embeddings + clip_model.positional_embedding).permute(1, 0, 2)  # NLD -> LND
        x = clip_model.ln_final(clip_model.transformer(x).permute(1, 0, 2))
        expected = x[torch.arange(len(names)), pooled] @ clip_model.text_projection

        ours, our_pooled = averaged_template_embeddings(
            clip_model.token_embedding, (clip.tokenize([t.format(n) for n in names]) for t in AVERAGED_EMBEDDING_TEMPLATES)
        )
        assert torch.equal(our_pooled, pooled)
        assert ours.shape[1] == int(pooled.max()) + 1
        longest = max(int(clip.tokenize([t.format(n) for n in names]).argmax(-1).max()) for t in AVERAGED_EMBEDDING_TEMPLATES)
        assert longest > int(pooled.max()), "other templates reach beyond the cut: the cut is tested"
        torch.testing.assert_close(ours, embeddings[:, : ours.shape[1]], rtol=0, atol=1e-6)

        text_depth, image_depth = tower_depths(clip_model)
        model = PromptedCLIP.fixed(clip_model, PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,)))
        for chunk_size in (0, 1, 3):
            torch.testing.assert_close(model.encode_text_embeddings(ours, pooled, chunk_size), expected, rtol=1e-5, atol=1e-5)
        # The average matters: CLIP on the last template alone gives other features.
        assert not torch.allclose(expected, clip_model.encode_text(clip.tokenize([f"itap of the {n}." for n in names])), atol=1e-3)


def test_averaged_template_input_through_the_supernet_matches_the_naive_reference(clip_model):
    names = AVERAGED_CLASS_NAMES
    supernet = random_supernet(clip_model, seed=3)
    with torch.no_grad():
        full, pooled = literal_averaged_input(clip_model, names)
    text_mixture = torch.softmax(supernet.arch_weights.text, dim=-1)
    naive = naive_encode_text_embeddings(clip_model, full, pooled, candidate_tensors(supernet.text_prompts), text_mixture)
    cut = full[:, : int(pooled.max()) + 1]  # what averaged_template_embeddings returns (tested above)
    weights = torch.randn(naive.shape, generator=torch.Generator().manual_seed(0))
    params = list(supernet.text_prompts.parameters()) + [supernet.arch_weights.text]
    want = torch.autograd.grad((naive * weights).sum(), params)
    for chunk_size, recompute in ((0, False), (3, False), (1, True)):
        fast = supernet.encode_text_embeddings(cut, pooled, chunk_size, recompute)
        torch.testing.assert_close(fast, naive.detach(), rtol=1e-5, atol=1e-5)
        got = torch.autograd.grad((fast * weights).sum(), params)
        for g, w in zip(got, want):
            # float32 sums in a different order: compare relative to each gradient's scale
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))


def test_one_hot_supernet_equals_fixed_architecture(clip_model, tokens, images):
    supernet = random_supernet(clip_model)
    text_choice, image_choice = [3, 0, 2], [1, 3]
    with torch.no_grad():
        for alpha, choice in ((supernet.arch_weights.text, text_choice), (supernet.arch_weights.image, image_choice)):
            alpha.fill_(-1e4)
            alpha[torch.arange(len(choice)), torch.tensor(choice)] = 0.0
    arch = PromptArchitecture(tuple(text_choice), tuple(image_choice), candidates=(0, 1, 2, 3))
    fixed = PromptedCLIP.fixed(clip_model, arch)
    with torch.no_grad():
        for fixed_tower, super_tower, choice in (
            (fixed.text_prompts, supernet.text_prompts, text_choice),
            (fixed.image_prompts, supernet.image_prompts, image_choice),
        ):
            for block, index in enumerate(choice):
                fixed_tower.prompts[block].copy_(super_tower.candidate(block, index))
        short = truncate_tokens(tokens)
        torch.testing.assert_close(supernet.encode_text(short), fixed.encode_text(short), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(supernet.encode_image(images), fixed.encode_image(images), rtol=1e-5, atol=1e-5)
        # Prompts must matter, otherwise the comparison above proves nothing.
        assert not torch.allclose(fixed.encode_image(images), clip_model.encode_image(images), atol=1e-3)


@pytest.mark.parametrize(
    "candidates, temperature", [((0, 1, 2, 3), 1.0), ((0, 1, 2, 3), 0.5), ((0, 2, 5), 2.0), ((1, 3), 1.0)]
)
def test_one_pass_supernet_matches_naive_sum(clip_model, tokens, images, candidates, temperature):
    supernet = random_supernet(clip_model, candidates, seed=len(candidates), temperature=temperature)
    text = supernet.encode_text(truncate_tokens(tokens))
    image = supernet.encode_image(images)
    # The paper's mixture, computed here rather than taken from the code under test; it keeps
    # the alphas in the graph so that their gradients are compared too.
    text_mixture = torch.softmax(supernet.arch_weights.text / temperature, dim=-1)
    image_mixture = torch.softmax(supernet.arch_weights.image / temperature, dim=-1)
    naive_text = naive_encode_text(clip_model, tokens, candidate_tensors(supernet.text_prompts), text_mixture)
    naive_image = naive_encode_image(clip_model, images, candidate_tensors(supernet.image_prompts), image_mixture)
    torch.testing.assert_close(text, naive_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(image, naive_image, rtol=1e-5, atol=1e-5)

    weights = torch.randn_like(text), torch.randn_like(image)
    params = supernet.prompt_parameters() + list(supernet.arch_weights.parameters())
    fast = torch.autograd.grad((text * weights[0]).sum() + (image * weights[1]).sum(), params)
    slow = torch.autograd.grad((naive_text * weights[0]).sum() + (naive_image * weights[1]).sum(), params)
    for got, want in zip(fast, slow):
        # float32 sums in a different order: compare relative to each gradient's scale
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert all(g.abs().sum() > 0 for g in fast[-2:]), "alphas must receive gradient"


# Entropies worked out by hand, in nats (p = softmax(alpha / T) per block):
#   alpha / T = [0, 0, 0]          -> p = (1/3, 1/3, 1/3): ln 3                              = 1.098612
#   alpha / T = [ln 2, 0, 0]       -> p = (2, 1, 1) / 4 = (1/2, 1/4, 1/4):
#                                     1/2 ln 2 + 2 * 1/4 ln 4 = 3/2 ln 2                     = 1.039721
#   alpha / T = [2 ln 2, 0, 0]     -> p = (4, 1, 1) / 6 = (2/3, 1/6, 1/6):
#                                     2/3 ln(3/2) + 2 * 1/6 ln 6 = 0.270310 + 0.597253       = 0.867563
#   alpha / T = [-1e4, 0, 0]       -> p = (0, 1/2, 1/2): ln 2 (the zero term adds nothing)   = 0.693147
#   alpha / T = [1e4, 0, 0]        -> p = (1, 0, 0): a decided block                         = 0
LN2 = math.log(2)


@pytest.mark.parametrize(
    "temperature, text_alpha, image_alpha, text_entropy, image_entropy",
    [
        (1.0, [[0, 0, 0], [LN2, 0, 0], [-1e4, 0, 0]], [[1e4, 0, 0], [0, 0, 2 * LN2]],
         [1.098612, 1.039721, 0.693147], [0.0, 0.867563]),
        # alpha / T = [ln 2, 0, 0] and [0, 0, 0]; without the temperature the first would give 0.867563
        (2.0, [[2 * LN2, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 2 * LN2, 0]],
         [1.039721, 1.098612, 1.098612], [1.098612, 1.039721]),
        # alpha / T = [2 ln 2, 0, 0]; without the temperature it would give 1.039721
        (0.5, [[LN2, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, -5e3]],
         [0.867563, 1.098612, 1.098612], [1.098612, 0.693147]),
    ],
)  # fmt: skip
def test_entropy_of_the_mixture_per_block(temperature, text_alpha, image_alpha, text_entropy, image_entropy):
    weights = ArchitectureWeights(text_depth=3, image_depth=2, num_candidates=3, temperature=temperature)
    with torch.no_grad():
        weights.text.copy_(torch.tensor(text_alpha))
        weights.image.copy_(torch.tensor(image_alpha))
    torch.testing.assert_close(weights.entropy("text"), torch.tensor(text_entropy), rtol=0, atol=1e-6)
    torch.testing.assert_close(weights.entropy("image"), torch.tensor(image_entropy), rtol=0, atol=1e-6)


def test_gradients_reach_prompts_and_alphas_only(clip_model, tokens, images):
    supernet = random_supernet(clip_model)
    logits = supernet(images, truncate_tokens(tokens))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for param in supernet.prompt_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0
    for param in supernet.arch_weights.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0
    for name, param in supernet.clip_model.named_parameters():
        assert not param.requires_grad and param.grad is None, name


def test_text_tower_keeps_causal_order_and_prompts_are_seen_by_all(clip_model, tokens):
    text_depth, image_depth = tower_depths(clip_model)
    model = PromptedCLIP.fixed(clip_model, PromptArchitecture((2,) * text_depth, (0,) * image_depth, candidates=(0, 2)))
    short = truncate_tokens(tokens)
    length = short.shape[1]

    def token_outputs(token_ids):
        x = clip_model.token_embedding(token_ids) + clip_model.positional_embedding[:length]
        return model._run_tower("text", x, model._tower_run("text", entry=lambda seq: seq))

    with torch.no_grad():
        before = token_outputs(short)
        changed = short.clone()
        changed[:, 4] = 1000  # a different word at position 4
        after = token_outputs(changed)
        torch.testing.assert_close(after[:, :4], before[:, :4], rtol=0, atol=0)
        assert (after[:, 4:] - before[:, 4:]).abs().amax() > 1e-4
        # Every position, the start token included, attends to the prompts.
        model.text_prompts.prompts[0].add_(torch.randn_like(model.text_prompts.prompts[0]))
        moved = token_outputs(short)
        assert ((moved - before).abs().amax(dim=-1) > 1e-5).all()


@pytest.mark.parametrize("supernet", [False, True])
def test_pooled_last_block_equals_full_block_at_pooled_positions(clip_model, tokens, supernet):
    """Querying only the pooled positions gives exactly those rows of the full block's output."""
    torch.manual_seed(3)
    short = truncate_tokens(tokens)
    length = short.shape[1]
    block = tower_blocks(clip_model, "text")[-1]
    x = torch.randn(short.shape[0], length, block.attn.embed_dim)
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    prompts = torch.randn(6, block.attn.embed_dim)
    segments = mixture = None
    if supernet:
        segments = torch.nn.functional.one_hot(torch.tensor([1, 2, 2, 3, 3, 3]), 4).float()
        mixture = torch.softmax(torch.randn(4), dim=0)
    eot = short.argmax(dim=-1)
    with torch.no_grad():
        full = run_block(block, x, mask, prompts, segments, mixture)
        pooled = run_block(block, x, mask, prompts, segments, mixture, pooled=eot)
    assert pooled.shape == (short.shape[0], 1, block.attn.embed_dim)
    torch.testing.assert_close(pooled[:, 0], full[torch.arange(short.shape[0]), eot], rtol=1e-5, atol=1e-5)


def test_supernet_rejects_mismatched_modules(clip_model):
    supernet = random_supernet(clip_model)
    with pytest.raises(ValueError, match="go together"):
        PromptedCLIP(clip_model, supernet.text_prompts, supernet.image_prompts, arch_weights=None)
    wrong = PromptArchitecture((1, 1), (1, 1), candidates=(0, 1))
    with pytest.raises(ValueError, match="text tower has 3 blocks"):
        PromptedCLIP.fixed(clip_model, wrong)


@pytest.mark.parametrize("mode", ["blocks", "chunks"])
def test_recomputation_gives_same_values_and_gradients(clip_model, tokens, images, mode):
    """Length-sorted chunks, recomputed chunks and checkpointed blocks change nothing but memory."""
    results = []
    for recompute in (False, True):
        supernet = random_supernet(clip_model, seed=5)
        supernet.activation_checkpointing = recompute and mode == "blocks"
        logits = supernet(images, tokens, chunk_size=3 if mode == "chunks" else 0, recompute_chunks=recompute)
        logits.logsumexp(-1).sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in supernet.prompt_parameters()]))
    reference = random_supernet(clip_model, seed=5)(images, truncate_tokens(tokens))
    for logits, _ in results:
        torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    for plain, recomputed in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(plain, recomputed, rtol=1e-5, atol=1e-7)


def test_half_precision_clip_keeps_learned_tensors_in_fp32(clip_model, tokens, images):
    """fp16 runs: CLIP weights in half, prompts and alphas stay fp32 and get fp32 gradients."""
    import copy

    half_clip = copy.deepcopy(clip_model)
    clip.model.convert_weights(half_clip)  # CLIP's own fp16 layout: LayerNorms stay fp32
    torch.manual_seed(0)
    reference = PromptedCLIP.supernet(clip_model, (0, 1, 2), init_std=0.5)
    torch.manual_seed(0)
    model = PromptedCLIP.supernet(half_clip, (0, 1, 2), init_std=0.5)
    short = truncate_tokens(tokens)
    logits = model(images, short)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, reference(images, short), rtol=0.05, atol=0.05)
    logits.logsumexp(-1).sum().backward()
    for param in model.prompt_parameters() + list(model.arch_weights.parameters()):
        assert param.dtype == torch.float32 and param.grad is not None and param.grad.dtype == torch.float32
