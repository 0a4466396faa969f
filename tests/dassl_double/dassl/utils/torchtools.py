"""Mirrors ``dassl.utils.torchtools``: checkpoint files, parameter counting, layer freezing."""

import os.path as osp
import pickle
import shutil
import types
import warnings
from collections import OrderedDict
from functools import partial
from typing import Any, Iterable, Optional, Union

import torch
import torch.nn as nn

from .tools import mkdir_if_missing

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "open_all_layers",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
]


def _strip_module_prefix(key: str) -> str:
    """Drop the ``module.`` prefix ``nn.DataParallel`` adds to state-dict keys, as Dassl does."""
    return key[len("module."):] if key.startswith("module.") else key


def save_checkpoint(
    state: dict,
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> None:
    """Mirrors Dassl's ``save_checkpoint``: ``save_dir/model.pth.tar-<epoch>`` plus a ``checkpoint`` file.

    ``model_name`` replaces the file name; ``is_best`` also copies the file to
    ``model-best.pth.tar``. The ``checkpoint`` file always names the file just written.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (_strip_module_prefix(k), v) for k, v in state["state_dict"].items()
        )
    fname = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, fname)
    torch.save(state, fpath)
    print(f"Checkpoint saved to {fpath}")

    with open(osp.join(save_dir, "checkpoint"), "w+") as f:
        f.write(f"{fname}\n")

    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        shutil.copy(fpath, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')


def _latin1_pickle_module() -> types.ModuleType:
    """Return a pickle stand-in decoding python2 strings as latin1, Dassl's UnicodeDecodeError fallback."""
    module = types.ModuleType("pickle_latin1")
    module.__dict__.update(vars(pickle))
    module.load = partial(pickle.load, encoding="latin1")
    module.Unpickler = partial(pickle.Unpickler, encoding="latin1")
    return module


def load_checkpoint(fpath: Optional[str]) -> Any:
    """Mirrors Dassl's ``load_checkpoint``, including its torch>=2.6 defect.

    Like Dassl it calls ``torch.load(fpath, map_location=...)`` without ``weights_only``, so on
    torch >= 2.6 a checkpoint holding non-tensor objects raises ``pickle.UnpicklingError``
    (after printing ``Unable to load checkpoint from "..."``).
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')

    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location)
    except UnicodeDecodeError:
        return torch.load(fpath, pickle_module=_latin1_pickle_module(), map_location=map_location)
    except Exception:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
) -> int:
    """Mirrors Dassl's ``resume_from_checkpoint``: load the file named in ``fdir/checkpoint``.

    Restores model weights, then the optimizer and scheduler states when given, and returns
    the stored epoch (the number of finished epochs) as the epoch to start from.
    """
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        fname = f.readlines()[0].strip("\n")
    fpath = osp.join(fdir, fname)

    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")

    if optimizer is not None and "optimizer" in checkpoint.keys():
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")

    if scheduler is not None and "scheduler" in checkpoint.keys():
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")

    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def open_all_layers(model: nn.Module) -> None:
    """Put ``model`` in train mode and make every parameter trainable, as Dassl's helper."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model: nn.Module, open_layers: Union[str, list[str]]) -> None:
    """Train only the named child modules and freeze (and eval) the others, as Dassl's helper."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        if not hasattr(model, layer):
            raise AssertionError(f"{layer} is not an attribute")

    for name, module in model.named_children():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def count_num_param(
    model: Optional[nn.Module] = None, params: Optional[Iterable[Any]] = None
) -> int:
    """Count parameters of ``model``, or of ``params`` (tensors or ``{"params": tensor}``), as in Dassl."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must provide at least one.")


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Mirrors Dassl's ``load_pretrained_weights``: copy the weights whose name and size match.

    Keys lose a ``module.`` prefix; unmatched ones are reported, and a warning is issued when
    nothing matched.
    """
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint

    model_dict = model.state_dict()
    matched: OrderedDict[str, torch.Tensor] = OrderedDict()
    discarded: list[str] = []
    for key, value in state_dict.items():
        key = _strip_module_prefix(key)
        if key in model_dict and model_dict[key].size() == value.size():
            matched[key] = value
        else:
            discarded.append(key)

    model_dict.update(matched)
    model.load_state_dict(model_dict)

    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
        return
    print(f"Successfully loaded pretrained weights from {weight_path}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")
