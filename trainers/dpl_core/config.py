"""DPL's config keys, added to a Dassl (yacs) config without touching the host's own keys."""

from __future__ import annotations

from yacs.config import CfgNode as CN

PRECISIONS = ("fp32", "fp16", "amp")
VAL_SOURCES = ("auto", "val", "holdout")


class ConfigError(ValueError):
    """A config value our trainers cannot run with; the message names the key."""


def _dpl_node() -> CN:
    """Keys of both stages (model, precision, text prompts) and of the training stage."""
    node = CN()
    node.PREC = "fp32"  # fp32 | fp16 (CLIP weights in half) | amp (autocast); CPU runs always use fp32
    node.PROMPT_INIT_STD = 0.02  # every prompt vector starts as N(0, std^2), in search and training
    node.TEXT_TEMPLATES = ["a photo of a {}."]  # class prompt templates; several = feature-level ensemble
    node.CLASS_CHUNK_SIZE = 0  # class prompts encoded per chunk, grouped by length; 0 = automatic (64)
    node.ACTIVATION_CHECKPOINTING = False  # recompute block activations in backward to save memory
    node.CLIP_CHECKPOINT = ""  # local CLIP file (JIT archive or state dict); "" = find by backbone name
    node.CLIP_CACHE_DIR = ""  # directory of downloaded CLIP weights; "" = ~/.cache/clip
    node.ARCH_FILE = ""  # training stage: arch.json written by DPLSearch (or use the two lists below)
    node.TEXT_LENGTHS = []  # training stage: prompt length per text block, instead of ARCH_FILE
    node.IMAGE_LENGTHS = []  # training stage: prompt length per image block, instead of ARCH_FILE
    node.KD_WEIGHT = 0.0  # weight of distillation towards zero-shot CLIP; 0 = off (teacher never runs)
    node.KD_TEMPERATURE = 1.0  # softmax temperature of that distillation
    return node


def _search_node() -> CN:
    """Keys of the search stage only."""
    node = CN()
    node.MAX_LENGTH = 6  # candidate prompt lengths per block are 0..MAX_LENGTH
    node.TEMPERATURE = 1.0  # block mixture = softmax(alpha / TEMPERATURE)
    node.ALPHA_INIT_STD = 1e-3  # alphas start as N(0, std^2)
    node.ALPHA_LR = 3.5e-3  # Adam learning rate of the alphas (no schedule)
    node.ALPHA_BETAS = (0.5, 0.999)  # Adam betas of the alphas
    node.ALPHA_WEIGHT_DECAY = 0.0  # Adam weight decay of the alphas
    node.VAL_SOURCE = "auto"  # alpha-step data: val split | holdout (from few-shot train) | auto
    node.HOLDOUT_FRACTION = 0.25  # share of each class's few-shot images held out when VAL_SOURCE is holdout
    node.TEST_SUPERNET = False  # evaluate the supernet on the test split after the search
    return node


def add_dpl_config(cfg: CN) -> CN:
    """Add ``TRAINER.DPL``, ``TRAINER.DPLSEARCH`` and ``DATASET.SUBSAMPLE_CLASSES`` to ``cfg``.

    Keys the host config already defines are left as they are, so calling this inside a
    CoOp/MaPLe checkout (whose ``extend_cfg`` defines ``DATASET.SUBSAMPLE_CLASSES``) is safe.
    """
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    if "DPL" not in cfg.TRAINER:
        cfg.TRAINER.DPL = _dpl_node()
    if "DPLSEARCH" not in cfg.TRAINER:
        cfg.TRAINER.DPLSEARCH = _search_node()
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new (base-to-new generalisation)
    if was_frozen:
        cfg.freeze()
    return cfg
