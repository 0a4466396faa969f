"""The attention fallback for torch < 2.0 and the torch version check of the core.

``trainers.dpl_core.prompted_clip`` calls attention through one module-level name, chosen at
import: ``F.scaled_dot_product_attention`` where torch has it, else :func:`softmax_attention`.
Here the fallback is forced on the current torch and the fixed model and the supernet are
compared with the fused path, in values and gradients (fp32).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import clip
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import trainers.dpl_core
from trainers.dpl_core import prompted_clip
from trainers.dpl_core.architecture import PromptArchitecture
from trainers.dpl_core.clip_loader import load_clip
from trainers.dpl_core.prompted_clip import PromptedCLIP, softmax_attention, truncate_tokens
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
HAS_FUSED = hasattr(F, "scaled_dot_product_attention")
needs_fused = pytest.mark.skipif(not HAS_FUSED, reason="torch < 2.0 has no fused attention to compare with")

# fp32 kernels sum in different orders: differences seen are below 2e-6 of each tensor's largest
# entry; gradients are compared relative to that scale.
TOLERANCE = dict(rtol=1e-5, atol=1e-6)
GRAD_SCALE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory) -> torch.nn.Module:
    """A tiny random CLIP written to disk and read back through the real loader."""
    path = write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")
    return load_clip("ViT-B/16", checkpoint=path)


@pytest.fixture(scope="module")
def tokens() -> Tensor:
    """``[3, n]`` class prompts of different lengths, cut after the last EOT."""
    return truncate_tokens(clip.tokenize(["a photo of a dog.", "cat", "a photo of a red circle, a type of shape."]))


@pytest.fixture(scope="module")
def images() -> Tensor:
    """``[2, 3, 32, 32]`` random pixels."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def counted(function: Callable[..., Tensor], calls: list[int]) -> Callable[..., Tensor]:
    """``function``, appending 1 to ``calls`` per call (to show which path ran)."""

    def wrapper(*args, **kwargs) -> Tensor:
        calls.append(1)
        return function(*args, **kwargs)

    return wrapper


def values_and_gradients(model: PromptedCLIP, images: Tensor, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``([images, classes] logits, gradients of a fixed loss w.r.t. every learned tensor)``."""
    logits = model(images, tokens)
    loss = (logits * torch.linspace(-1.0, 1.0, logits.numel()).view_as(logits)).sum()
    learned = [p for p in model.parameters() if p.requires_grad and p.numel()]  # length-0 blocks hold none
    return logits.detach(), list(torch.autograd.grad(loss, learned))


def fixed_model(clip_model: torch.nn.Module) -> PromptedCLIP:
    """Lengths 0 and > 0 in both towers: both attention calls (with and without prompts) run."""
    torch.manual_seed(0)
    arch = PromptArchitecture((2, 0, 3), (0, 4), candidates=(0, 1, 2, 3, 4))
    return PromptedCLIP.fixed(clip_model, arch, init_std=0.5)


def supernet(clip_model: torch.nn.Module) -> PromptedCLIP:
    """A supernet over lengths 0..3 with random mixtures."""
    torch.manual_seed(0)
    model = PromptedCLIP.supernet(clip_model, (0, 1, 2, 3), init_std=0.5)
    with torch.no_grad():
        model.arch_weights.text.normal_()
        model.arch_weights.image.normal_()
    return model


def test_the_fused_kernel_is_chosen_where_torch_has_it():
    expected = F.scaled_dot_product_attention if HAS_FUSED else softmax_attention
    assert prompted_clip.scaled_dot_product_attention is expected


@needs_fused
@pytest.mark.parametrize("mask", ["none", "causal", "per_row", "gated"])
def test_softmax_attention_equals_the_fused_kernel(mask):
    """Every mask the model passes: none, ``[Q, N]`` causal, ``[B, 1, 1, N]`` (pooled queries),
    and the token search's float ``[Q, N]`` (causal ``-inf`` plus ``log p`` of gated keys)."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, length, dim = 3, 2, 7, 16
    queries = 1 if mask == "per_row" else length
    q = torch.randn(batch, heads, queries, dim, generator=generator, requires_grad=True)
    k, v = (torch.randn(batch, heads, length, dim, generator=generator, requires_grad=True) for _ in range(2))
    attn_mask = {
        "none": None,
        "causal": torch.ones(length, length, dtype=torch.bool).tril(),
        "per_row": torch.ones(length, length, dtype=torch.bool).tril()[torch.tensor([2, 6, 0])].view(batch, 1, 1, length),
        "gated": torch.where(torch.ones(length, length, dtype=torch.bool).tril(),
                             torch.tensor([0.0, -0.3, -2.0, float("-inf"), -0.7, 0.0, -5.0]), float("-inf")),
    }[mask]  # fmt: skip
    outputs = [attention(q, k, v, attn_mask=attn_mask) for attention in (F.scaled_dot_product_attention, softmax_attention)]
    weights = torch.randn(outputs[0].shape, generator=generator)
    fused, written_out = (torch.autograd.grad((out * weights).sum(), (q, k, v)) for out in outputs)
    torch.testing.assert_close(outputs[1], outputs[0], **TOLERANCE)
    for got, want in zip(written_out, fused):
        torch.testing.assert_close(got, want, **TOLERANCE)


@needs_fused
@pytest.mark.parametrize("build", [fixed_model, supernet], ids=["fixed", "supernet"])
def test_forced_fallback_gives_the_fused_values_and_gradients(clip_model, tokens, images, build, monkeypatch):
    fused_calls: list[int] = []
    monkeypatch.setattr(prompted_clip, "scaled_dot_product_attention", counted(F.scaled_dot_product_attention, fused_calls))
    fused = values_and_gradients(build(clip_model), images, tokens)

    fallback_calls: list[int] = []
    monkeypatch.setattr(prompted_clip, "scaled_dot_product_attention", counted(softmax_attention, fallback_calls))
    fallback = values_and_gradients(build(clip_model), images, tokens)

    assert len(fallback_calls) == len(fused_calls)
    if build is fixed_model:
        assert fused_calls, "the fixed model must go through the swapped attention"
    else:
        # Every supernet block has candidates with prompts: the one-pass mixture computes its
        # own softmax and never calls the fused kernel, so both runs are the same computation.
        assert not fused_calls
    torch.testing.assert_close(fallback[0], fused[0], **TOLERANCE)
    assert len(fallback[1]) == len(fused[1]) > 0
    for got, want in zip(fallback[1], fused[1]):
        torch.testing.assert_close(got, want, rtol=TOLERANCE["rtol"], atol=GRAD_SCALE_TOLERANCE * float(want.abs().max()))
    assert all(g.abs().sum() > 0 for g in fallback[1]), "every learned tensor must receive gradient"


@pytest.mark.parametrize("version", ["1.13.0", "1.13.1+cu117", "2.0.1", "2.14.1+cu130", "10.0.0", "2.16.0.dev20260101"])
def test_supported_torch_versions_pass_the_check(version):
    trainers.dpl_core.check_torch_version(version)


@pytest.mark.parametrize("version", ["1.12.1+cu113", "1.8.1", "1.9.0", "0.4.1"])
def test_older_torch_is_refused_with_both_versions_named(version):
    with pytest.raises(ImportError) as caught:
        trainers.dpl_core.check_torch_version(version)
    assert f"torch {version} is installed" in str(caught.value) and "torch >= 1.13" in str(caught.value)


def test_importing_the_core_with_an_old_torch_fails_up_front():
    """The check runs when any core module is imported, before anything calls torch."""
    probe = (
        "import sys, types\n"
        "sys.modules['torch'] = types.SimpleNamespace(__version__='1.9.0+cu111')\n"
        "import trainers.dpl_core.prompted_clip\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: DPL needs torch >= 1.13 (its trainers >= 2.0), but torch 1.9.0+cu111 is installed"), result.stderr
