"""GRAM's gradient regulator ψ: maps a prompt tensor's raw gradient to the direction used for
the update (a reconstruction; see README "GRAM" and ../shared/notes/GRAM.md §3.4).

Two forms, both the identity at initialisation, so an untrained regulator is plain prompt tuning:

* :class:`ElementwiseRegulator` (default): ``ψ(g) = w ⊙ g + β · b ⊙ rms(g)`` with ``w``, ``b`` of
  the prompt tensor's shape, ``w = 1``, ``b = 0``, and a fixed bias scale ``β`` (0: no bias
  term at all). Per-coordinate learning rates (Meta-SGD) are the case ``β = 0``.
* :class:`LowRankRegulator`: per token row ``g_j`` of width ``d``,
  ``ψ(g_j) = |g_j| · normalize(ĝ + U relu(V ĝ + b1))`` with ``ĝ = g_j / |g_j|`` and ``U`` zero at
  initialisation: it turns the direction, never the norm.

:class:`GradientRegulator` holds one regulator per learned tensor, keyed by the tensor's name
in the model. Core module: imports only torch.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

FORMS = ("elementwise", "lowrank")


class ElementwiseRegulator(nn.Module):
    """``ψ(g) = w ⊙ g + β · b ⊙ rms(g)`` for a gradient of shape ``shape``.

    Attributes:
        weight: ``w``, ones at initialisation.
        bias: ``b``, zeros at initialisation (absent when ``bias_scale`` is 0).
    """

    def __init__(self, shape: tuple[int, ...], bias_scale: float = 0.0) -> None:
        super().__init__()
        self.bias_scale = float(bias_scale)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if self.bias_scale else None

    def forward(self, grad: Tensor) -> Tensor:
        out = self.weight * grad
        if self.bias is not None:
            # rms(g) detached: the bias is dimensionless and scales with the gradient's size
            out = out + self.bias_scale * self.bias * grad.detach().pow(2).mean().sqrt()
        return out


class LowRankRegulator(nn.Module):
    """Norm-preserving low-rank turn of every token row ``[..., width]`` of a gradient.

    Attributes:
        down: ``V`` ``[rank, width]`` with bias ``b1``.
        up: ``U`` ``[width, rank]``, zeros at initialisation (so ψ starts as the identity).
    """

    def __init__(self, width: int, rank: int = 64) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, grad: Tensor) -> Tensor:
        norm = grad.norm(dim=-1, keepdim=True)
        unit = grad / norm.clamp_min(torch.finfo(grad.dtype).tiny)
        turned = unit + self.up(torch.relu(self.down(unit)))
        return norm * turned / turned.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(grad.dtype).tiny)


def _key(name: str) -> str:
    return name.replace(".", "__")  # ModuleDict keys cannot hold dots


class GradientRegulator(nn.Module):
    """One regulator per learned tensor.

    Args:
        shapes: parameter name -> shape of the learned tensors to regulate.
        form: ``elementwise`` or ``lowrank``.
        bias_scale: ``β`` of the element-wise form (0: no bias).
        rank: rank of the low-rank form.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], form: str = "elementwise", bias_scale: float = 0.0,
                 rank: int = 64) -> None:  # fmt: skip
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"regulator form must be one of {FORMS}, got {form!r}")
        self.form, self.bias_scale, self.rank = form, float(bias_scale), int(rank)
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.regulators = nn.ModuleDict(
            {_key(name): ElementwiseRegulator(shape, bias_scale) if form == "elementwise" else LowRankRegulator(shape[-1], rank)
             for name, shape in self.shapes.items()}  # fmt: skip
        )

    def config(self) -> dict:
        """What rebuilds this regulator (with :meth:`from_config`)."""
        return {"form": self.form, "bias_scale": self.bias_scale, "rank": self.rank,
                "shapes": {name: list(shape) for name, shape in self.shapes.items()}}  # fmt: skip

    @classmethod
    def from_config(cls, config: Mapping) -> "GradientRegulator":
        return cls({n: tuple(s) for n, s in config["shapes"].items()}, config["form"], config["bias_scale"], config["rank"])

    def regulate(self, name: str, grad: Tensor) -> Tensor:
        """ψ of the gradient of learned tensor ``name`` (same shape)."""
        return self.regulators[_key(name)](grad)

    @torch.no_grad()
    def apply_to_grads(self, parameters: Mapping[str, nn.Parameter]) -> None:
        """Replace every named parameter's ``.grad`` by its regulated value, in fp32, in place
        (downstream training: after backward, after unscaling, before the optimiser step)."""
        for name, param in parameters.items():
            if param.grad is not None:
                param.grad.copy_(self.regulate(name, param.grad.float()).to(param.grad.dtype))
