"""scripts/dpl/sweep.py: plans expanded into the launchers' runs, the local pool, resume safety.

Fast tests compare the plan with the train.py command lines the bash launchers make (in a
stand-in checkout whose train.py records its arguments, as tests/test_launchers.py does), check
the dry run and the refusal of bad plans, and run the pool on that recording train.py. The slow
test runs a tiny sweep for real, reruns it, and kills and restarts it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_launchers import launch, recorded_calls
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "dpl"


def load_sweep():
    spec = importlib.util.spec_from_file_location("dpl_sweep", SCRIPTS / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sweep = load_sweep()


def run_sweep(*args: str, cwd: Path = REPO, script: Path = SCRIPTS / "sweep.py", env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_plan_runs_are_the_launchers_runs_with_the_same_folders_and_arguments(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    data = str(tmp_path / "data")
    env = {"DATA": data, "FAKE_CALLS": str(calls), "DPL_OUTPUT": None}
    scripts = checkout / "scripts" / "dpl"
    over = ["OPTIM.MAX_EPOCH", "5"]

    def launcher_calls(script, *args, **extra):
        before = len(recorded_calls(calls))
        launch(script, *args, env={**env, **extra}, cwd=tmp_path, scripts=scripts)
        return [c["argv"] for c in recorded_calls(calls)[before:]]

    def planned(*args, **kwargs):
        return [["--output-dir", r.key, *r.argv] for r in sweep.expand(*args, data=data, output="output", **kwargs)]

    expected = []
    for dataset in ("eurosat", "dtd"):
        for seed in ("1", "2"):
            expected += launcher_calls("few_shot.sh", dataset, seed, "4", "--", *over)
    for dataset in ("eurosat", "dtd"):
        for seed in ("1", "2"):
            expected += launcher_calls("few_shot.sh", dataset, seed, "4", "vit_b16_paper_ep60_batch4",
                                       "vit_b16_paper_ep40_batch4", "--", *over)  # fmt: skip
    assert planned("few-shot", ["eurosat", "dtd"], [1, 2], [4], ["default", "vit_b16_paper_ep60_batch4+vit_b16_paper_ep40_batch4"],
                   over) == expected  # fmt: skip

    manual = launcher_calls("manual.sh", "oxford_pets", "1", "vpt_8ctx_depth12_image", "2", "--", *over)
    assert planned("few-shot", ["oxford_pets"], [1], [2], ["manual_vpt_8ctx_depth12_image"], over) == manual

    b2n = launcher_calls("base2new.sh", "dtd", "2", "16", "--", *over, DPL_TEST_BASE="1")
    assert planned("base-to-new", ["dtd"], [2], [16], ["default"], over, test_base=True) == b2n
    b2n = launcher_calls("base2new.sh", "dtd", "3", "8", "vit_b16_reference_ep20_batch4_b2n", "vit_b16_reference_ep40_batch4")
    assert planned("base-to-new", ["dtd"], [3], [8], ["vit_b16_reference_ep20_batch4_b2n+vit_b16_reference_ep40_batch4"], []) == b2n

    cross = launcher_calls("cross_dataset.sh", "1", "--", *over, DPL_TARGET_DATASETS="dtd eurosat")
    assert planned("cross-dataset", ["dtd", "eurosat"], [1], [16], ["default"], over) == cross

    runs = sweep.expand("base-to-new", ["dtd"], [2], [16], ["default"], [], data=data, output="output", test_base=True)
    assert [r.kind for r in runs] == ["search", "train", "eval", "eval"]
    assert runs[1].deps == [runs[0].key] and runs[2].deps == runs[3].deps == [runs[1].key]


def test_dry_run_prints_runs_dependencies_and_folders_and_starts_nothing(tmp_path):
    out = tmp_path / "out"
    result = run_sweep("--protocol", "base-to-new", "--datasets", "eurosat", "--seeds", "1", "--shots", "16",
                       "--output", str(out), "--dry-run", "--", "OPTIM.MAX_EPOCH", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("plan: 3 runs (base-to-new); nothing is started")
    search = f"{out}/base2new/train_base/eurosat/shots_16/DPLSearch/vit_b16_ep20_batch4_b2n/seed1"
    trained = f"{out}/base2new/train_base/eurosat/shots_16/DPL/vit_b16_ep10_batch4_b2n/seed1"
    assert f"folder: {search}" in text and f"folder: {trained}" in text and f"needs:  {search}" in text
    assert f"needs:  {trained}" in text and "--eval-only --model-dir" in text and "OPTIM.MAX_EPOCH 3" in text
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets", "eurosatt"], r"error: unknown dataset 'eurosatt'.*known: .*eurosat"),
        (["--datasets", "eurosat", "--methods", "nope+vit_b16_ep40_batch4"], "error: unknown DPLSearch config 'nope'"),
        (["--datasets", "eurosat", "--methods", "vit_b16_ep60_batch4+nope"], "error: unknown DPL config 'nope'"),
        (["--datasets", "eurosat", "--methods", "manual_nope"], "error: unknown DPL config 'manual_nope'"),
        (["--datasets", "eurosat", "--methods", "vit_b16_paper_ep60_batch4+vit_b16_ep40_batch4"], "follows recipe 'paper'"),
        (["--datasets", "eurosat", "--protocol", "base-to-new", "--methods", "manual_ivlp_2ctx_depth9"], "few-shot protocol only"),
        (["--datasets", "eurosat", "--", "OPTIM.MAX_EPOCH"], "error: the overrides after '--' must be KEY VALUE pairs"),
        (["--datasets", "eurosat", "--gpus", "0,99"], "error: --gpus: "),
        (["--datasets", "eurosat", "--gpus", "x"], "error: --gpus takes comma-separated GPU indices"),
        (["--datasets", "eurosat", "--workers", "0"], r"error: --workers must be >= 1"),
        (["--datasets", "eurosat", "--data", "/no/such/folder"], "error: --data /no/such/folder is not a folder"),
    ],
)
def test_bad_plans_are_refused_with_one_error_line_before_anything_starts(tmp_path, args, message):
    data = tmp_path / "data"
    data.mkdir()
    full = ["--output", str(tmp_path / "out"), *(["--data", str(data)] if "--data" not in args else []), *args]
    result = run_sweep(*full, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_pool_skips_dependents_of_a_failure_reports_it_and_retries_on_request(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    env = {"FAKE_CALLS": str(calls), "FAKE_STOP": "DPL"}
    plan = ["--protocol", "base-to-new", "--datasets", "dtd", "eurosat", "--seeds", "1", "--shots", "2",
            "--workers", "2", "--data", str(tmp_path / "data"), "--", "OPTIM.MAX_EPOCH", "2"]  # fmt: skip
    script = checkout / "scripts" / "dpl" / "sweep.py"
    result = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert len(recorded_calls(calls)) == 4, "two searches, two trainings (stopped); no evaluation started"
    out = result.stdout
    assert "sweep: 6 runs: 2 done, 0 skipped (finished before), 2 failed, 2 not started" in out
    trained = checkout / "output/base2new/train_base/dtd/shots_2/DPL/vit_b16_ep10_batch4_b2n/seed1"
    assert f"log: {trained}/sweep.log" in out and "failures:" in out and "ETA" in out

    status = run_sweep("status", *plan, script=script, cwd=tmp_path, env=env)
    assert status.returncode == 0 and "6 runs: 2 done, 0 running, 2 failed, 2 pending" in status.stdout
    assert "(no output; exit status 1)" in status.stdout and f"{trained}/sweep.log" in status.stdout

    # Without --retry-failed nothing is started again; with it, the failed runs resume and finish.
    result = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert result.returncode == 1 and len(recorded_calls(calls)) == 6, "only the two searches are asked again"
    assert "--retry-failed reruns it" in result.stdout
    result = run_sweep("--retry-failed", *plan, script=script, cwd=tmp_path, env={**env, "FAKE_STOP": ""})
    assert result.returncode == 0, result.stdout
    assert "6 runs: 6 done" in run_sweep("status", *plan, script=script, cwd=tmp_path, env=env).stdout
    logs = (trained / "sweep.log").read_text()
    assert logs.count("== sweep start") == 2 and "rc=1" in logs and "rc=0" in logs


# ============================================================================ slow test


def result_files(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("result.json"))}


@pytest.mark.slow
def test_tiny_sweep_runs_skips_when_done_and_survives_a_kill(tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny_clip.pt")
    (tmp_path / "data").mkdir()
    overrides = ["TRAINER.DPL.CLIP_CHECKPOINT", str(checkpoint), "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
                 "DATALOADER.NUM_WORKERS", "0", "TRAINER.DPLSEARCH.MAX_LENGTH", "3", "TRAIN.CHECKPOINT_FREQ", "1"]  # fmt: skip

    def plan(out: Path) -> list[str]:
        return ["--datasets", "synthetic", "--seeds", "1", "2", "--shots", "2", "--workers", "2",
                "--data", str(tmp_path / "data"), "--output", str(out), "--", *overrides]  # fmt: skip

    whole = tmp_path / "whole"
    result = run_sweep(*plan(whole))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sweep: 4 runs: 4 done" in result.stdout
    expected = result_files(whole)
    assert len(expected) == 4

    again = run_sweep(*plan(whole))
    assert again.returncode == 0 and "sweep: 4 runs: 0 done, 4 skipped (finished before)" in again.stdout, again.stdout
    assert result_files(whole) == expected

    # Kill the runner's whole process group once a training run has started, then restart.
    cut = tmp_path / "cut"
    runner = subprocess.Popen([sys.executable, str(SCRIPTS / "sweep.py"), *plan(cut)], cwd=REPO, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not list(cut.glob("synthetic/DPL/*/seed*/run.json")):
        assert runner.poll() is None and time.time() < deadline, "the sweep ended before any training started"
        time.sleep(0.2)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert len(result_files(cut)) < 4

    status = run_sweep("status", *plan(cut))
    assert "0 running, 0 failed" in status.stdout and "pending" in status.stdout, status.stdout
    result = run_sweep(*plan(cut))
    assert result.returncode == 0, result.stdout + result.stderr
    searches_done_before = sum(1 for k in result_files(cut) if "DPLSearch" in k)
    assert result.stdout.count("skipped search") >= 1 and searches_done_before == 2
    assert result_files(cut) == expected
    for seed in (1, 2):
        arch = f"synthetic/DPLSearch/vit_b16_ep60_batch4_2shots/seed{seed}/arch.json"
        assert (cut / arch).read_text() == (whole / arch).read_text()
