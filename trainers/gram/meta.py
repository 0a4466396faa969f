"""GRAM's meta-objective and its output file (a reconstruction; ../shared/notes/GRAM.md §2.3).

One task is a support set and a query set of image-caption pairs from two sibling leaves of
the cross-modal hierarchy. With prompt tensors ``θ`` (the initialisation being learned) and a
regulator ``ψ_φ``::

    L_s = loss(θ, support);  g_s = ∇_θ L_s                 (detached: first order in θ)
    θ'  = θ - α · ψ_φ(g_s)                                 (one regulated inner step)
    L   = loss(θ', query) + λ_s · L_s

``∇_φ L`` is exact (the inner step is differentiable in φ); ``∇_θ L`` takes the identity path
through θ' (first-order MAML) unless ``second_order`` keeps the graph of ``g_s``. ``loss`` is
the image-to-caption cross-entropy over the set: image ``i`` must pick its own caption among
the set's captions, each encoded with the model's prompts.

The output of meta-training is one self-describing file (:func:`save_meta_init`): the learned
prompt tensors by name, the regulator and the config that made them; :func:`apply_meta_init`
starts a model from it and refuses one whose learned tensors differ in names or shapes.
Core module: imports only torch (the model is any ``PromptedCLIP``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .regulator import GradientRegulator

FORMAT_NAME = "gram-meta-init"
FORMAT_VERSION = 1


class MetaInitError(ValueError):
    """A meta-initialisation file that is malformed or does not fit the model."""


def learned_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """The model's learned prompt tensors by name (non-empty, requiring gradients)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad and p.numel()}


def caption_loss(model: nn.Module, params: Mapping[str, Tensor], images: Tensor, captions: Tensor) -> Tensor:
    """Image-to-caption cross-entropy of a set of ``n`` pairs with the prompt tensors ``params``.

    Args:
        model: a ``PromptedCLIP`` (its forward gives ``[images, classes]`` logits).
        params: name -> tensor for some of the model's parameters (the others are its own).
        images: ``[n, 3, H, W]``.
        captions: ``[n, L]`` token ids (cut after the last EOT), row ``i`` the caption of image ``i``.
    """
    logits = functional_call(model, dict(params), (images, captions))
    return F.cross_entropy(logits, torch.arange(images.shape[0], device=logits.device))


def twice_differentiable_attention() -> contextlib.AbstractContextManager:
    """Attention through torch's math kernel, whose backward can itself be differentiated (the
    fused CPU and flash kernels cannot); second-order meta-gradients need it."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: the math kernel is what CPU runs anyway
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


class CaptionHead(nn.Module):
    """Logits of cached image features against captions encoded with the prompts: for prompts
    that leave the image tower alone, whose features are then frozen CLIP's, computed once."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image_features: Tensor, captions: Tensor) -> Tensor:
        return self.model.logits(image_features, self.model.encode_text(captions))


class _PrefixedRegulator:
    """A regulator seen under the names a wrapping module gives its parameters."""

    def __init__(self, regulator: GradientRegulator, prefix: str) -> None:
        self.regulator, self.prefix = regulator, prefix

    def regulate(self, name: str, grad: Tensor) -> Tensor:
        return self.regulator.regulate(name[len(self.prefix) :], grad)


def meta_inputs(
    model: nn.Module, theta: Mapping[str, Tensor], regulator: GradientRegulator, cached_image_features: bool
) -> tuple[nn.Module, dict[str, Tensor], Any]:
    """``(head, params, regulator)`` for :func:`meta_loss`: the model itself, or with
    ``cached_image_features`` a :class:`CaptionHead` around it (its parameter names prefixed)."""
    if not cached_image_features:
        return model, dict(theta), regulator
    return CaptionHead(model), {"model." + n: t for n, t in theta.items()}, _PrefixedRegulator(regulator, "model.")


@dataclass
class MetaLoss:
    """The meta-objective of one task and its parts (detached, for logging)."""

    loss: Tensor
    support: float
    query: float


def meta_loss(
    model: nn.Module,
    theta: Mapping[str, Tensor],
    regulator: GradientRegulator | Any,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    inner_lr: float,
    second_order: bool = False,
    support_weight: float = 0.0,
) -> MetaLoss:
    """``loss(θ - α ψ(∇L_s), query) + λ_s L_s`` for one task (see the module docstring).

    Args:
        theta: the prompt tensors being meta-learned, by parameter name.
        support, query: ``(images [n, 3, H, W], captions [n, L])`` (with a
            :class:`CaptionHead`, image features ``[n, D]`` in place of the images).
        regulator: anything with ``regulate(name, grad)`` (see :func:`meta_inputs`).
    """
    names = list(theta)
    with twice_differentiable_attention() if second_order else contextlib.nullcontext():
        support_loss = caption_loss(model, theta, *support)
        grads = torch.autograd.grad(support_loss, [theta[n] for n in names], create_graph=second_order)
        if not second_order:
            grads = [g.detach() for g in grads]
        adapted = {n: theta[n] - inner_lr * regulator.regulate(n, g) for n, g in zip(names, grads)}
        query_loss = caption_loss(model, adapted, *query)
    total = query_loss + support_weight * support_loss if support_weight else query_loss
    return MetaLoss(total, float(support_loss.detach()), float(query_loss.detach()))


def save_meta_init(path: str | os.PathLike, theta: Mapping[str, Tensor], regulator: GradientRegulator,
                   config: Mapping[str, Any]) -> None:  # fmt: skip
    """Write the meta-learned initialisation and regulator (atomically)."""
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "prompts": {n: t.detach().float().cpu() for n, t in theta.items()},
        "regulator": {"config": regulator.config(), "state": {k: v.cpu() for k, v in regulator.state_dict().items()}},
        "config": dict(config),
    }
    path = os.fspath(path)
    torch.save(payload, path + ".tmp")
    os.replace(path + ".tmp", path)


@dataclass
class MetaInit:
    """A loaded meta-initialisation: prompt tensors by name, the frozen regulator, its config."""

    prompts: dict[str, Tensor]
    regulator: GradientRegulator
    config: dict[str, Any]
    source: str


def load_meta_init(path: str | os.PathLike) -> MetaInit:
    """Read a file written by :func:`save_meta_init`; its regulator is frozen."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MetaInitError(f"GRAM meta-initialisation not found: {path} (expected the file meta-training wrote)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  any unreadable file gets the same one line
        raise MetaInitError(f"{path}: not a readable GRAM meta-initialisation ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise MetaInitError(f"{path}: not a GRAM meta-initialisation (expected \"format\": \"{FORMAT_NAME}\")")
    if payload.get("version") != FORMAT_VERSION:
        raise MetaInitError(f"{path}: unsupported version {payload.get('version')!r}, expected {FORMAT_VERSION}")
    regulator = GradientRegulator.from_config(payload["regulator"]["config"])
    regulator.load_state_dict(payload["regulator"]["state"])
    regulator.requires_grad_(False)
    return MetaInit(dict(payload["prompts"]), regulator, dict(payload["config"]), path)


def apply_meta_init(model: nn.Module, meta: MetaInit) -> dict[str, nn.Parameter]:
    """Copy the meta-learned prompt tensors into ``model``; returns its learned tensors by name.

    Raises:
        MetaInitError: naming every learned tensor whose name or shape differs between the
            file and the model (a meta-initialisation belongs to one prompt configuration).
    """
    own = learned_tensors(model)
    problems = []
    for name in sorted(set(own) | set(meta.prompts)):
        if name not in meta.prompts:
            problems.append(f"{name} {tuple(own[name].shape)} is not in the file")
        elif name not in own:
            problems.append(f"{name} {tuple(meta.prompts[name].shape)} is not learned by this model")
        elif tuple(own[name].shape) != tuple(meta.prompts[name].shape):
            problems.append(f"{name}: file {tuple(meta.prompts[name].shape)}, model {tuple(own[name].shape)}")
        elif tuple(meta.regulator.shapes.get(name, ())) != tuple(own[name].shape):
            problems.append(f"{name}: the regulator was made for {meta.regulator.shapes.get(name)}")
    if problems:
        raise MetaInitError(f"{meta.source} was meta-trained for other prompts than this model's: " + "; ".join(problems))
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(meta.prompts[name].to(param.dtype))
    return own
