"""Run folders: the record compared before a run resumes or is skipped, the one definition of
"finished", checkpoint pointers, resumable validation batches, random-state round trips."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from dassl.config import get_cfg_default

import train
from trainers.dpl_common import capture_rng, restore_rng
from trainers.dpl_core import run_folder as rf
from trainers.dpl_search import EndlessShuffledBatches


def dpl_cfg(**overrides):
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.TRAINER.NAME = "DPL"
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return cfg


def record(**overrides):
    return rf.make_record(dpl_cfg(**overrides), "ab" * 32, {"text_lengths": [1, 2]})


def test_the_record_leaves_out_what_cannot_change_the_result():
    base = rf.config_record(dpl_cfg())
    moved = rf.config_record(dpl_cfg(**{"OUTPUT_DIR": "/elsewhere", "DATASET.ROOT": "/data2", "TRAIN.PRINT_FREQ": 1,
                                        "DATALOADER.NUM_WORKERS": 0, "TRAINER.DPL.CLIP_CHECKPOINT": "/m.pt"}))  # fmt: skip
    assert base == moved
    assert rf.config_record(dpl_cfg(SEED=2)) != base
    assert "OPTIM.MAX_EPOCH" in base and "TRAINER.DPL.PROMPT_INIT_STD" in base
    assert not any(key.startswith("TRAINER.DPLSEARCH.") for key in base), "search keys do not define a DPL run"
    search = dpl_cfg()
    search.TRAINER.NAME = "DPLSearch"
    assert "TRAINER.DPLSEARCH.ALPHA_LR" in rf.config_record(search)
    host = dpl_cfg()
    host.TRAINER.COOP = type(host)({"N_CTX": 16})  # a host checkout's trainer node
    assert rf.config_record(host) == base


def test_claim_writes_the_record_accepts_the_same_run_and_refuses_another(tmp_path):
    folder = tmp_path / "run"
    rf.claim(folder, record(SEED=1))
    assert json.loads((folder / "run.json").read_text())["config"]["SEED"] == 1
    rf.claim(folder, record(SEED=1))  # an unfinished run of the same config resumes
    before = (folder / "run.json").read_text()
    with pytest.raises(rf.RunFolderError) as error:
        rf.claim(folder, record(SEED=2, **{"OPTIM.MAX_EPOCH": 2}))
    message = str(error.value)
    assert "OPTIM.MAX_EPOCH: 10 -> 2" in message and "SEED: 1 -> 2" in message
    assert "another --output-dir" in message and "delete the folder" in message
    assert (folder / "run.json").read_text() == before, "nothing is overwritten"

    rf.write_result(folder, {"kind": "train", "accuracy": 38.9})
    with pytest.raises(rf.RunFinished, match="already holds this run, finished .*38.90%"):
        rf.claim(folder, record(SEED=1))


def test_claim_refuses_checkpoints_or_results_of_unknown_origin(tmp_path):
    (tmp_path / "old" / "prompt_learner").mkdir(parents=True)
    (tmp_path / "old" / "prompt_learner" / "model.pth.tar-3").write_bytes(b"x")
    with pytest.raises(rf.RunFolderError, match="holds checkpoints but no run.json"):
        rf.claim(tmp_path / "old", record())
    (tmp_path / "logged").mkdir()
    (tmp_path / "logged" / "log.txt").write_text("epoch [1/1]\nFinish training\n* accuracy: 50.0%\n")
    with pytest.raises(rf.RunFolderError, match="holds a finished run but no run.json"):
        rf.claim(tmp_path / "logged", record())
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "log.txt").write_text("epoch [1/2]\n")
    rf.claim(tmp_path / "killed", record())  # a log and nothing to reuse: the run starts there


def test_finished_means_result_json_for_our_runs_whatever_the_log_says(tmp_path):
    folder = tmp_path / "run"
    rf.claim(folder, record())
    # Killed during the final test: Dassl printed 'Finish training' (and an earlier accuracy).
    (folder / "log.txt").write_text("=> result\n* accuracy: 20.0%\nFinish training\nEvaluate on the *test* set\n")
    status = rf.folder_status(folder)
    assert (status.state, status.accuracy) == ("unfinished", None) and "result.json" in status.problem
    (folder / "result.json").write_text('{"kind": "train", "accur')  # cut off mid-write
    assert rf.folder_status(folder).state == "unfinished"
    rf.write_result(folder, {"kind": "train", "accuracy": 38.9})
    status = rf.folder_status(folder)
    assert (status.state, status.kind, status.accuracy) == ("finished", "train", 38.9)
    assert status.source == folder / "result.json"


def test_a_log_only_folder_needs_a_number_after_the_accuracy_mark(tmp_path):
    (tmp_path / "log.txt").write_text("eval_only: True\n=> result\n* accuracy: \n")
    assert rf.folder_status(tmp_path).state == "unfinished"
    (tmp_path / "log.txt").write_text("eval_only: True\n=> result\n* accuracy: 61.5%\n")
    status = rf.folder_status(tmp_path)
    assert (status.state, status.kind, status.accuracy) == ("finished", "eval", 61.5)
    assert rf.folder_status(tmp_path / "absent").state == "empty"


def test_the_command_line_answers_the_launchers(tmp_path):
    rf.claim(tmp_path / "run", record())
    command = [sys.executable, "-m", "trainers.dpl_core.run_folder", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout.startswith("unfinished:")
    rf.write_result(tmp_path / "run", {"kind": "eval", "accuracy": 12.5})
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("finished: eval, accuracy 12.50%")


def save_epoch(folder, epoch, models=("prompt_learner",), commit=True):
    for name in models:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / f"model.pth.tar-{epoch}").write_bytes(f"{name}{epoch}".encode())
        (folder / name / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")
    if commit:
        (folder / rf.RUN_STATE).mkdir(exist_ok=True)
        (folder / rf.RUN_STATE / f"model.pth.tar-{epoch}").write_bytes(b"state")
        (folder / rf.RUN_STATE / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")


def test_the_last_saved_epoch_is_the_committed_one(tmp_path):
    save_epoch(tmp_path, 1, ("prompt_learner", "arch_weights"))
    save_epoch(tmp_path, 2, ("prompt_learner", "arch_weights"), commit=False)  # killed before the commit
    assert rf.committed_epoch(tmp_path) == 1 and rf.last_saved_epoch(tmp_path) == 1
    assert rf.saved_epochs(tmp_path) == [1, 2]
    evaluated = rf.evaluated_checkpoints(tmp_path, 2)
    assert evaluated["epoch"] == 2 and set(evaluated["sha256"]) == {"prompt_learner", "arch_weights"}
    with pytest.raises(rf.RunFolderError, match=r"no checkpoint of epoch 7 \(saved epochs: 1, 2\)"):
        rf.evaluated_checkpoints(tmp_path, 7)


def test_dassl_pointers_serve_when_they_agree_and_are_listed_when_not(tmp_path):
    save_epoch(tmp_path, 3, ("a", "b"), commit=False)
    assert rf.last_saved_epoch(tmp_path) == 3
    (tmp_path / "b" / "model.pth.tar-4").write_bytes(b"b4")
    (tmp_path / "b" / "checkpoint").write_text("model.pth.tar-4\n")
    with pytest.raises(rf.RunFolderError, match=r"give --load-epoch \(saved epochs: 3\)"):
        rf.last_saved_epoch(tmp_path)


def test_evaluation_needs_a_model_folder_other_than_its_own(tmp_path):
    with pytest.raises(rf.RunFolderError, match="--eval-only needs --model-dir"):
        rf.evaluation_of("", str(tmp_path / "eval"), None)
    with pytest.raises(rf.RunFolderError, match="give the evaluation its own --output-dir"):
        rf.evaluation_of(str(tmp_path), str(tmp_path), None)


def test_validation_batches_resume_at_any_position():
    def take(sampler, count):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(count)]

    full = take(EndlessShuffledBatches(10, 4, seed=7), 9)  # 3 batches per pass, 3 passes
    for start in (1, 3, 5):
        assert take(EndlessShuffledBatches(10, 4, seed=7, start=start), 9 - start) == full[start:]
    for first in (0, 3, 6):
        one_pass = full[first : first + 3]
        assert [len(b) for b in one_pass] == [4, 4, 2] and sorted(sum(one_pass, [])) == list(range(10))
    assert full[0:3] != full[3:6], "each pass is a new permutation"


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    state = capture_rng()
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    torch.save(state, tmp_path / "state.pt")
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    restore_rng(torch.load(tmp_path / "state.pt", weights_only=True))
    again = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    assert expected[:3] == again[:3] and torch.equal(expected[3], again[3])


def test_our_logs_are_shown_although_dassl_disables_logging_at_import(capsys):
    # In a fresh process, importing Dassl (or its double, which mirrors this) disables logging.
    probe = "import logging, dassl.engine; print(logging.root.manager.disable)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "30"
    logging.getLogger("trainers.dpl_core.clip_loader").info("Loaded CLIP weights from /x.pt")
    logging.getLogger("datasets.coop_format").warning("split rebuilt")
    out = capsys.readouterr().out
    assert "Loaded CLIP weights from /x.pt" in out and "split rebuilt" in out


def test_a_key_added_later_is_no_difference_while_it_keeps_its_default(tmp_path):
    folder = tmp_path / "run"
    old = record()
    del old["config"]["TRAINER.DPL.KD_TEMPERATURE"]  # as written by a version without that key
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(old))
    defaults = rf.config_record(dpl_cfg())
    rf.claim(folder, record(), defaults)  # the new key at its default: the same run
    with pytest.raises(rf.RunFolderError, match='TRAINER.DPL.KD_TEMPERATURE: "<absent>" -> 2.0'):
        rf.claim(folder, record(**{"TRAINER.DPL.KD_TEMPERATURE": 2.0}), defaults)
    with pytest.raises(rf.RunFolderError, match="KD_TEMPERATURE"):
        rf.claim(folder, record(), None)  # without the defaults every added key is a difference
