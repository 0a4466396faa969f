"""DPL's config keys, added to a Dassl (yacs) config without touching the host's own keys."""

from __future__ import annotations

from typing import Any

from yacs.config import CfgNode as CN

PRECISIONS = ("fp32", "fp16", "amp")
VAL_SOURCES = ("auto", "val", "holdout")
SCHEDULERS = ("cosine", "single_step", "multi_step")  # the Dassl schedules our trainers rebuild
WARMUP_TYPES = ("constant", "linear")
# What the text tower reads per class: the TEXT_TEMPLATES prompts as token ids, or the reference
# implementation's training-stage input (the token embeddings of 60 templates averaged).
TEXT_INPUTS = ("templates", "averaged_template_embeddings")
ALPHA_OPTIMIZERS = ("adam", "sgd")
SEARCH_SPACES = ("lengths", "tokens")  # DPL's per-block prompt lengths | token counts and lifetimes (token_search.py)
COUPLING_INITS = ("copies", "independent")


class ConfigError(ValueError):
    """A config value our trainers cannot run with; the message names the key."""


def _dpl_node() -> CN:
    """Keys of both stages (model, precision, text prompts) and of the training stage."""
    node = CN()
    node.PREC = "fp32"  # fp32 | fp16 (CLIP weights in half) | amp (autocast); CPU runs always use fp32
    node.PROMPT_INIT_STD = 0.02  # every prompt vector starts as N(0, std^2), in search and training
    node.TEXT_TEMPLATES = ["a photo of a {}."]  # class prompt templates; several = feature-level ensemble
    node.TEXT_INPUT = "templates"  # templates (TEXT_TEMPLATES) | averaged_template_embeddings (dpl_core/templates.py)
    node.CLASS_CHUNK_SIZE = 0  # class prompts encoded per chunk, grouped by length; 0 = automatic (64)
    node.ACTIVATION_CHECKPOINTING = False  # recompute block activations in backward to save memory
    node.CLIP_CHECKPOINT = ""  # local CLIP file (JIT archive or state dict); "" = find by backbone name
    node.CLIP_CACHE_DIR = ""  # directory of downloaded CLIP weights; "" = ~/.cache/clip
    node.ARCH_FILE = ""  # training stage: arch.json written by DPLSearch (or use the two lists below)
    node.TEXT_LENGTHS = []  # training stage: prompt length per text block, instead of ARCH_FILE
    node.IMAGE_LENGTHS = []  # training stage: prompt length per image block, instead of ARCH_FILE
    node.GRAM_FILE = ""  # training stage: GRAM meta-initialisation (prompts + frozen gradient regulator); "" = off
    node.COUPLING_INIT = "copies"  # coupled token maps of blocks >= 1 start as copies of one map (MaPLe) | independent
    node.KD_WEIGHT = 0.0  # weight of distillation towards zero-shot CLIP; 0 = off (teacher never runs)
    node.KD_TEMPERATURE = 1.0  # softmax temperature of that distillation
    return node


def _search_node() -> CN:
    """Keys of the search stage only."""
    node = CN()
    node.SPACE = "lengths"  # lengths (DPL: key/value prompts per block) | tokens (how many enter each block, how long each lives)
    node.MAX_LENGTH = 6  # candidate prompt lengths per block are 0..MAX_LENGTH
    node.MAX_TOKENS = 6  # SPACE tokens: counts 0..MAX_TOKENS enter each block
    node.MAX_LIFETIME = 3  # SPACE tokens: lifetimes 1..MAX_LIFETIME blocks, plus "to the end" if LIFETIME_TO_END
    node.LIFETIME_TO_END = True  # SPACE tokens: a token may also live to the tower's end
    node.TEMPERATURE = 1.0  # block mixture = softmax(alpha / TEMPERATURE)
    node.ALPHA_INIT_STD = 1e-3  # alphas start as N(0, std^2)
    node.ALPHA_OPTIMIZER = "adam"  # optimizer of the alphas: adam | sgd
    node.ALPHA_LR = 3.5e-3  # learning rate of the alphas (no schedule)
    node.ALPHA_BETAS = (0.5, 0.999)  # betas of the alphas' Adam (ALPHA_OPTIMIZER adam only)
    node.ALPHA_MOMENTUM = 0.9  # momentum of the alphas' SGD (ALPHA_OPTIMIZER sgd only)
    node.ALPHA_WEIGHT_DECAY = 0.0  # weight decay of the alphas
    node.ALPHA_BATCH_SIZE = 0  # validation images per alpha step; 0 = DATALOADER.TRAIN_X.BATCH_SIZE
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg: CN) -> None:
    """Check every key of ``TRAINER.DPL`` and ``TRAINER.DPLSEARCH``, and the Dassl keys our
    trainers interpret themselves, in one pass before any data or model is read.

    Raises:
        ConfigError: listing every problem, one line each, with the key, what is expected and
            the value found.
    """
    problems: list[str] = []

    def expect(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            problems.append(f"{key} must be {expected}, got {value!r}")

    dpl, search, optim = cfg.TRAINER.DPL, cfg.TRAINER.DPLSEARCH, cfg.OPTIM
    expect(dpl.PREC in PRECISIONS, "TRAINER.DPL.PREC", f"one of {PRECISIONS}", dpl.PREC)
    expect(_is_number(dpl.PROMPT_INIT_STD) and dpl.PROMPT_INIT_STD > 0, "TRAINER.DPL.PROMPT_INIT_STD", "> 0", dpl.PROMPT_INIT_STD)
    templates = list(dpl.TEXT_TEMPLATES)
    expect(bool(templates) and all(isinstance(t, str) and t.count("{}") == 1 for t in templates),
           "TRAINER.DPL.TEXT_TEMPLATES", "a non-empty list of templates with one '{}' slot", templates)  # fmt: skip
    expect(dpl.TEXT_INPUT in TEXT_INPUTS, "TRAINER.DPL.TEXT_INPUT", f"one of {TEXT_INPUTS}", dpl.TEXT_INPUT)
    if dpl.TEXT_INPUT == "averaged_template_embeddings":
        # Its templates are fixed (dpl_core/templates.py) and its zero-shot teacher would read the
        # averaged embeddings, which no zero-shot CLIP reads: keys that would be silently unused or
        # meaningless are refused.
        default_templates = list(_dpl_node().TEXT_TEMPLATES)
        expect(templates == default_templates, "TRAINER.DPL.TEXT_TEMPLATES",
               f"left at its default {default_templates} with TEXT_INPUT 'averaged_template_embeddings' (which "
               "averages the 60 templates of trainers/dpl_core/templates.py)", templates)  # fmt: skip
        expect(dpl.KD_WEIGHT == 0, "TRAINER.DPL.KD_WEIGHT",
               "0 with TEXT_INPUT 'averaged_template_embeddings' (the zero-shot teacher would read averaged "
               "embeddings, not a prompt)", dpl.KD_WEIGHT)  # fmt: skip
    expect(isinstance(dpl.CLASS_CHUNK_SIZE, int) and dpl.CLASS_CHUNK_SIZE >= 0,
           "TRAINER.DPL.CLASS_CHUNK_SIZE", "an integer >= 0 (0 = automatic)", dpl.CLASS_CHUNK_SIZE)  # fmt: skip
    for key in ("TEXT_LENGTHS", "IMAGE_LENGTHS"):
        lengths = list(dpl[key])
        expect(all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths),
               f"TRAINER.DPL.{key}", "a list of integers >= 0", lengths)  # fmt: skip
    expect(isinstance(dpl.GRAM_FILE, str), "TRAINER.DPL.GRAM_FILE", "a path or \"\"", dpl.GRAM_FILE)
    expect(dpl.COUPLING_INIT in COUPLING_INITS, "TRAINER.DPL.COUPLING_INIT", f"one of {COUPLING_INITS}", dpl.COUPLING_INIT)
    expect(_is_number(dpl.KD_WEIGHT) and dpl.KD_WEIGHT >= 0, "TRAINER.DPL.KD_WEIGHT", ">= 0", dpl.KD_WEIGHT)
    expect(_is_number(dpl.KD_TEMPERATURE) and dpl.KD_TEMPERATURE > 0, "TRAINER.DPL.KD_TEMPERATURE", "> 0", dpl.KD_TEMPERATURE)

    expect(search.SPACE in SEARCH_SPACES, "TRAINER.DPLSEARCH.SPACE", f"one of {SEARCH_SPACES}", search.SPACE)
    expect(isinstance(search.MAX_LENGTH, int) and search.MAX_LENGTH >= 1, "TRAINER.DPLSEARCH.MAX_LENGTH", "an integer >= 1", search.MAX_LENGTH)
    for key in ("MAX_TOKENS", "MAX_LIFETIME"):
        expect(isinstance(search[key], int) and not isinstance(search[key], bool) and search[key] >= 1,
               f"TRAINER.DPLSEARCH.{key}", "an integer >= 1", search[key])  # fmt: skip
    expect(isinstance(search.LIFETIME_TO_END, bool), "TRAINER.DPLSEARCH.LIFETIME_TO_END", "True or False", search.LIFETIME_TO_END)
    # The other space's keys would be silently unused: they must keep their defaults.
    for key in ("MAX_LENGTH",) if search.SPACE == "tokens" else ("MAX_TOKENS", "MAX_LIFETIME", "LIFETIME_TO_END"):
        expect(search[key] == _search_node()[key], f"TRAINER.DPLSEARCH.{key}",
               f"left at its default {_search_node()[key]!r} with SPACE {search.SPACE!r} (it is not read)", search[key])  # fmt: skip
    if search.SPACE == "tokens":
        expect(dpl.TEXT_INPUT == "templates", "TRAINER.DPL.TEXT_INPUT",
               "'templates' with TRAINER.DPLSEARCH.SPACE tokens (text tokens sit among the class prompt's tokens)",
               dpl.TEXT_INPUT)  # fmt: skip
    expect(_is_number(search.TEMPERATURE) and search.TEMPERATURE > 0, "TRAINER.DPLSEARCH.TEMPERATURE", "> 0", search.TEMPERATURE)
    expect(_is_number(search.ALPHA_INIT_STD) and search.ALPHA_INIT_STD >= 0, "TRAINER.DPLSEARCH.ALPHA_INIT_STD", ">= 0", search.ALPHA_INIT_STD)
    expect(search.ALPHA_OPTIMIZER in ALPHA_OPTIMIZERS, "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER",
           f"one of {ALPHA_OPTIMIZERS}", search.ALPHA_OPTIMIZER)  # fmt: skip
    expect(_is_number(search.ALPHA_LR) and search.ALPHA_LR > 0, "TRAINER.DPLSEARCH.ALPHA_LR", "> 0", search.ALPHA_LR)
    betas = list(search.ALPHA_BETAS)
    expect(len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas),
           "TRAINER.DPLSEARCH.ALPHA_BETAS", "two numbers in [0, 1)", betas)  # fmt: skip
    expect(_is_number(search.ALPHA_MOMENTUM) and 0 <= search.ALPHA_MOMENTUM < 1,
           "TRAINER.DPLSEARCH.ALPHA_MOMENTUM", "in [0, 1)", search.ALPHA_MOMENTUM)  # fmt: skip
    # The other optimizer's key would be silently unused: it must keep its default.
    unread = {"adam": "ALPHA_MOMENTUM", "sgd": "ALPHA_BETAS"}.get(search.ALPHA_OPTIMIZER)
    if unread:
        default, value = _search_node()[unread], search[unread]
        if isinstance(default, tuple):  # compared as lists: a yaml or command-line value may be either
            default, value = list(default), list(value)
        expect(value == default, f"TRAINER.DPLSEARCH.{unread}",
               f"left at its default {default!r} with ALPHA_OPTIMIZER {search.ALPHA_OPTIMIZER!r} (it is not read)",
               value)  # fmt: skip
    expect(isinstance(search.ALPHA_BATCH_SIZE, int) and not isinstance(search.ALPHA_BATCH_SIZE, bool)
           and search.ALPHA_BATCH_SIZE >= 0, "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE",
           "an integer >= 0 (0 = DATALOADER.TRAIN_X.BATCH_SIZE)", search.ALPHA_BATCH_SIZE)  # fmt: skip
    expect(_is_number(search.ALPHA_WEIGHT_DECAY) and search.ALPHA_WEIGHT_DECAY >= 0,
           "TRAINER.DPLSEARCH.ALPHA_WEIGHT_DECAY", ">= 0", search.ALPHA_WEIGHT_DECAY)  # fmt: skip
    expect(search.VAL_SOURCE in VAL_SOURCES, "TRAINER.DPLSEARCH.VAL_SOURCE", f"one of {VAL_SOURCES}", search.VAL_SOURCE)
    expect(_is_number(search.HOLDOUT_FRACTION) and 0 < search.HOLDOUT_FRACTION < 1,
           "TRAINER.DPLSEARCH.HOLDOUT_FRACTION", "in (0, 1)", search.HOLDOUT_FRACTION)  # fmt: skip

    expect(optim.LR_SCHEDULER in SCHEDULERS, "OPTIM.LR_SCHEDULER", f"one of {SCHEDULERS}", optim.LR_SCHEDULER)
    if optim.WARMUP_EPOCH > 0:
        expect(optim.WARMUP_TYPE in WARMUP_TYPES, "OPTIM.WARMUP_TYPE", f"one of {WARMUP_TYPES}", optim.WARMUP_TYPE)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
