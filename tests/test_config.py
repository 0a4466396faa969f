"""Config validation in one place, before data is read; the input size and the architecture
checked against the CLIP actually loaded."""

from __future__ import annotations

import dataclasses
import os

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


def test_the_defaults_and_every_shipped_yaml_are_valid():
    validate(defaults())
    for root, _, files in os.walk(os.path.join(REPO, "configs")):
        for name in files:
            cfg = defaults()
            cfg.merge_from_file(os.path.join(root, name))
            validate(cfg)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("TRAINER.DPL.PREC", "fp8", "TRAINER.DPL.PREC must be one of ('fp32', 'fp16', 'amp'), got 'fp8'"),
        ("TRAINER.DPL.PROMPT_INIT_STD", 0.0, "TRAINER.DPL.PROMPT_INIT_STD must be > 0, got 0.0"),
        ("TRAINER.DPL.TEXT_TEMPLATES", ["a photo"], "TRAINER.DPL.TEXT_TEMPLATES must be a non-empty list of templates"),
        ("TRAINER.DPL.CLASS_CHUNK_SIZE", -1, "TRAINER.DPL.CLASS_CHUNK_SIZE must be an integer >= 0 (0 = automatic), got -1"),
        ("TRAINER.DPL.TEXT_LENGTHS", [1, -2], "TRAINER.DPL.TEXT_LENGTHS must be a list of integers >= 0, got [1, -2]"),
        ("TRAINER.DPL.KD_WEIGHT", -0.5, "TRAINER.DPL.KD_WEIGHT must be >= 0, got -0.5"),
        ("TRAINER.DPL.KD_TEMPERATURE", 0.0, "TRAINER.DPL.KD_TEMPERATURE must be > 0, got 0.0"),
        ("TRAINER.DPLSEARCH.MAX_LENGTH", 0, "TRAINER.DPLSEARCH.MAX_LENGTH must be an integer >= 1, got 0"),
        ("TRAINER.DPLSEARCH.TEMPERATURE", -1.0, "TRAINER.DPLSEARCH.TEMPERATURE must be > 0, got -1.0"),
        ("TRAINER.DPLSEARCH.ALPHA_LR", 0.0, "TRAINER.DPLSEARCH.ALPHA_LR must be > 0, got 0.0"),
        ("TRAINER.DPLSEARCH.ALPHA_BETAS", (0.5,), "TRAINER.DPLSEARCH.ALPHA_BETAS must be two numbers in [0, 1), got [0.5]"),
        ("TRAINER.DPLSEARCH.ALPHA_BETAS", (0.5, 1.0), "two numbers in [0, 1), got [0.5, 1.0]"),
        ("TRAINER.DPLSEARCH.VAL_SOURCE", "test", "TRAINER.DPLSEARCH.VAL_SOURCE must be one of ('auto', 'val', 'holdout')"),
        ("TRAINER.DPLSEARCH.HOLDOUT_FRACTION", 1.0, "TRAINER.DPLSEARCH.HOLDOUT_FRACTION must be in (0, 1), got 1.0"),
        ("OPTIM.LR_SCHEDULER", "exp", "OPTIM.LR_SCHEDULER must be one of ('cosine', 'single_step', 'multi_step'), got 'exp'"),
    ],
)  # fmt: skip
def test_each_bad_value_is_named_with_what_was_expected(key, value, message):
    cfg = defaults()
    *path, leaf = key.split(".")
    node = cfg
    for name in path:
        node = node[name]
    node[leaf] = value
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


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
