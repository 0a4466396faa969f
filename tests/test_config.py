"""Config validation in one place, before data is read; the input size and the architecture
checked against the CLIP actually loaded."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
from dassl.config import get_cfg_default

import train
from test_trainers import make_trainer, run_args
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint
from trainers.dpl_core.architecture import PromptArchitecture
from trainers.dpl_core.config import ConfigError, validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENGTHS = ("TRAINER.DPL.TEXT_LENGTHS", "[1, 0, 2]", "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


def defaults():
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    return cfg


def set_key(cfg, key: str, value) -> None:
    """``cfg.<key> = value`` for a dotted ``key``, without yacs' type coercion (bad values pass)."""
    *path, leaf = key.split(".")
    node = cfg
    for name in path:
        node = node[name]
    node[leaf] = value


def test_the_defaults_and_every_shipped_yaml_are_valid():
    validate(defaults())
    for root, _, files in os.walk(os.path.join(REPO, "configs")):
        for name in (f for f in files if f.endswith(".yaml")):  # configs/architectures/ holds JSON
            cfg = defaults()
            cfg.merge_from_file(os.path.join(root, name))
            validate(cfg)


# What README's "Where every hyper-parameter comes from" says each shipped trainer config holds.
CONFIG_VALUES = {
    # this repository's defaults ("ours")
    "DPLSearch/vit_b16_ep60_batch4": {"OPTIM.MAX_EPOCH": 60, "OPTIM.LR": 0.0035, "TRAINER.DPL.PREC": "fp16",
                                      "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER": "adam", "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE": 0,
                                      "TRAINER.DPLSEARCH.MAX_LENGTH": 6},
    "DPL/vit_b16_ep40_batch4": {"OPTIM.MAX_EPOCH": 40, "TRAINER.DPL.PREC": "fp16", "TRAINER.DPL.TEXT_INPUT": "templates"},
    "DPLSearch/vit_b16_ep20_batch4_b2n": {"OPTIM.MAX_EPOCH": 20, "OPTIM.LR": 0.0035, "TRAINER.DPLSEARCH.MAX_LENGTH": 6},
    "DPL/vit_b16_ep10_batch4_b2n": {"OPTIM.MAX_EPOCH": 10, "TRAINER.DPL.TEXT_INPUT": "templates"},
    "DPLSearch/vit_b16_ep4_batch4_cross": {"OPTIM.MAX_EPOCH": 4, "TRAINER.DPLSEARCH.VAL_SOURCE": "holdout"},
    "DPL/vit_b16_ep2_batch4_cross": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR": 0.0035},
    # recipe "paper"
    "DPLSearch/vit_b16_paper_ep60_batch4": {"OPTIM.MAX_EPOCH": 60, "TRAINER.DPL.PREC": "fp32",
                                            "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER": "sgd", "TRAINER.DPLSEARCH.ALPHA_LR": 0.0035,
                                            "TRAINER.DPLSEARCH.ALPHA_MOMENTUM": 0.9, "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE": 4},
    "DPL/vit_b16_paper_ep40_batch4": {"OPTIM.MAX_EPOCH": 40, "TRAINER.DPL.PREC": "fp32",
                                      "TRAINER.DPL.TEXT_INPUT": "averaged_template_embeddings"},
    # recipe "reference"
    "DPLSearch/vit_b16_reference_ep80_batch4": {"OPTIM.MAX_EPOCH": 80, "TRAINER.DPL.PREC": "fp32",
                                                "TRAINER.DPL.TEXT_TEMPLATES": ["a photo of a {}."],
                                                "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER": "adam",
                                                "TRAINER.DPLSEARCH.ALPHA_BETAS": (0.5, 0.999),
                                                "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE": 16, "TRAINER.DPLSEARCH.MAX_LENGTH": 6},
    "DPL/vit_b16_reference_ep40_batch4": {"OPTIM.MAX_EPOCH": 40, "TRAINER.DPL.PREC": "fp32",
                                          "TRAINER.DPL.TEXT_INPUT": "averaged_template_embeddings", "TRAINER.DPL.KD_WEIGHT": 0.0},
    "DPLSearch/vit_b16_reference_ep20_batch4_b2n": {"OPTIM.MAX_EPOCH": 20, "OPTIM.LR": 0.0045, "TRAINER.DPL.PREC": "fp32",
                                                    "TRAINER.DPLSEARCH.MAX_LENGTH": 4,
                                                    "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE": 100},
    # baseline presets on the engine ("original": the method's own repository's config)
    "DPL/coop_16ctx_vit_b16_ep50": {"OPTIM.MAX_EPOCH": 50, "OPTIM.LR": 0.002, "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
                                    "TRAINER.DPL.ARCH_FILE": "configs/architectures/coop_16ctx.json"},
    "DPL/coop_16ctx_vit_b16_ep200": {"OPTIM.MAX_EPOCH": 200, "OPTIM.LR": 0.002},
    "DPL/vpt_deep_8ctx_depth12_ep5_batch4": {"OPTIM.MAX_EPOCH": 5, "OPTIM.LR": 0.0025, "TRAINER.DPL.PREC": "fp32",
                                             "TRAINER.DPL.TEXT_TEMPLATES": ["a photo of a {}."]},
    "DPL/ivlp_2+2ctx_depth12_ep5_batch4": {"OPTIM.LR": 0.0035, "TRAINER.DPL.TEXT_TEMPLATES": ["of a {}."]},
    "DPL/ivlp_4ctx_text_only_depth12_ep5_batch4": {"OPTIM.LR": 0.0025, "TRAINER.DPL.TEXT_TEMPLATES": ["{}."]},
    "DPL/maple_2ctx_depth9_ep5_batch4": {"OPTIM.MAX_EPOCH": 5, "OPTIM.LR": 0.0035, "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
                                         "TRAINER.DPL.COUPLING_INIT": "copies"},
    "DPL/mpl_c1_add2_rm1_depth9_ep5_batch4": {"OPTIM.MAX_EPOCH": 5, "OPTIM.LR": 0.0035, "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
                                             "TRAINER.DPL.ARCH_FILE": "configs/architectures/mpl_c1_add2_rm1_depth9.json"},
    "DPL/mpl_c1_add2_rm1_depth9_ep2_batch4_cross": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR": 0.0035},
    "DPL/mpl_c1_add2_rm1_depth3_ep2_batch4_cross_yaml": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR": 0.0026,
                                                         "TRAINER.DPL.ARCH_FILE": "configs/architectures/mpl_c1_add2_rm1_depth3.json"},
    "DPL/maple_2ctx_depth3_ep2_batch4_cross": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR": 0.0026,
                                               "TRAINER.DPL.ARCH_FILE": "configs/architectures/maple_2ctx_depth3.json"},
}  # fmt: skip


def trainer_config(name: str):
    cfg = defaults()
    cfg.merge_from_file(os.path.join(REPO, "configs", "trainers", f"{name}.yaml"))
    return cfg


@pytest.mark.parametrize("name", sorted(CONFIG_VALUES))
def test_the_recipes_hold_what_their_sources_give(name):
    cfg = trainer_config(name)
    for key, value in CONFIG_VALUES[name].items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, f"{name}: {key}"


def test_the_paper_and_reference_training_stages_are_the_same_run_settings():
    # The paper's text and the reference code agree on every training-stage value both give.
    assert trainer_config("DPL/vit_b16_paper_ep40_batch4") == trainer_config("DPL/vit_b16_reference_ep40_batch4")


def test_every_value_of_the_trainer_configs_names_its_source():
    # "original (FILE)": a baseline preset's value from its method's own repository.
    source = re.compile(r"#\s*(paper\b|reference code \(|ours: |original\b)")
    configs = os.path.join(REPO, "configs", "trainers")
    for trainer in ("DPLSearch", "DPL"):
        for name in sorted(os.listdir(os.path.join(configs, trainer))):
            with open(os.path.join(configs, trainer, name)) as f:
                for number, line in enumerate(f, start=1):
                    text = line.strip()
                    if not text or text.startswith("#") or text.endswith(":"):
                        continue  # blank, comment or node
                    assert source.search(line), f"{trainer}/{name}:{number} names no source: {text}"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("TRAINER.DPL.PREC", "fp8", "TRAINER.DPL.PREC must be one of ('fp32', 'fp16', 'amp'), got 'fp8'"),
        ("TRAINER.DPL.PROMPT_INIT_STD", 0.0, "TRAINER.DPL.PROMPT_INIT_STD must be > 0, got 0.0"),
        ("TRAINER.DPL.TEXT_TEMPLATES", ["a photo"], "TRAINER.DPL.TEXT_TEMPLATES must be a non-empty list of templates"),
        ("TRAINER.DPL.TEXT_INPUT", "ensemble", "TRAINER.DPL.TEXT_INPUT must be one of ('templates', 'averaged_template_embeddings'), got 'ensemble'"),
        ("TRAINER.DPL.CLASS_CHUNK_SIZE", -1, "TRAINER.DPL.CLASS_CHUNK_SIZE must be an integer >= 0 (0 = automatic), got -1"),
        ("TRAINER.DPL.TEXT_LENGTHS", [1, -2], "TRAINER.DPL.TEXT_LENGTHS must be a list of integers >= 0, got [1, -2]"),
        ("TRAINER.DPL.KD_WEIGHT", -0.5, "TRAINER.DPL.KD_WEIGHT must be >= 0, got -0.5"),
        ("TRAINER.DPL.KD_TEMPERATURE", 0.0, "TRAINER.DPL.KD_TEMPERATURE must be > 0, got 0.0"),
        ("TRAINER.DPLSEARCH.MAX_LENGTH", 0, "TRAINER.DPLSEARCH.MAX_LENGTH must be an integer >= 1, got 0"),
        ("TRAINER.DPLSEARCH.TEMPERATURE", -1.0, "TRAINER.DPLSEARCH.TEMPERATURE must be > 0, got -1.0"),
        ("TRAINER.DPLSEARCH.ALPHA_LR", 0.0, "TRAINER.DPLSEARCH.ALPHA_LR must be > 0, got 0.0"),
        ("TRAINER.DPLSEARCH.ALPHA_BETAS", (0.5,), "TRAINER.DPLSEARCH.ALPHA_BETAS must be two numbers in [0, 1), got [0.5]"),
        ("TRAINER.DPLSEARCH.ALPHA_BETAS", (0.5, 1.0), "two numbers in [0, 1), got [0.5, 1.0]"),
        ("TRAINER.DPLSEARCH.ALPHA_OPTIMIZER", "adamw", "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER must be one of ('adam', 'sgd'), got 'adamw'"),
        ("TRAINER.DPLSEARCH.ALPHA_MOMENTUM", 1.0, "TRAINER.DPLSEARCH.ALPHA_MOMENTUM must be in [0, 1), got 1.0"),
        ("TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE", -1, "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE must be an integer >= 0 (0 = DATALOADER.TRAIN_X.BATCH_SIZE), got -1"),
        ("TRAINER.DPLSEARCH.VAL_SOURCE", "test", "TRAINER.DPLSEARCH.VAL_SOURCE must be one of ('auto', 'val', 'holdout')"),
        ("TRAINER.DPLSEARCH.HOLDOUT_FRACTION", 1.0, "TRAINER.DPLSEARCH.HOLDOUT_FRACTION must be in (0, 1), got 1.0"),
        ("OPTIM.LR_SCHEDULER", "exp", "OPTIM.LR_SCHEDULER must be one of ('cosine', 'single_step', 'multi_step'), got 'exp'"),
    ],
)  # fmt: skip
def test_each_bad_value_is_named_with_what_was_expected(key, value, message):
    cfg = defaults()
    set_key(cfg, key, value)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


AVERAGED = ("TRAINER.DPL.TEXT_INPUT", "averaged_template_embeddings")


@pytest.mark.parametrize(
    "settings, message",
    [
        # The averaged input reads its own 60 templates: TEXT_TEMPLATES would be silently unread.
        ((AVERAGED, ("TRAINER.DPL.TEXT_TEMPLATES", ["a photo of a {}.", "a sketch of a {}."])),
         "TRAINER.DPL.TEXT_TEMPLATES must be left at its default ['a photo of a {}.'] with TEXT_INPUT "
         "'averaged_template_embeddings' (which averages the 60 templates of trainers/dpl_core/templates.py), "
         "got ['a photo of a {}.', 'a sketch of a {}.']"),
        ((AVERAGED, ("TRAINER.DPL.TEXT_TEMPLATES", ["a sketch of a {}."])),
         "TRAINER.DPL.TEXT_TEMPLATES must be left at its default"),
        ((AVERAGED, ("TRAINER.DPL.KD_WEIGHT", 1.0)),
         "TRAINER.DPL.KD_WEIGHT must be 0 with TEXT_INPUT 'averaged_template_embeddings'"),
        ((("TRAINER.DPLSEARCH.ALPHA_OPTIMIZER", "sgd"), ("TRAINER.DPLSEARCH.ALPHA_BETAS", (0.9, 0.99))),
         "TRAINER.DPLSEARCH.ALPHA_BETAS must be left at its default [0.5, 0.999] with ALPHA_OPTIMIZER 'sgd' "
         "(it is not read), got [0.9, 0.99]"),
        ((("TRAINER.DPLSEARCH.ALPHA_MOMENTUM", 0.5),),
         "TRAINER.DPLSEARCH.ALPHA_MOMENTUM must be left at its default 0.9 with ALPHA_OPTIMIZER 'adam' "
         "(it is not read), got 0.5"),
    ],
)  # fmt: skip
def test_keys_the_other_setting_would_leave_unread_are_refused(settings, message):
    cfg = defaults()
    for key, value in settings:
        set_key(cfg, key, value)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


def test_averaged_input_and_sgd_alphas_are_valid_with_their_keys_at_the_defaults():
    cfg = defaults()
    cfg.TRAINER.DPL.TEXT_INPUT = "averaged_template_embeddings"
    cfg.TRAINER.DPLSEARCH.ALPHA_OPTIMIZER, cfg.TRAINER.DPLSEARCH.ALPHA_MOMENTUM = "sgd", 0.5
    cfg.TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE = 16
    validate(cfg)


def test_every_problem_is_listed_at_once():
    cfg = defaults()
    cfg.TRAINER.DPL.KD_TEMPERATURE = 0.0
    cfg.TRAINER.DPLSEARCH.ALPHA_BETAS = (2.0, 0.9)
    cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE = 1, "cosine"
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid config:" and len(lines) == 4
    assert "OPTIM.WARMUP_TYPE must be one of ('constant', 'linear'), got 'cosine'" in lines[3]


def test_validation_comes_before_the_data(tmp_path, tiny_checkpoint):
    argv = run_args("DPL", tmp_path / "run", str(tmp_path / "no_data_here"), tiny_checkpoint, *LENGTHS,
                    "TRAINER.DPL.KD_TEMPERATURE", "0.0")  # fmt: skip
    with pytest.raises(ConfigError, match="KD_TEMPERATURE must be > 0"):
        make_trainer(argv)


def without_input_size(argv: list[str]) -> list[str]:
    index = argv.index("INPUT.SIZE")
    return argv[:index] + argv[index + 2 :]


def test_the_input_size_comes_from_the_loaded_clip(tmp_path, tiny_checkpoint):
    data = str(tmp_path / "data")
    trainer = make_trainer(without_input_size(run_args("DPL", tmp_path / "run", data, tiny_checkpoint, *LENGTHS)))
    assert tuple(trainer.cfg.INPUT.SIZE) == (32, 32)  # the tiny CLIP's resolution, not Dassl's 224
    batch = next(iter(trainer.train_loader_x))
    assert tuple(batch["img"].shape[-2:]) == (32, 32)
    assert trainer.class_logits(batch["img"]).shape == (batch["img"].shape[0], 6)

    argv = run_args("DPL", tmp_path / "other", data, tiny_checkpoint, *LENGTHS, "INPUT.SIZE", "(64, 64)")
    with pytest.raises(ConfigError, match=r"INPUT.SIZE \(64, 64\) does not match the input resolution of the loaded CLIP \(32x32\)"):
        make_trainer(argv)


def test_an_architecture_is_checked_against_the_loaded_model(tmp_path, tiny_checkpoint):
    data = str(tmp_path / "data")
    search = make_trainer(run_args("DPLSearch", tmp_path / "search", data, tiny_checkpoint))
    found = search.architecture()
    assert found.model == search.model_shape
    assert (found.model.text_depth, found.model.text_width, found.model.image_width, found.model.resolution,
            found.model.patch_size) == (3, 192, 128, 32, 8)  # fmt: skip
    assert found.backbone == "ViT-B/16", "the name given is kept beside what was loaded"

    wider = dataclasses.replace(found, model=dataclasses.replace(found.model, text_width=512))
    wider.save(tmp_path / "arch.json")
    assert PromptArchitecture.load(tmp_path / "arch.json") == wider
    argv = run_args("DPL", tmp_path / "run", data, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE", str(tmp_path / "arch.json"))
    with pytest.raises(ConfigError, match="arch.json: architecture does not fit the model: it was searched on a CLIP of text 3 blocks x 512.* the loaded one has text 3 blocks x 192"):
        make_trainer(argv)


def test_the_schedule_follows_dassls_warm_up_and_cosine():
    from trainers.dpl_common import lr_factor

    optim = defaults().OPTIM
    optim.LR, optim.MAX_EPOCH, optim.LR_SCHEDULER = 0.01, 10, "cosine"
    optim.WARMUP_EPOCH, optim.WARMUP_TYPE, optim.WARMUP_MIN_LR, optim.WARMUP_RECOUNT = 3, "linear", 1e-5, False
    # Dassl's linear warm-up: WARMUP_MIN_LR at epoch 0, then LR * e / W; afterwards cosine of e / MAX_EPOCH:
    # 1e-5 / 0.01 = 0.001, 1/3, 2/3, then 0.5 * (1 + cos(0.3 pi)) = 0.5 * (1 + 0.587785) = 0.793893.
    assert [round(lr_factor(e, optim), 6) for e in range(4)] == [0.001, 0.333333, 0.666667, 0.793893]
    optim.WARMUP_TYPE, optim.WARMUP_CONS_LR = "constant", 2e-5
    assert [round(lr_factor(e, optim), 6) for e in (0, 2, 3)] == [0.002, 0.002, 0.793893]


def test_the_other_search_space_keys_must_keep_their_defaults():
    cfg = defaults()
    cfg.TRAINER.DPLSEARCH.SPACE = "tokens"
    cfg.TRAINER.DPLSEARCH.MAX_LENGTH = 3
    with pytest.raises(ConfigError, match="TRAINER.DPLSEARCH.MAX_LENGTH must be left at its default 6 with SPACE 'tokens'"):
        validate(cfg)
    cfg = defaults()
    cfg.TRAINER.DPLSEARCH.MAX_LIFETIME = 2
    with pytest.raises(ConfigError, match="MAX_LIFETIME must be left at its default 3 with SPACE 'lengths'"):
        validate(cfg)
    cfg = defaults()
    cfg.TRAINER.DPLSEARCH.SPACE = "tokens"
    cfg.TRAINER.DPL.TEXT_INPUT = "averaged_template_embeddings"
    with pytest.raises(ConfigError, match="TEXT_INPUT must be 'templates' with TRAINER.DPLSEARCH.SPACE tokens"):
        validate(cfg)
