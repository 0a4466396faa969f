"""GRAM's regulator and meta-objective (a reconstruction): identity at start, the meta-gradient
against finite differences, first vs second order, one meta-step lowering the query loss, and
the meta-initialisation file."""

from __future__ import annotations

import clip
import pytest
import torch

from trainers.dpl_core.architecture import PromptArchitecture, context_group, deep_prompt_groups
from trainers.dpl_core.prompted_clip import PromptedCLIP, truncate_tokens
from trainers.dpl_core.tiny_clip import make_tiny_clip
from trainers.gram.meta import (
    MetaInitError,
    apply_meta_init,
    caption_loss,
    learned_tensors,
    load_meta_init,
    meta_loss,
    save_meta_init,
)
from trainers.gram.regulator import ElementwiseRegulator, GradientRegulator, LowRankRegulator

CAPTIONS = ["a red square on grass", "a blue circle in snow", "a green line at night", "a yellow dot on sand"]


@pytest.fixture(scope="module")
def clip_model():
    return make_tiny_clip(seed=0).float().eval()


@pytest.fixture()
def float64_layer_norms(monkeypatch):
    """CLIP's LayerNorm computes in fp32 whatever the input; plain LayerNorm allows float64 checks."""
    monkeypatch.setattr(clip.model.LayerNorm, "forward", torch.nn.LayerNorm.forward)


def coop_model(clip_model, dtype=torch.float32) -> PromptedCLIP:
    torch.manual_seed(0)
    text_depth, image_depth = len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks)
    arch = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,), text_groups=context_group(4),
                              image_groups=deep_prompt_groups(2, image_depth))  # fmt: skip
    return PromptedCLIP.fixed(clip_model, arch).to(dtype)


def task(seed: int, dtype=torch.float32) -> tuple[tuple, tuple]:
    generator = torch.Generator().manual_seed(seed)
    tokens = truncate_tokens(clip.tokenize(CAPTIONS))
    images = torch.randn(8, 3, 32, 32, generator=generator, dtype=torch.float32).to(dtype)
    return (images[:4], tokens), (images[4:], tokens)


def test_regulators_start_as_the_identity():
    grad = torch.randn(5, 64)
    assert torch.equal(ElementwiseRegulator((5, 64))(grad), grad)  # bit for bit
    assert torch.equal(ElementwiseRegulator((5, 64), bias_scale=0.5)(grad), grad)  # bias starts at 0
    torch.testing.assert_close(LowRankRegulator(64, rank=8)(grad), grad, rtol=1e-6, atol=1e-7)


def test_low_rank_form_turns_directions_and_keeps_norms():
    regulator = LowRankRegulator(64, rank=8)
    with torch.no_grad():
        regulator.up.weight.normal_()
        regulator.down.bias.fill_(5.0)  # every hidden unit active, so every row turns
    grad = torch.randn(5, 64)
    out = regulator(grad)
    torch.testing.assert_close(out.norm(dim=-1), grad.norm(dim=-1))
    assert (torch.nn.functional.cosine_similarity(out, grad, dim=-1) < 0.999).all()


def test_elementwise_bias_is_scaled_by_the_gradient_rms():
    regulator = ElementwiseRegulator((3,), bias_scale=2.0)
    with torch.no_grad():
        regulator.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    grad = torch.tensor([3.0, 0.0, 4.0])
    rms = (25.0 / 3) ** 0.5
    torch.testing.assert_close(regulator(grad), torch.tensor([3.0 + 2 * rms, 0.0, 4.0 - 2 * rms]))


def test_regulator_meta_gradient_equals_finite_differences(clip_model, float64_layer_norms):
    model = coop_model(clip_model).double()
    theta = {n: p for n, p in learned_tensors(model).items()}
    regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()}).double()
    support, query = task(1, torch.float64)
    name = next(iter(theta))
    weight = regulator.regulators[name.replace(".", "__")].weight
    with torch.no_grad():
        weight.add_(torch.randn_like(weight) * 0.1)
    loss = meta_loss(model, theta, regulator, support, query, inner_lr=5.0).loss
    (grad,) = torch.autograd.grad(loss, [weight])
    def loss_with(index, delta: float) -> float:
        with torch.no_grad():
            weight[index] += delta
        value = meta_loss(model, theta, regulator, support, query, inner_lr=5.0).loss.item()
        with torch.no_grad():
            weight[index] -= delta
        return value

    for index in [(0, 0), (1, 5), (3, 17)]:
        eps = 1e-5
        plus, minus = loss_with(index, eps), loss_with(index, -eps)
        assert grad[index].item() == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-10)


def test_first_order_takes_the_identity_path_and_second_order_adds_the_hessian_term(clip_model, float64_layer_norms):
    model = coop_model(clip_model).double()
    theta = learned_tensors(model)
    regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()}).double()
    support, query = task(2, torch.float64)
    names = list(theta)
    first = torch.autograd.grad(meta_loss(model, theta, regulator, support, query, 5.0).loss, [theta[n] for n in names])
    # first order: the theta-gradient is the query gradient at the adapted prompts, taken as constants
    grads = torch.autograd.grad(caption_loss(model, theta, *support), [theta[n] for n in names])
    adapted = {n: (theta[n] - 5.0 * g).detach().requires_grad_() for n, g in zip(names, grads)}
    expected = torch.autograd.grad(caption_loss(model, adapted, *query), [adapted[n] for n in names])
    for got, want in zip(first, expected):
        torch.testing.assert_close(got, want)
    second = torch.autograd.grad(meta_loss(model, theta, regulator, support, query, 5.0, second_order=True).loss,
                                 [theta[n] for n in names])  # fmt: skip
    assert any((a - b).abs().max() > 1e-6 * b.abs().max() for a, b in zip(second, first)), "second order differs"


def test_one_meta_step_lowers_the_query_loss_at_the_adapted_prompts(clip_model):
    model = coop_model(clip_model)
    theta = learned_tensors(model)
    regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()})
    support, query = task(3)
    optimizer = torch.optim.Adam([*theta.values(), *regulator.parameters()], lr=1e-3)
    before = meta_loss(model, theta, regulator, support, query, inner_lr=1.0)
    optimizer.zero_grad()
    before.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in regulator.parameters())
    optimizer.step()
    after = meta_loss(model, theta, regulator, support, query, inner_lr=1.0)
    assert after.query < before.query


def test_meta_init_file_round_trips_and_refuses_other_prompt_shapes(clip_model, tmp_path):
    model = coop_model(clip_model)
    theta = learned_tensors(model)
    regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()}, bias_scale=0.5)
    with torch.no_grad():
        for p in [*theta.values(), *regulator.parameters()]:
            p.add_(torch.randn_like(p))
    path = tmp_path / "gram.pt"
    save_meta_init(path, theta, regulator, {"inner_lr": 1.0})
    loaded = load_meta_init(path)
    assert loaded.config == {"inner_lr": 1.0} and not any(p.requires_grad for p in loaded.regulator.parameters())
    for (_, a), (_, b) in zip(regulator.state_dict().items(), loaded.regulator.state_dict().items()):
        assert torch.equal(a, b)
    fresh = coop_model(clip_model)
    own = apply_meta_init(fresh, loaded)
    assert all(torch.equal(own[n], theta[n]) for n in theta)

    text_depth = len(clip_model.transformer.resblocks)
    image_depth = len(clip_model.visual.transformer.resblocks)
    other = PromptedCLIP.fixed(clip_model, PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,),
                                                              text_groups=context_group(16)))  # fmt: skip
    with pytest.raises(MetaInitError, match=r"other prompts than this model's: .*file \(4, 192\), model \(16, 192\)"):
        apply_meta_init(other, loaded)
    (tmp_path / "bad.pt").write_bytes(b"not a file")
    with pytest.raises(MetaInitError, match="not a readable GRAM meta-initialisation"):
        load_meta_init(tmp_path / "bad.pt")
    with pytest.raises(MetaInitError, match="not found"):
        load_meta_init(tmp_path / "missing.pt")
