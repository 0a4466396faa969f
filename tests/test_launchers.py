"""The bash launchers of ``scripts/dpl``.

Fast tests check argument and DATA validation, the manual presets, and the exact train.py
command lines, skipping and resuming in a stand-in checkout whose ``train.py`` only records
its arguments. The slow tests run the launchers for real on the synthetic dataset with a tiny
random CLIP (short schedules through ``-- KEY VALUE`` overrides) and the demo end to end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dassl.config import get_cfg_default
from PIL import Image

import train
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint
from trainers.dpl import architecture_from_cfg
from trainers.dpl_core.architecture import uniform

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "dpl"


def launch(script: str, *args: str, env: dict[str, str | None], cwd: Path, scripts: Path = SCRIPTS,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run ``bash <scripts>/<script> args`` with ``env`` on top of this process's environment.

    A ``None`` value removes the variable. PYTHON defaults to this interpreter, so the
    launchers see the same packages (and the Dassl double that conftest puts on PYTHONPATH).
    """
    # An exported DPL_GRAM_FILE would rename every DPL folder: only a test that means it gives one.
    full = {key: value for key, value in os.environ.items() if key != "DPL_GRAM_FILE"} | {"PYTHON": sys.executable}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    result = subprocess.run(["bash", str(scripts / script), *args], cwd=cwd, env=full,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    if check:
        assert result.returncode == 0, f"{script} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


# ============================================================================ fast tests


@pytest.mark.parametrize(
    "script, args, env, message",
    [
        ("few_shot.sh", ["eurosat", "1"], {"DATA": None}, "DATA is not set"),
        ("base2new.sh", ["eurosat", "1"], {"DATA": ""}, "DATA is not set"),
        ("cross_dataset.sh", ["1"], {"DATA": "/no/such/folder"}, "DATA=/no/such/folder is not a folder"),
        ("few_shot_all.sh", [], {"DATA": None}, "DATA is not set"),
        ("few_shot.sh", ["eurosat"], {}, "DATASET and SEED are required"),
        ("few_shot.sh", ["eurosatt", "1"], {}, r"unknown dataset 'eurosatt'.*known: .*eurosat"),
        ("few_shot.sh", ["eurosat", "one"], {}, "SEED must be an integer >= 0, got 'one'"),
        ("few_shot.sh", ["eurosat", "1", "0"], {}, "SHOTS must be an integer >= 1, got '0'"),
        ("few_shot.sh", ["eurosat", "1", "16", "nope"], {}, r"unknown DPLSearch config 'nope'.*vit_b16_ep60_batch4"),
        ("few_shot.sh", ["eurosat", "1", "16", "OPTIM.MAX_EPOCH", "2"], {}, "looks like a config key: put KEY VALUE overrides after '--'"),
        ("few_shot.sh", ["eurosat", "1", "--", "OPTIM.MAX_EPOCH"], {}, "must be KEY VALUE pairs"),
        ("base2new.sh", ["a", "1", "2", "3", "4", "5"], {}, "at most 5 arguments before '--', got 6"),
        ("base2new.sh", ["eurosat", "1"], {"DPL_TEST_BASE": "yes"}, "DPL_TEST_BASE must be 0 or 1"),
        ("cross_dataset.sh", ["1"], {"DPL_TARGET_DATASETS": "caltech101 nope"}, "unknown dataset 'nope'"),
        ("manual.sh", ["eurosat", "1", "vpt"], {}, r"unknown preset 'vpt'.*known presets: ivlp_2ctx_depth9 .*vpt_8ctx_depth12_image"),
        ("few_shot_all.sh", ["1 x"], {}, "SEED must be an integer"),
        ("few_shot.sh", ["eurosat", "1", "16", "vit_b16_paper_ep60_batch4"], {},
         "SEARCH_CFG 'vit_b16_paper_ep60_batch4' follows recipe 'paper' but TRAIN_CFG 'vit_b16_ep40_batch4' follows 'ours'"),
        ("base2new.sh", ["eurosat", "1", "16", "vit_b16_ep20_batch4_b2n", "vit_b16_reference_ep40_batch4"], {},
         "follows recipe 'ours' but TRAIN_CFG 'vit_b16_reference_ep40_batch4' follows 'reference'"),
        ("cross_dataset.sh", ["1", "16", "vit_b16_reference_ep80_batch4", "vit_b16_paper_ep40_batch4"], {},
         "follows recipe 'reference' but TRAIN_CFG 'vit_b16_paper_ep40_batch4' follows 'paper'"),
        ("few_shot_all.sh", ["1", "16", "vit_b16_paper_ep60_batch4", "vit_b16_reference_ep40_batch4"], {},
         "follows recipe 'paper' but TRAIN_CFG 'vit_b16_reference_ep40_batch4' follows 'reference'"),
        ("demo.sh", ["eurosat"], {}, "takes no arguments"),
        ("few_shot.sh", ["eurosat", "1", "16", "vit_b16_ep60_batch4", "coop_16ctx_vit_b16_ep50"], {},
         "TRAIN_CFG 'coop_16ctx_vit_b16_ep50' is a preset .*give '-' in place of 'vit_b16_ep60_batch4'"),
        ("base2new.sh", ["eurosat", "1", "16", "vit_b16_ep20_batch4_b2n", "manual_ivlp_2ctx_depth9"], {},
         "TRAIN_CFG 'manual_ivlp_2ctx_depth9' is a preset"),
        ("base2new.sh", ["eurosat", "1", "16", "-", "vit_b16_ep10_batch4_b2n"], {},
         "TRAIN_CFG 'vit_b16_ep10_batch4_b2n' needs a search .*give a SEARCH_CFG instead of '-'"),
        ("cross_dataset.sh", ["1", "16", "vit_b16_ep4_batch4_cross", "maple_2ctx_depth3_ep2_batch4_cross"], {},
         "TRAIN_CFG 'maple_2ctx_depth3_ep2_batch4_cross' is a preset"),
        ("cross_dataset.sh", ["1", "16", "-", "vit_b16_ep2_batch4_cross"], {}, "TRAIN_CFG 'vit_b16_ep2_batch4_cross' needs a search"),
        ("few_shot_all.sh", ["1", "16", "-", "vit_b16_ep40_batch4"], {}, "TRAIN_CFG 'vit_b16_ep40_batch4' needs a search"),
        ("manual.sh", ["eurosat", "1", "vit_b16_ep40_batch4"], {}, "'vit_b16_ep40_batch4' is not a preset: .* needs a search"),
        ("manual.sh", ["eurosat", "1", "coop"], {},
         r"unknown preset 'coop'.*known presets: ivlp_2ctx_depth9 .*coop_16ctx_vit_b16_ep50 .*maple_2ctx_depth9_ep5_batch4"),
        ("few_shot.sh", ["eurosat", "1"], {"DPL_GRAM_FILE": "/no/such/gram_meta_init.pt"},
         "^error: DPL_GRAM_FILE=/no/such/gram_meta_init.pt is not a file: point it at the gram_meta_init.pt"),
        ("cross_dataset.sh", ["1"], {"DPL_GRAM_FILE": "/no/such/gram_meta_init.pt"}, "DPL_GRAM_FILE=/no/such/gram_meta_init.pt is not a file"),
        ("few_shot.sh", ["eurosat", "1", "--", "TRAINER.DPL.GRAM_FILE", "g.pt"], {}, "give the GRAM file as DPL_GRAM_FILE=PATH"),
        ("base2new.sh", ["eurosat", "1", "16", "-", "coop_16ctx_vit_b16_ep50+gram"], {},
         r"'coop_16ctx_vit_b16_ep50\+gram' ends in '\+gram', which marks the folders of GRAM runs"),
        ("manual.sh", ["eurosat", "1", "coop_16ctx_vit_b16_ep50+gram"], {}, r"ends in '\+gram'"),
    ],
)  # fmt: skip
def test_bad_arguments_and_data_fail_early_with_a_clear_message(tmp_path, script, args, env, message):
    out = tmp_path / "out"
    result = launch(script, *args, env={"DATA": str(tmp_path), "DPL_OUTPUT": str(out), **env}, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr
    assert not out.exists(), "nothing is written before the arguments are checked"


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("ivlp_2ctx_depth9", uniform(2, 9, 12, 12)),
        ("vpt_8ctx_depth12_image", uniform(8, 12, 12, 12, towers=("image",))),
        ("text_2ctx_depth9", uniform(2, 9, 12, 12, towers=("text",))),
        ("uniform_4ctx_depth12", uniform(4, 12, 12, 12)),
    ],
)
def test_manual_presets_are_the_hand_designed_architectures_they_name(preset, expected):
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / "DPL" / f"manual_{preset}.yaml"))
    architecture = architecture_from_cfg(cfg)
    assert (architecture.text_lengths, architecture.image_lengths) == (expected.text_lengths, expected.image_lengths)
    architecture.check_fits(12, 12, backbone=cfg.MODEL.BACKBONE.NAME)
    assert cfg.OPTIM.MAX_EPOCH == 40, "baselines train as long as the DPL training stage"


def recorded_calls(calls: Path) -> list[dict]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_launchers_build_coop_command_lines_skip_finished_and_resume_unfinished_runs(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    # Relative DATA, from a directory that is neither the checkout nor its scripts folder.
    env = {"DATA": "../data", "FAKE_CALLS": str(calls), "DPL_OUTPUT": None}
    cwd = tmp_path / "elsewhere"
    scripts = checkout / "scripts" / "dpl"

    def run(script, *args, check=True, **extra):
        before = len(recorded_calls(calls))
        result = launch(script, *args, env={**env, **extra}, cwd=cwd, scripts=scripts, check=check)
        return result, recorded_calls(calls)[before:]

    data = str(tmp_path / "data")
    result, new = run("few_shot.sh", "eurosat", "3", "4", "--", "OPTIM.MAX_EPOCH", "5")
    search = "output/eurosat/DPLSearch/vit_b16_ep60_batch4_4shots/seed3"
    trained = "output/eurosat/DPL/vit_b16_ep40_batch4_4shots/seed3"
    common = ["--root", data, "--seed", "3", "--dataset-config-file", "configs/datasets/eurosat.yaml"]
    assert [c["argv"] for c in new] == [
        ["--output-dir", search, *common, "--trainer", "DPLSearch",
         "--config-file", "configs/trainers/DPLSearch/vit_b16_ep60_batch4.yaml",
         "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "5"],
        ["--output-dir", trained, *common, "--trainer", "DPL", "--config-file", "configs/trainers/DPL/vit_b16_ep40_batch4.yaml",
         "DATASET.NUM_SHOTS", "4", "TRAINER.DPL.ARCH_FILE", f"{search}/arch.json", "OPTIM.MAX_EPOCH", "5"],
    ]  # fmt: skip
    assert {c["cwd"] for c in new} == {str(checkout)}

    # train.py is asked again (it compares the configs) and leaves the finished runs alone.
    result, new = run("few_shot.sh", "eurosat", "3", "4", "--", "OPTIM.MAX_EPOCH", "5")
    assert len(new) == 2 and result.stdout.count("[skip]") == 2 and "[run]" not in result.stdout

    # Training stops after epoch 1 (the launcher fails with it); the rerun resumes it in place.
    result, new = run("few_shot.sh", "eurosat", "4", check=False, FAKE_STOP="DPL")
    assert result.returncode != 0 and len(new) == 2
    result, new = run("few_shot.sh", "eurosat", "4")
    assert "[skip] search" in result.stdout and "[resume] train" in result.stdout
    assert new[-1]["argv"][:2] == ["--output-dir", "output/eurosat/DPL/vit_b16_ep40_batch4_16shots/seed4"]

    # A search folder that finished but lost arch.json is reported, not silently retrained.
    (checkout / search / "arch.json").unlink()
    result, new = run("few_shot.sh", "eurosat", "3", "4", check=False)
    assert result.returncode == 2 and "finished without arch.json" in result.stderr and len(new) == 1

    result, new = run("base2new.sh", "dtd", "2", "--", "OPTIM.MAX_EPOCH", "3", DPL_TEST_BASE="1")
    b2n_train = "output/base2new/train_base/dtd/shots_16/DPL/vit_b16_ep10_batch4_b2n/seed2"
    b2n_arch = "output/base2new/train_base/dtd/shots_16/DPLSearch/vit_b16_ep20_batch4_b2n/seed2/arch.json"
    assert [c["argv"][1] for c in new] == [
        "output/base2new/train_base/dtd/shots_16/DPLSearch/vit_b16_ep20_batch4_b2n/seed2", b2n_train,
        "output/base2new/test_base/dtd/shots_16/DPL/vit_b16_ep10_batch4_b2n/seed2",
        "output/base2new/test_new/dtd/shots_16/DPL/vit_b16_ep10_batch4_b2n/seed2",
    ]  # fmt: skip
    assert new[0]["argv"][-6:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "3"]
    assert new[1]["argv"][-6:] == ["DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.DPL.ARCH_FILE", b2n_arch,
                                   "OPTIM.MAX_EPOCH", "3"]  # fmt: skip
    assert new[2]["argv"][-6:-3] == ["DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.DPL.ARCH_FILE"]
    assert new[3]["argv"][2:6] == ["--eval-only", "--model-dir", b2n_train, "--root"]
    assert new[3]["argv"][-8:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new",
                                   "TRAINER.DPL.ARCH_FILE", b2n_arch, "OPTIM.MAX_EPOCH", "3"]  # fmt: skip
    # An evaluation without a result is run again; the finished stages are skipped.
    (checkout / new[3]["argv"][1] / "result.json").unlink()
    result, new = run("base2new.sh", "dtd", "2", "--", "OPTIM.MAX_EPOCH", "3")
    assert "[resume] evaluate dtd new classes" in result.stdout and result.stdout.count("[skip]") == 2
    assert len(new) == 3 and new[2]["argv"][1].startswith("output/base2new/test_new/")

    result, new = run("cross_dataset.sh", "1", DPL_OUTPUT="../out")  # relative to the caller's directory
    out = str(tmp_path / "out")
    targets = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
               "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    source = f"{out}/imagenet/DPL/vit_b16_ep2_batch4_cross_16shots/seed1"
    assert [c["argv"][1] for c in new] == [
        f"{out}/imagenet/DPLSearch/vit_b16_ep4_batch4_cross_16shots/seed1", source,
        *(f"{out}/evaluation/DPL/vit_b16_ep2_batch4_cross_16shots/{t}/seed1" for t in targets),
    ]  # fmt: skip
    for call, target in zip(new[2:], targets):
        argv = call["argv"]
        assert argv[argv.index("--dataset-config-file") + 1] == f"configs/datasets/{target}.yaml"
        assert argv[argv.index("--model-dir") + 1] == source and "--load-epoch" not in argv
        assert "DATASET.NUM_SHOTS" not in argv, "targets are evaluated on all their test images"

    result, new = run("manual.sh", "oxford_pets", "1", "vpt_8ctx_depth12_image", "2")
    assert len(new) == 1
    argv = new[0]["argv"]
    assert argv[1] == "output/oxford_pets/DPL/manual_vpt_8ctx_depth12_image_2shots/seed1"
    assert argv[argv.index("--config-file") + 1] == "configs/trainers/DPL/manual_vpt_8ctx_depth12_image.yaml"

    result, new = run("few_shot_all.sh", "1 2", "1 8", DPL_DATASETS="caltech101 dtd")
    trained = sorted(c["argv"][1] for c in new if "/DPL/" in c["argv"][1])
    assert trained == sorted(f"output/{d}/DPL/vit_b16_ep40_batch4_{k}shots/seed{s}"
                             for d in ("caltech101", "dtd") for k in (1, 8) for s in (1, 2))  # fmt: skip
    assert len(new) == 16


def test_presets_run_without_a_search_in_every_protocol_into_the_folders_parse_results_reads(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    data = str(tmp_path / "data")
    env = {"DATA": data, "FAKE_CALLS": str(calls), "DPL_OUTPUT": None}
    scripts = checkout / "scripts" / "dpl"

    def run(script, *args, **extra):
        before = len(recorded_calls(calls))
        result = launch(script, *args, env={**env, **extra}, cwd=tmp_path, scripts=scripts)
        return result, [c["argv"] for c in recorded_calls(calls)[before:]]

    def config(argv):
        return argv[argv.index("--config-file") + 1]

    coop = "coop_16ctx_vit_b16_ep50"
    _, new = run("few_shot.sh", "eurosat", "1", "4", "-", coop, "--", "OPTIM.MAX_EPOCH", "3")
    assert new == [["--output-dir", f"output/eurosat/DPL/{coop}_4shots/seed1", "--root", data, "--seed", "1",
                    "--dataset-config-file", "configs/datasets/eurosat.yaml", "--trainer", "DPL",
                    "--config-file", f"configs/trainers/DPL/{coop}.yaml", "DATASET.NUM_SHOTS", "4",
                    "OPTIM.MAX_EPOCH", "3"]]  # fmt: skip
    # manual.sh takes the preset by name: the same run, found finished.
    result, again = run("manual.sh", "eurosat", "1", coop, "4", "--", "OPTIM.MAX_EPOCH", "3")
    assert again == new and "[skip]" in result.stdout
    _, short = run("manual.sh", "eurosat", "1", "manual_ivlp_2ctx_depth9", "4")
    _, full = run("manual.sh", "eurosat", "1", "ivlp_2ctx_depth9", "4")
    assert short == full and short[0][1] == "output/eurosat/DPL/manual_ivlp_2ctx_depth9_4shots/seed1"
    _, loop = run("few_shot_all.sh", "1", "4", "-", coop, DPL_DATASETS="dtd")
    assert [argv[1] for argv in loop] == [f"output/dtd/DPL/{coop}_4shots/seed1"]
    run("few_shot.sh", "eurosat", "1", "4")  # DPL's own run beside the presets

    maple = "maple_2ctx_depth9_ep5_batch4"
    _, new = run("base2new.sh", "dtd", "2", "16", "-", maple, DPL_TEST_BASE="1")
    trained = f"output/base2new/train_base/dtd/shots_16/DPL/{maple}/seed2"
    assert [argv[1] for argv in new] == [trained, *(f"output/base2new/test_{split}/dtd/shots_16/DPL/{maple}/seed2"
                                                    for split in ("base", "new"))]  # fmt: skip
    assert new[0][-4:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
    assert new[2][2:5] == ["--eval-only", "--model-dir", trained] and new[2][-1] == "new"

    cross = "maple_2ctx_depth3_ep2_batch4_cross"
    _, new = run("cross_dataset.sh", "1", "16", "-", cross, DPL_TARGET_DATASETS="dtd eurosat")
    source = f"output/imagenet/DPL/{cross}_16shots/seed1"
    assert [argv[1] for argv in new] == [source, *(f"output/evaluation/DPL/{cross}_16shots/{t}/seed1" for t in ("dtd", "eurosat"))]
    assert all(argv[argv.index("--model-dir") + 1] == source for argv in new[1:])

    everything = [c["argv"] for c in recorded_calls(calls)]
    presets = [argv for argv in everything if "/vit_b16_" not in config(argv)]
    assert len(presets) == 11 and len(everything) == 13
    assert all("TRAINER.DPL.ARCH_FILE" not in argv for argv in presets), "a preset keeps its own architecture"
    searches = [argv[1] for argv in everything if argv[argv.index("--trainer") + 1] == "DPLSearch"]
    assert searches == ["output/eurosat/DPLSearch/vit_b16_ep60_batch4_4shots/seed1"], "only DPL's own run searched"

    report = tmp_path / "results.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "parse_results.py"), str(checkout / "output"), "--json",
                    str(report)], check=True, capture_output=True, text=True)  # fmt: skip
    rows = {(r["setting"], r["dataset"], r["method"], r["metric"]): r["label"] for r in json.loads(report.read_text())["rows"]}
    assert rows[("fewshot", "eurosat", f"DPL/{coop}", "accuracy")] == f"CoOp 16ctx (DPL engine, DPL/{coop})"
    assert rows[("fewshot", "eurosat", "DPL/vit_b16_ep40_batch4", "accuracy")] == "DPL/vit_b16_ep40_batch4"
    assert rows[("base2new", "dtd", f"DPL/{maple}", "new")] == f"MaPLe 2ctx depth 9 (DPL engine, DPL/{maple})"
    for dataset in ("imagenet (source)", "dtd", "eurosat"):
        assert rows[("crossdataset", dataset, f"DPL/{cross}", "accuracy")] == f"MaPLe 2ctx depth 3 (DPL engine, DPL/{cross})"


def gram_twin(argv: list[str], gram: str) -> list[str]:
    """What a DPL call of the launchers becomes with DPL_GRAM_FILE=gram: its folder and the training
    folder it evaluates get '+gram' after the config, and the GRAM pair comes right before the
    overrides (the call's last two words). A search call stays as it is."""
    if argv[argv.index("--trainer") + 1] == "DPLSearch":
        return argv
    renamed = [re.sub(r"/DPL/([^/]+?)(_\d+shots)?/", r"/DPL/\1+gram\2/", word) for word in argv]
    return [*renamed[:-2], "TRAINER.DPL.GRAM_FILE", gram, *renamed[-2:]]


def test_dpl_gram_file_runs_x_plus_gram_beside_x_in_every_launcher(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    gram = tmp_path / "gram" / "gram_meta_init.pt"
    gram.parent.mkdir()
    gram.write_bytes(b"a meta-initialisation")
    # DPL_GRAM_FILE relative to the caller's directory, as DATA.
    env = {"DATA": "../data", "FAKE_CALLS": str(calls), "DPL_OUTPUT": None}
    cwd, scripts = tmp_path / "elsewhere", checkout / "scripts" / "dpl"

    def run(script, *args, **extra):
        before = len(recorded_calls(calls))
        result = launch(script, *args, "--", "OPTIM.MAX_EPOCH", "3", env={**env, **extra}, cwd=cwd, scripts=scripts)
        return result, [c["argv"] for c in recorded_calls(calls)[before:]]

    def plain_then_gram(script, *args, **extra):
        _, plain = run(script, *args, **extra)
        result, with_gram = run(script, *args, DPL_GRAM_FILE="../gram/gram_meta_init.pt", **extra)
        assert with_gram == [gram_twin(argv, str(gram)) for argv in plain]
        return plain, with_gram, result.stdout

    coop, maple, cross = "coop_16ctx_vit_b16_ep50", "maple_2ctx_depth9_ep5_batch4", "maple_2ctx_depth3_ep2_batch4_cross"
    # A preset: its training alone, into <cfg>+gram_<K>shots; manual.sh makes the same call.
    _, with_gram, _ = plain_then_gram("few_shot.sh", "eurosat", "1", "4", "-", coop)
    assert [argv[1] for argv in with_gram] == [f"output/eurosat/DPL/{coop}+gram_4shots/seed1"]
    assert with_gram[0][-4:] == ["TRAINER.DPL.GRAM_FILE", str(gram), "OPTIM.MAX_EPOCH", "3"]
    result, again = run("manual.sh", "eurosat", "1", coop, "4", DPL_GRAM_FILE=str(gram))
    assert again == with_gram and "[skip]" in result.stdout
    _, loop = run("few_shot_all.sh", "1", "4", "-", coop, DPL_DATASETS="dtd", DPL_GRAM_FILE=str(gram))
    assert [argv[1] for argv in loop] == [f"output/dtd/DPL/{coop}+gram_4shots/seed1"]
    assert loop[0][-4:-2] == ["TRAINER.DPL.GRAM_FILE", str(gram)]

    # A searched run + GRAM trains the plain run's architecture, from its search folder (skipped).
    plain, with_gram, stdout = plain_then_gram("few_shot.sh", "eurosat", "1", "4")
    assert with_gram[0] == plain[0] and "[skip] search" in stdout
    assert with_gram[1][1] == "output/eurosat/DPL/vit_b16_ep40_batch4+gram_4shots/seed1"
    assert with_gram[1][with_gram[1].index("TRAINER.DPL.ARCH_FILE") + 1] == f"{plain[0][1]}/arch.json"

    # Base-to-new: training and both evaluations in +gram folders; the evaluations read the +gram training.
    _, with_gram, _ = plain_then_gram("base2new.sh", "dtd", "2", "16", "-", maple, DPL_TEST_BASE="1")
    trained = f"output/base2new/train_base/dtd/shots_16/DPL/{maple}+gram/seed2"
    assert [argv[1] for argv in with_gram] == [trained, *(f"output/base2new/test_{split}/dtd/shots_16/DPL/{maple}+gram/seed2"
                                                          for split in ("base", "new"))]  # fmt: skip
    assert all(argv[argv.index("--model-dir") + 1] == trained for argv in with_gram[1:])
    _, with_gram, stdout = plain_then_gram("base2new.sh", "dtd", "2")
    assert "[skip] search" in stdout and "DPLSearch/vit_b16_ep20_batch4_b2n/seed2" in with_gram[0][1]
    assert with_gram[2][1] == "output/base2new/test_new/dtd/shots_16/DPL/vit_b16_ep10_batch4_b2n+gram/seed2"

    # Cross-dataset: the source training and every target's evaluation.
    _, with_gram, _ = plain_then_gram("cross_dataset.sh", "1", "16", "-", cross, DPL_TARGET_DATASETS="dtd eurosat")
    source = f"output/imagenet/DPL/{cross}+gram_16shots/seed1"
    assert [argv[1] for argv in with_gram] == [source, *(f"output/evaluation/DPL/{cross}+gram_16shots/{t}/seed1"
                                                         for t in ("dtd", "eurosat"))]  # fmt: skip
    assert all(argv[argv.index("--model-dir") + 1] == source for argv in with_gram[1:])

    # The tables read X + GRAM as a method of its own, beside X.
    report = tmp_path / "results.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "parse_results.py"), str(checkout / "output"), "--json",
                    str(report)], check=True, capture_output=True, text=True)  # fmt: skip
    rows = {(r["setting"], r["dataset"], r["method"], r["metric"]): r["label"] for r in json.loads(report.read_text())["rows"]}
    assert rows[("fewshot", "eurosat", f"DPL/{coop}+gram", "accuracy")] == f"CoOp 16ctx + GRAM (DPL engine, DPL/{coop}+gram)"
    assert rows[("fewshot", "eurosat", f"DPL/{coop}", "accuracy")] == f"CoOp 16ctx (DPL engine, DPL/{coop})"
    assert rows[("fewshot", "eurosat", "DPL/vit_b16_ep40_batch4+gram", "accuracy")] == "DPL/vit_b16_ep40_batch4 + GRAM"
    assert rows[("base2new", "dtd", f"DPL/{maple}+gram", "new")] == f"MaPLe 2ctx depth 9 + GRAM (DPL engine, DPL/{maple}+gram)"
    assert rows[("crossdataset", "dtd", f"DPL/{cross}+gram", "accuracy")].startswith("MaPLe 2ctx depth 3 + GRAM (DPL engine")


def test_a_missing_gram_file_is_one_error_line_before_any_run(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    env = {"DATA": str(tmp_path / "data"), "FAKE_CALLS": str(calls), "DPL_OUTPUT": None, "DPL_GRAM_FILE": "gram.pt"}
    for script, args in (("few_shot_all.sh", ["1", "4", "-", "coop_16ctx_vit_b16_ep50"]), ("base2new.sh", ["dtd", "1"]),
                         ("manual.sh", ["dtd", "1", "ivlp_2ctx_depth9"])):  # fmt: skip
        result = launch(script, *args, env=env, cwd=tmp_path, scripts=checkout / "scripts" / "dpl", check=False)
        assert result.returncode == 2 and result.stderr.splitlines() == [
            (f"error: DPL_GRAM_FILE={tmp_path}/gram.pt is not a file: point it at the gram_meta_init.pt that "
             "scripts/gram/meta_train.py wrote for this prompt configuration")]  # fmt: skip
    assert not calls.exists() and not (checkout / "output").exists()


def test_recipes_are_launched_by_config_name_into_folders_of_their_own(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    env = {"DATA": str(tmp_path / "data"), "FAKE_CALLS": str(calls), "DPL_OUTPUT": None}
    scripts = checkout / "scripts" / "dpl"
    recipes = {"paper": ("vit_b16_paper_ep60_batch4", "vit_b16_paper_ep40_batch4"),
               "reference": ("vit_b16_reference_ep80_batch4", "vit_b16_reference_ep40_batch4"),
               "ours": ("vit_b16_ep60_batch4", "vit_b16_ep40_batch4")}  # fmt: skip
    for search_cfg, train_cfg in recipes.values():
        launch("few_shot.sh", "eurosat", "1", "16", search_cfg, train_cfg, env=env, cwd=tmp_path, scripts=scripts)
    launch("base2new.sh", "dtd", "1", "16", "vit_b16_reference_ep20_batch4_b2n", "vit_b16_reference_ep40_batch4",
           env=env, cwd=tmp_path, scripts=scripts)  # fmt: skip
    launch("few_shot_all.sh", "2", "4", *recipes["paper"], env={**env, "DPL_DATASETS": "dtd"}, cwd=tmp_path, scripts=scripts)

    runs = [(c["argv"][1], c["argv"][c["argv"].index("--config-file") + 1]) for c in recorded_calls(calls)]
    expected = []
    for search_cfg, train_cfg in recipes.values():
        expected += [(f"output/eurosat/DPLSearch/{search_cfg}_16shots/seed1", f"configs/trainers/DPLSearch/{search_cfg}.yaml"),
                     (f"output/eurosat/DPL/{train_cfg}_16shots/seed1", f"configs/trainers/DPL/{train_cfg}.yaml")]  # fmt: skip
    b2n = "output/base2new/{}/dtd/shots_16/{}/{}/seed1"
    expected += [
        (b2n.format("train_base", "DPLSearch", "vit_b16_reference_ep20_batch4_b2n"),
         "configs/trainers/DPLSearch/vit_b16_reference_ep20_batch4_b2n.yaml"),
        (b2n.format("train_base", "DPL", "vit_b16_reference_ep40_batch4"), "configs/trainers/DPL/vit_b16_reference_ep40_batch4.yaml"),
        (b2n.format("test_new", "DPL", "vit_b16_reference_ep40_batch4"), "configs/trainers/DPL/vit_b16_reference_ep40_batch4.yaml"),
        ("output/dtd/DPLSearch/vit_b16_paper_ep60_batch4_4shots/seed2", "configs/trainers/DPLSearch/vit_b16_paper_ep60_batch4.yaml"),
        ("output/dtd/DPL/vit_b16_paper_ep40_batch4_4shots/seed2", "configs/trainers/DPL/vit_b16_paper_ep40_batch4.yaml"),
    ]  # fmt: skip
    assert runs == expected
    assert len({folder for folder, _ in runs}) == len(runs), "every recipe and stage has a folder of its own"


# ============================================================================ slow tests
# Real train.py runs: the synthetic dataset (6 classes), the tiny random CLIP, 2 epochs.


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """DATA, DPL_OUTPUT and the overrides shared by the slow tests."""
    base = tmp_path_factory.mktemp("launchers")
    checkpoint = write_tiny_checkpoint(base / "tiny_clip.pt")
    (base / "data").mkdir()
    overrides = ["--", "TRAINER.DPL.CLIP_CHECKPOINT", str(checkpoint), "INPUT.SIZE", "(32, 32)",
                 "OPTIM.MAX_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0", "TRAINER.DPLSEARCH.MAX_LENGTH", "3",
                 "TRAIN.CHECKPOINT_FREQ", "1"]  # fmt: skip
    return {"base": base, "env": {"DATA": str(base / "data"), "DPL_OUTPUT": str(base / "output")},
            "out": base / "output", "overrides": overrides}


def logs_of(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("log.txt*"))}


def last_accuracy(text: str, after: str) -> float:
    return float(re.findall(r"^\* accuracy: ([\d.]+)%$", text[text.rindex(after):], re.M)[-1])


@pytest.fixture(scope="module")
def few_shot_run(world):
    """few_shot.sh on the synthetic set, 2 shots, seed 1 (left finished for the other tests)."""
    result = launch("few_shot.sh", "synthetic", "1", "2", *world["overrides"], env=world["env"], cwd=world["base"])
    out = world["out"] / "synthetic"
    return {"stdout": result.stdout, "search": out / "DPLSearch" / "vit_b16_ep60_batch4_2shots" / "seed1",
            "train": out / "DPL" / "vit_b16_ep40_batch4_2shots" / "seed1"}


@pytest.mark.slow
def test_few_shot_searches_then_trains_the_found_architecture_and_skips_when_done(world, few_shot_run):
    search, trained = few_shot_run["search"], few_shot_run["train"]
    arch = json.loads((search / "arch.json").read_text())
    assert len(arch["text_lengths"]) == 3 and len(arch["image_lengths"]) == 2  # the tiny CLIP's depths
    assert len((search / "alpha_history.jsonl").read_text().splitlines()) == 2
    log = logs_of(trained)["log.txt"]
    assert f"Architecture ({search}/arch.json)" in log
    assert 0 <= last_accuracy(log, "Finish training") <= 100

    before = {folder: logs_of(folder) for folder in (search, trained)}
    result = launch("few_shot.sh", "synthetic", "1", "2", *world["overrides"], env=world["env"], cwd=world["base"])
    assert result.stdout.count("[skip]") == 2 and "[run]" not in result.stdout
    assert {folder: logs_of(folder) for folder in (search, trained)} == before

    # The same folders asked for with another schedule: refused with the difference, nothing rerun.
    longer = [*world["overrides"], "OPTIM.MAX_EPOCH", "3"]
    result = launch("few_shot.sh", "synthetic", "1", "2", *longer, env=world["env"], cwd=world["base"], check=False)
    assert result.returncode == 2 and "OPTIM.MAX_EPOCH: 2 -> 3" in result.stderr and "[skip]" not in result.stdout
    assert {folder: logs_of(folder) for folder in (search, trained)} == before


def cut_after_epoch(run: Path, epoch: int) -> None:
    """Leave ``run`` as a run killed during epoch ``epoch + 1``: later checkpoints and log lines go."""
    for pointer in run.glob("*/checkpoint"):
        for saved in pointer.parent.glob("model.pth.tar-*"):
            if int(saved.name.rsplit("-", 1)[1]) > epoch:
                saved.unlink()
        pointer.write_text(f"model.pth.tar-{epoch}\n")
    log = run / "log.txt"
    text = log.read_text()
    log.write_text(text[: text.index(f"epoch [{epoch + 1}/")])
    (run / "arch.json").unlink(missing_ok=True)
    (run / "result.json").unlink()


@pytest.mark.slow
def test_manual_trains_a_preset_and_resumes_an_interrupted_run(world):
    # The presets are for ViT-B/16's 12 blocks; the tiny CLIP takes the same shape in 3 + 2 blocks.
    tiny = ["TRAINER.DPL.TEXT_LENGTHS", "[2, 2, 0]", "TRAINER.DPL.IMAGE_LENGTHS", "[2, 0]"]
    args = ("synthetic", "1", "ivlp_2ctx_depth9", "2", *world["overrides"], *tiny)
    launch("manual.sh", *args, env=world["env"], cwd=world["base"])
    run = world["out"] / "synthetic" / "DPL" / "manual_ivlp_2ctx_depth9_2shots" / "seed1"
    first = logs_of(run)["log.txt"]
    assert "text: 2 2 0 (4 tokens) | image: 2 0 (2 tokens)" in first and "Finish training" in first

    cut_after_epoch(run, 1)
    result = launch("manual.sh", *args, env=world["env"], cwd=world["base"])
    assert "[resume] manual ivlp_2ctx_depth9" in result.stdout
    resumed = [text for name, text in logs_of(run).items() if name != "log.txt"]
    assert len(resumed) == 1
    assert "Previous epoch: 1" in resumed[0] and "epoch [2/2]" in resumed[0] and "epoch [1/2]" not in resumed[0]
    assert "Finish training" in resumed[0]
    result = launch("manual.sh", *args, env=world["env"], cwd=world["base"])
    assert "[skip]" in result.stdout and len(logs_of(run)) == 2


@pytest.mark.slow
def test_base2new_evaluates_new_classes_and_reruns_an_unfinished_evaluation(world):
    args = ("synthetic", "1", "2", *world["overrides"])
    launch("base2new.sh", *args, env=world["env"], cwd=world["base"])
    b2n = world["out"] / "base2new"
    search = b2n / "train_base" / "synthetic" / "shots_2" / "DPLSearch" / "vit_b16_ep20_batch4_b2n" / "seed1"
    trained = b2n / "train_base" / "synthetic" / "shots_2" / "DPL" / "vit_b16_ep10_batch4_b2n" / "seed1"
    evaluated = b2n / "test_new" / "synthetic" / "shots_2" / "DPL" / "vit_b16_ep10_batch4_b2n" / "seed1"
    assert (search / "arch.json").is_file() and "Finish training" in logs_of(trained)["log.txt"]
    eval_log = logs_of(evaluated)["log.txt"]
    accuracy = last_accuracy(eval_log, "=> result")
    assert not (b2n / "test_base").exists()

    # The evaluation is cut off before its result: only it runs again, with the same accuracy.
    (evaluated / "log.txt").write_text(eval_log[: eval_log.index("=> result")])
    (evaluated / "result.json").unlink()
    result = launch("base2new.sh", *args, env=world["env"], cwd=world["base"])
    assert result.stdout.count("[skip]") == 2 and "[resume] evaluate synthetic new classes" in result.stdout
    rerun = [text for name, text in logs_of(evaluated).items() if name != "log.txt"]
    assert len(rerun) == 1 and last_accuracy(rerun[0], "=> result") == accuracy
    result = launch("base2new.sh", *args, env=world["env"], cwd=world["base"])
    assert result.stdout.count("[skip]") == 3


@pytest.mark.slow
def test_cross_dataset_reuses_the_source_run_and_writes_the_layout_parse_results_reads(world, few_shot_run):
    env = {**world["env"], "DPL_SOURCE_DATASET": "synthetic", "DPL_TARGET_DATASETS": "synthetic"}
    result = launch("cross_dataset.sh", "1", "2", "vit_b16_ep60_batch4", "vit_b16_ep40_batch4", *world["overrides"],
                    env=env, cwd=world["base"])  # fmt: skip
    assert result.stdout.count("[skip]") == 2, "the source stages are few_shot.sh's runs"
    evaluated = world["out"] / "evaluation" / "DPL" / "vit_b16_ep40_batch4_2shots" / "synthetic" / "seed1"
    accuracy = last_accuracy(logs_of(evaluated)["log.txt"], "=> result")

    report = world["base"] / "results.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "parse_results.py"), str(world["out"]), "--json", str(report)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    rows = json.loads(report.read_text())["rows"]
    cross = [r for r in rows if r["setting"] == "crossdataset" and r["dataset"] == "synthetic"]
    # result.json keeps the accuracy unrounded; the log prints one decimal.
    assert [(r["method"], r["shots"], round(r["mean"], 1)) for r in cross] == [("DPL/vit_b16_ep40_batch4", 2, accuracy)]


@pytest.mark.slow
def test_few_shot_all_skips_the_finished_runs_of_its_loop(world, few_shot_run):
    env = {**world["env"], "DPL_DATASETS": "synthetic"}
    result = launch("few_shot_all.sh", "1", "2", *world["overrides"], env=env, cwd=world["base"])
    # Its only run is few_shot_run's, already finished (the fast test checks every run it starts).
    assert result.stdout.count("[skip]") == 2 and "[run]" not in result.stdout


@pytest.mark.slow
def test_plot_search_draws_a_real_search(world, few_shot_run, tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "plot_search.py"), str(few_shot_run["search"]),
                    "--out", str(tmp_path)], check=True, capture_output=True, text=True)  # fmt: skip
    for name in ("mixture_weights.png", "search_evolution.png"):
        path = tmp_path / name
        assert path.stat().st_size > 0
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100


@pytest.mark.slow
def test_demo_runs_end_to_end_and_says_the_accuracy_is_meaningless(tmp_path):
    out = tmp_path / "demo"
    result = launch("demo.sh", env={"DATA": str(tmp_path / "data"), "DPL_OUTPUT": str(out)}, cwd=tmp_path)
    text = result.stdout
    assert re.search(r"^text: [\d ]+ \(\d+ tokens\) \| image: [\d ]+ \(\d+ tokens\)$", text, re.M)
    assert re.search(r"^\| synthetic +\| DPL/vit_b16_ep10_batch4_b2n +\| [\d.]+ +\| [\d.]+ +\| [\d.]+ \|$", text, re.M)
    assert "RANDOM WEIGHTS" in text and "meaningless" in text and "TRAINER.DPL.CLIP_CHECKPOINT" in text
    pngs = re.findall(r"^(/\S+\.png)$", text, re.M)
    assert len(pngs) == 2 and all(Path(p).stat().st_size > 0 for p in pngs)
    assert (out / "base2new" / "test_new" / "synthetic" / "shots_4").is_dir()
    again = launch("demo.sh", env={"DATA": str(tmp_path / "data"), "DPL_OUTPUT": str(out)}, cwd=tmp_path)
    assert again.stdout.count("[skip]") == 3
