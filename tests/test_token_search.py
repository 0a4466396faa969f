"""The token search: gates, the exactness of the relaxation at its corners, decode."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.dpl_core.architecture import ArchitectureError, PromptArchitecture, TokenGroup
from trainers.dpl_core.prompted_clip import PromptedCLIP, tower_depths, truncate_tokens
from trainers.dpl_core.token_search import GATE_FLOOR, TokenSearchSpace, TokenSearchWeights, decode_tokens, gate_bias

import clip

NAMES = ["cat", "golden retriever", "red-winged blackbird"]
SPACE = TokenSearchSpace(3, (1, 2, None))
BIG = 1e4  # softmax of +-BIG is exactly one-hot in fp32


@pytest.fixture(scope="module")
def tokens():
    return truncate_tokens(clip.tokenize([f"a photo of a {n}." for n in NAMES]))


def test_gates_on_a_hand_worked_case():
    space = TokenSearchSpace(2, (1, 2, None))
    weights = TokenSearchWeights(space, text_depth=3, image_depth=1)
    with torch.no_grad():
        weights.text_counts[0] = torch.tensor([0.2, 0.3, 0.5]).log()
        weights.text_lifetimes[0, 0] = torch.tensor([0.5, 0.25, 0.25]).log()
        weights.text_lifetimes[0, 1] = torch.tensor([0.1, 0.1, 0.8]).log()
        weights.text_counts[2] = torch.tensor([0.0, 0.0, 1.0]).log()  # exactly two tokens
    gates = weights.gates("text")
    # token (0, 0): P(c > 0) = 0.8; alive 1 block for sure, 2 blocks with 0.5, 3 with 0.25 (to the end)
    torch.testing.assert_close(gates[0, 0], torch.tensor([0.8, 0.8 * 0.5, 0.8 * 0.25]))
    # token (0, 1): P(c > 1) = 0.5; P(L > 1) = 0.9, P(L > 2) = 0.8
    torch.testing.assert_close(gates[0, 1], torch.tensor([0.5, 0.5 * 0.9, 0.5 * 0.8]))
    assert gates[1, :, 0].eq(0).all() and gates[2, :, :2].eq(0).all(), "no gate before the entry block"
    torch.testing.assert_close(gates[2, :, 2], weights.probabilities("text")[1][2, :, 0] * 0 + 1.0)


def test_gate_bias_masks_exact_zeros_and_floors_the_rest():
    bias = gate_bias(torch.tensor([0.0, 1e-12, 0.5, 1.0]))
    assert bias[0] == float("-inf") and bias[1] == math.log(GATE_FLOOR)
    torch.testing.assert_close(bias[2:], torch.tensor([math.log(0.5), 0.0]))


def test_space_validation_and_possible_lifetimes():
    assert SPACE.last_possible(1, 4) == 3
    assert TokenSearchSpace(2, (1, 2)).last_possible(1, 4) == 2
    for bad in ((0, (1,)), (2, ()), (2, (2, 1)), (2, (None, 1)), (2, (1, 0))):
        with pytest.raises(ArchitectureError):
            TokenSearchSpace(*bad)


def test_decode_breaks_ties_towards_fewer_tokens_and_shorter_lives():
    counts = [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]]
    lives = [[[0.0, 2.0, 2.0]] * 3, [[0.0] * 3] * 3, [[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]]]
    groups = decode_tokens(SPACE, "text", counts, lives)
    # block 0: count 1 (tie 1/2), its lifetime 2 (tie 2/end); block 1: none; block 2 (the last):
    # three tokens whose lifetimes 1, end and 2 all reach the end
    assert groups == (TokenGroup(0, 1, 2, positional=False), TokenGroup(2, 3, None))
    groups = decode_tokens(SPACE, "image", counts + [[0.0] * 4], lives + [[[0.0] * 3] * 3])
    assert groups[1] == TokenGroup(2, 3, (1, None, None))  # four blocks: lifetime 2 from block 2 ends in the last
    with pytest.raises(ArchitectureError, match="NaN"):
        decode_tokens(SPACE, "image", [[float("nan")] * 4], [[[0.0] * 3] * 3])


def set_corner(model: PromptedCLIP, corner: dict[str, list[tuple[int, tuple]]]) -> None:
    """One-hot weights: per tower a list of (count, per-token lifetime options) per block."""
    with torch.no_grad():
        for tower, blocks in corner.items():
            counts, lives = model.token_weights.alphas(tower)
            counts.fill_(-BIG)
            lives.fill_(-BIG)
            for block, (count, lifetimes) in enumerate(blocks):
                counts[block, count] = BIG
                for j in range(SPACE.max_tokens):
                    life = lifetimes[j] if j < len(lifetimes) else 1
                    lives[block, j, SPACE.lifetimes.index(life)] = BIG


END = None
CORNERS = {
    "dpl_like": {"text": [(1, (1,)), (0, ()), (2, (1, 1)), (3, (1, 1, 1))], "image": [(2, (1, 1)), (1, (1,)), (0, ()), (1, (1,))]},
    "mpl_default": {"text": [(0, ())] * 4, "image": [(1, (1,)), (2, (END, 1)), (2, (END, 1)), (2, (END, END))]},
    "vpt_shallow": {"text": [(0, ())] * 4, "image": [(3, (END, END, END)), (0, ()), (0, ()), (0, ())]},
    "mixed": {"text": [(2, (END, 2)), (1, (1,)), (0, ()), (2, (2, END))], "image": [(1, (2,)), (3, (1, END, 2)), (0, ()), (1, (1,))]},
}


@pytest.mark.parametrize("corner", sorted(CORNERS))
def test_one_hot_corners_equal_the_fixed_architecture_they_decode_to(clip4, images, tokens, corner):
    torch.manual_seed(0)
    supernet = PromptedCLIP.token_supernet(clip4, SPACE)
    set_corner(supernet, CORNERS[corner])
    with torch.no_grad():
        for p in supernet.prompt_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    text_depth, image_depth = tower_depths(clip4)
    groups = {tower: decode_tokens(SPACE, tower, *[a.tolist() for a in supernet.token_weights.alphas(tower)])
              for tower in ("text", "image")}  # fmt: skip
    for tower, blocks in CORNERS[corner].items():
        assert [sum(g.count for g in groups[tower] if g.block == b) for b in range(4)] == [c for c, _ in blocks]
    arch = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,),
                              text_groups=groups["text"], image_groups=groups["image"])  # fmt: skip
    fixed = PromptedCLIP.fixed(clip4, arch)
    pairs = []  # (fixed parameter, supernet rows it must equal)
    for tower in ("text", "image"):
        own, searched = (fixed.text_tokens, supernet.text_tokens) if tower == "text" else (fixed.image_tokens, supernet.image_tokens)
        for index, group in enumerate(arch.groups(tower)):
            with torch.no_grad():
                own.learned(index).copy_(searched.learned(group.block)[: group.count])
            pairs.append((own.learned(index), searched.learned(group.block), group.count))

    expected = fixed(images, tokens)
    actual = supernet(images, tokens)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    labels = torch.tensor([0, 2])
    grads_fixed = torch.autograd.grad(torch.nn.functional.cross_entropy(expected, labels), [p for p, _, _ in pairs])
    grads_super = torch.autograd.grad(torch.nn.functional.cross_entropy(actual, labels), [q for _, q, _ in pairs])
    for g_fixed, g_super, (_, _, count) in zip(grads_fixed, grads_super, pairs):
        torch.testing.assert_close(g_super[:count], g_fixed, rtol=1e-5, atol=1e-5 * g_fixed.abs().max().item())
        assert g_super[count:].abs().sum() == 0, "tokens beyond the count are masked exactly"


def test_gradients_reach_both_kinds_of_weights_and_the_prompts(clip4, images, tokens):
    torch.manual_seed(0)
    supernet = PromptedCLIP.token_supernet(clip4, SPACE, alpha_init_std=0.5)
    loss = torch.nn.functional.cross_entropy(supernet(images, tokens), torch.tensor([0, 1]))
    loss.backward()
    for name, param in supernet.token_weights.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for param in supernet.prompt_parameters():
        assert param.numel() == 0 or param.grad.abs().sum() > 0
    assert all(p.grad is None for p in supernet.clip_model.parameters())
