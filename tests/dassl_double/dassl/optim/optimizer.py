"""Mirrors ``dassl.optim.optimizer``: ``build_optimizer`` from ``cfg.OPTIM``."""

import warnings
from typing import Any, Iterable, Optional, Union

import torch
import torch.nn as nn
from yacs.config import CfgNode

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: nn.Module, optim_cfg: CfgNode) -> list[dict[str, Any]]:
    """Dassl's STAGED_LR groups: children outside NEW_LAYERS get ``LR * BASE_LR_MULT``, the rest ``LR``."""
    if not isinstance(model, nn.Module):
        raise TypeError("When staged_lr is True, model given to build_optimizer() must be an instance of nn.Module")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]

    base_params: list[nn.Parameter] = []
    new_params: list[nn.Parameter] = []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(
    model: Union[nn.Module, Iterable[Any]], optim_cfg: CfgNode, param_groups: Optional[Iterable[Any]] = None
) -> torch.optim.Optimizer:
    """Mirrors Dassl's ``build_optimizer`` for adam, amsgrad, sgd, rmsprop and adamw.

    ``param_groups``, when given, is optimised instead of ``model`` (STAGED_LR is then ignored
    with a warning); otherwise STAGED_LR splits ``model``'s children, or all of
    ``model.parameters()`` (or ``model`` itself if it is an iterable) is optimised. An unknown
    name raises ``ValueError``; Dassl's own RAdam raises ``NotImplementedError`` in the double.
    """
    name = optim_cfg.NAME
    lr = optim_cfg.LR
    if name not in AVAI_OPTIMS:
        raise ValueError(f"optim must be one of {AVAI_OPTIMS}, but got {name}")

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "staged_lr will be ignored, if you need to use staged_lr, "
            "please bind it with param_groups yourself."
        )
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    weight_decay = optim_cfg.WEIGHT_DECAY
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            param_groups, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=name == "amsgrad"
        )
    if name == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
    raise NotImplementedError(f"The Dassl test double does not implement the {name!r} optimizer")
