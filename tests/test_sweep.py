"""scripts/dpl/sweep.py: plans expanded into the launchers' runs, the local pool, SLURM, resume safety.

Fast tests compare the plan with the train.py command lines the bash launchers make (in a
stand-in checkout whose train.py records its arguments, as tests/test_launchers.py does), check
the dry run and the refusal of bad plans, and run the pool on that recording train.py. The SLURM
executor runs there through submitit's LocalExecutor, and is submitted to a stand-in sbatch that
records the job scripts. The slow test runs a tiny sweep for real, reruns it, and kills and
restarts it.
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

from scripts import parse_results
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
    # An exported DPL_GRAM_FILE would be every plan's --gram-file: only a test that means it gives one.
    outer = {key: value for key, value in os.environ.items() if key != "DPL_GRAM_FILE"}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env={**outer, **(env or {})},
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

    # A preset is a method of its own in every protocol: the launchers' '- PRESET' runs, no search.
    coop = launcher_calls("few_shot.sh", "dtd", "1", "4", "-", "coop_16ctx_vit_b16_ep50", "--", *over)
    assert launcher_calls("manual.sh", "dtd", "1", "coop_16ctx_vit_b16_ep50", "4", "--", *over) == coop
    assert planned("few-shot", ["dtd"], [1], [4], ["coop_16ctx_vit_b16_ep50"], over) == coop
    b2n = launcher_calls("base2new.sh", "dtd", "2", "16", "-", "maple_2ctx_depth9_ep5_batch4", "--", *over, DPL_TEST_BASE="1")
    assert planned("base-to-new", ["dtd"], [2], [16], ["maple_2ctx_depth9_ep5_batch4"], over, test_base=True) == b2n
    b2n = launcher_calls("base2new.sh", "eurosat", "1", "8", "-", "manual_ivlp_2ctx_depth9")
    assert planned("base-to-new", ["eurosat"], [1], [8], ["manual_ivlp_2ctx_depth9"], []) == b2n
    cross = launcher_calls("cross_dataset.sh", "1", "16", "-", "maple_2ctx_depth3_ep2_batch4_cross", DPL_TARGET_DATASETS="dtd eurosat")
    assert planned("cross-dataset", ["dtd", "eurosat"], [1], [16], ["maple_2ctx_depth3_ep2_batch4_cross"], []) == cross
    runs = sweep.expand("cross-dataset", ["dtd"], [1], [16], ["maple_2ctx_depth3_ep2_batch4_cross"], [], data=data,
                        output="output")  # fmt: skip
    assert [r.kind for r in runs] == ["train", "eval"] and runs[0].deps == [] and runs[1].deps == [runs[0].key]
    # A preset whose name holds '+' is one config, not SEARCH_CFG+TRAIN_CFG.
    ivlp = launcher_calls("few_shot.sh", "dtd", "1", "4", "-", "ivlp_2+2ctx_depth12_ep5_batch4", "--", *over)
    assert planned("few-shot", ["dtd"], [1], [4], ["ivlp_2+2ctx_depth12_ep5_batch4"], over) == ivlp

    # --gram-file: the launchers' runs with DPL_GRAM_FILE, every protocol, searched and preset.
    gram = tmp_path / "gram_meta_init.pt"
    gram.write_bytes(b"a meta-initialisation")
    with_gram = {"DPL_GRAM_FILE": str(gram)}
    for protocol, script, args, methods, extra in (
        ("few-shot", "few_shot.sh", ["eurosat", "1", "4"], ["default"], {}),
        ("few-shot", "few_shot.sh", ["eurosat", "1", "4", "-", "coop_16ctx_vit_b16_ep50"], ["coop_16ctx_vit_b16_ep50"], {}),
        ("base-to-new", "base2new.sh", ["dtd", "2", "16"], ["default"], {"DPL_TEST_BASE": "1"}),
        ("base-to-new", "base2new.sh", ["dtd", "2", "16", "-", "maple_2ctx_depth9_ep5_batch4"],
         ["maple_2ctx_depth9_ep5_batch4"], {"DPL_TEST_BASE": "1"}),
    ):  # fmt: skip
        dataset, seed, k = args[:3]
        runs = launcher_calls(script, *args, "--", *over, **with_gram, **extra)
        assert planned(protocol, [dataset], [int(seed)], [int(k)], methods, over, test_base=bool(extra),
                       gram_file=str(gram)) == runs  # fmt: skip
        trained = [argv for argv in runs if argv[argv.index("--trainer") + 1] == "DPL"]
        assert trained and all("+gram" in argv[1] and "TRAINER.DPL.GRAM_FILE" in argv for argv in trained)
    for cfg in ("default", "maple_2ctx_depth3_ep2_batch4_cross"):
        preset = [] if cfg == "default" else ["16", "-", cfg]
        runs = launcher_calls("cross_dataset.sh", "1", *preset, "--", *over, DPL_TARGET_DATASETS="dtd eurosat", **with_gram)
        assert planned("cross-dataset", ["dtd", "eurosat"], [1], [16], [cfg], over, gram_file=str(gram)) == runs
    manual = launcher_calls("manual.sh", "oxford_pets", "1", "vpt_8ctx_depth12_image", "2", **with_gram)
    assert planned("few-shot", ["oxford_pets"], [1], [2], ["manual_vpt_8ctx_depth12_image"], [], gram_file=str(gram)) == manual


def test_gram_folders_carry_one_suffix_everywhere_that_no_config_ends_with():
    probe = subprocess.run(["bash", "-c", 'source scripts/dpl/common.sh; printf %s "$DPL_GRAM_TAG"'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert probe == sweep.GRAM_SUFFIX == parse_results.GRAM_SUFFIX == "+gram"
    for trainer in ("DPL", "DPLSearch"):
        names = sweep.yaml_names(REPO / "configs" / "trainers" / trainer)
        assert names and not [n for n in names if n.endswith(sweep.GRAM_SUFFIX)]


def test_the_sweep_and_the_launchers_tell_presets_by_the_same_rule():
    names = sweep.yaml_names(REPO / "configs" / "trainers" / "DPL")
    probe = "source scripts/dpl/common.sh; for c in " + " ".join(f"'{n}'" for n in names) + '; do dpl_is_preset "$c" && echo "$c"; done'
    launchers = subprocess.run(["bash", "-c", probe], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert [n for n in names if sweep.is_preset(n)] == launchers
    assert {"coop_16ctx_vit_b16_ep50", "maple_2ctx_depth9_ep5_batch4", "manual_ivlp_2ctx_depth9"} <= set(launchers)
    assert not {"vit_b16_ep40_batch4", "vit_b16_ep10_batch4_b2n", "vit_b16_ep2_batch4_cross"} & set(launchers)


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


def test_gram_file_defaults_to_dpl_gram_file_read_from_the_callers_directory(tmp_path):
    (tmp_path / "gram_meta_init.pt").write_bytes(b"a meta-initialisation")
    out = tmp_path / "out"
    result = run_sweep("--datasets", "dtd", "--seeds", "1", "--methods", "coop_16ctx_vit_b16_ep50", "--output", str(out),
                       "--dry-run", cwd=tmp_path, env={"DPL_GRAM_FILE": "gram_meta_init.pt"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"folder: {out}/dtd/DPL/coop_16ctx_vit_b16_ep50+gram_16shots/seed1" in result.stdout
    assert f"TRAINER.DPL.GRAM_FILE {tmp_path}/gram_meta_init.pt" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets", "eurosatt"], r"error: unknown dataset 'eurosatt'.*known: .*eurosat"),
        (["--datasets", "eurosat", "--methods", "nope+vit_b16_ep40_batch4"], "error: unknown DPLSearch config 'nope'"),
        (["--datasets", "eurosat", "--methods", "vit_b16_ep60_batch4+nope"], "error: unknown DPL config 'nope'"),
        (["--datasets", "eurosat", "--methods", "manual_nope"], "error: unknown DPL config 'manual_nope'"),
        (["--datasets", "eurosat", "--methods", "vit_b16_paper_ep60_batch4+vit_b16_ep40_batch4"], "follows recipe 'paper'"),
        (["--datasets", "eurosat", "--methods", "vit_b16_ep60_batch4+coop_16ctx_vit_b16_ep50"],
         "error: method .*: TRAIN_CFG 'coop_16ctx_vit_b16_ep50' is a preset .*give 'coop_16ctx_vit_b16_ep50' alone"),
        (["--datasets", "eurosat", "--methods", "vit_b16_ep60_batch4+manual_ivlp_2ctx_depth9"], "'manual_ivlp_2ctx_depth9' is a preset"),
        (["--datasets", "eurosat", "--protocol", "base-to-new", "--methods", "vit_b16_ep10_batch4_b2n"],
         r"error: method 'vit_b16_ep10_batch4_b2n': DPL config 'vit_b16_ep10_batch4_b2n' needs a search .*give SEARCH_CFG\+vit_b16_ep10_batch4_b2n"),
        (["--datasets", "eurosat", "--", "OPTIM.MAX_EPOCH"], "error: the overrides after '--' must be KEY VALUE pairs"),
        (["--datasets", "eurosat", "--gpus", "0,99"], "error: --gpus: "),
        (["--datasets", "eurosat", "--gpus", "x"], "error: --gpus takes comma-separated GPU indices"),
        (["--datasets", "eurosat", "--workers", "0"], r"error: --workers must be >= 1"),
        (["--datasets", "eurosat", "--data", "/no/such/folder"], "error: --data /no/such/folder is not a folder"),
        (["--datasets", "eurosatt", "--executor", "slurm"], r"error: unknown dataset 'eurosatt'"),
        (["--datasets", "eurosat", "--executor", "slurm", "--gpus", "0"], "error: --gpus and --workers size the local pool"),
        (["--datasets", "eurosat", "--slurm-partition", "gpu"], "error: --slurm-partition needs --executor slurm"),
        (["--datasets", "eurosat", "--executor", "slurm", "--slurm-time", "0"], r"error: --slurm-time: time must be an integer >= 1"),
        (["--datasets", "eurosat", "--gram-file", "/no/such/gram_meta_init.pt"],
         "error: --gram-file /no/such/gram_meta_init.pt is not a file: give the gram_meta_init.pt"),
        (["--datasets", "eurosat", "--methods", "coop_16ctx_vit_b16_ep50+gram"],
         (r"error: method 'coop_16ctx_vit_b16_ep50\+gram': '\+gram' marks the folders of GRAM runs: give "
          r"'coop_16ctx_vit_b16_ep50' and --gram-file PATH")),
        (["--datasets", "eurosat", "--", "TRAINER.DPL.GRAM_FILE", "g.pt"], "error: give the GRAM file as --gram-file PATH"),
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
    assert status.returncode == 0 and "6 runs: 2 done, 0 queued, 0 running, 2 failed, 2 pending" in status.stdout
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


# ============================================================================ SLURM through submitit


def kind_of(argv: list[str]) -> str:
    """search, train or eval: the stage of a recorded train.py call."""
    return "eval" if "--eval-only" in argv else {"DPLSearch": "search", "DPL": "train"}[argv[argv.index("--trainer") + 1]]


def test_slurm_on_the_local_executor_runs_each_run_once_stage_after_stage_and_submits_nothing_twice(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    env = {"FAKE_CALLS": str(calls)}
    script = checkout / "scripts" / "dpl" / "sweep.py"
    slurm = ["--executor", "slurm", "--slurm-cluster", "local", "--data", str(tmp_path / "data")]
    few_shot = ["--datasets", "eurosat", "dtd", "--seeds", "1", "--shots", "2", *slurm, "--", "OPTIM.MAX_EPOCH", "2"]
    base2new = ["--protocol", "base-to-new", "--datasets", "dtd", "--seeds", "1", "--shots", "2", *slurm]
    for plan, count in ((few_shot, 4), (base2new, 3)):
        result = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"sweep: {count} runs: {count} done, 0 skipped" in result.stdout, result.stdout
        assert f"submitit's in {checkout / 'output' / '.submitit'}" in result.stdout

    started = recorded_calls(calls)
    assert [kind_of(c["argv"]) for c in started] == ["search", "search", "train", "train", "search", "train", "eval"]
    folders = [c["argv"][c["argv"].index("--output-dir") + 1] for c in started]
    assert len(set(folders)) == 7 and all(c["cwd"] == str(checkout) for c in started)
    for folder in folders:
        log = (checkout / folder / "sweep.log").read_text()
        queued = re.findall(r"== sweep queued job=(local-\d+) host=\S+ date=\S+", log)
        ran = re.findall(r"== sweep start host=\S+ device=job=(local-\d+) start=", log)
        assert len(queued) == 1 and ran == queued and log.count("== sweep exit rc=0 ") == 1, log

    status = run_sweep("status", *few_shot, script=script, cwd=tmp_path, env=env)
    assert "4 runs: 4 done, 0 queued, 0 running, 0 failed, 0 pending" in status.stdout and "job=local-" in status.stdout
    again = run_sweep(*few_shot, script=script, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "sweep: 4 runs: 0 done, 4 skipped (finished before)" in again.stdout, again.stdout
    assert "[submitted]" not in again.stdout and len(recorded_calls(calls)) == 7


def test_slurm_tasks_after_a_failed_search_fail_naming_it_and_retry_failed_submits_them_again(tmp_path, checkout):
    calls = tmp_path / "calls.jsonl"
    env = {"FAKE_CALLS": str(calls), "FAKE_STOP": "DPLSearch"}
    plan = ["--datasets", "dtd", "--seeds", "1", "--shots", "2", "--executor", "slurm", "--slurm-cluster", "local",
            "--data", str(tmp_path / "data")]  # fmt: skip
    script = checkout / "scripts" / "dpl" / "sweep.py"
    searched = "output/dtd/DPLSearch/vit_b16_ep60_batch4_2shots/seed1"
    result = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert result.returncode == 1 and "sweep: 2 runs: 0 done, 0 skipped (finished before), 2 failed" in result.stdout
    line = f"error: train.py not started: the run it needs, {searched}, is not finished (unfinished: "
    assert f"[failed] train dtd seed 1, 2 shots: {line}" in result.stdout, result.stdout
    assert [kind_of(c["argv"]) for c in recorded_calls(calls)] == ["search"]
    status = run_sweep("status", *plan, script=script, cwd=tmp_path, env=env).stdout
    assert "2 runs: 0 done, 0 queued, 0 running, 2 failed, 0 pending" in status and "error: train.py not started" in status

    result = run_sweep(*plan, "--retry-failed", script=script, cwd=tmp_path, env={**env, "FAKE_STOP": ""})
    assert result.returncode == 0 and "sweep: 2 runs: 2 done" in result.stdout, result.stdout
    assert [kind_of(c["argv"]) for c in recorded_calls(calls)] == ["search", "search", "train"]


def test_a_task_whose_dependency_is_unfinished_fails_at_once_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # the environment submitit gives a local task
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    calls = tmp_path / "calls.txt"
    python = tmp_path / "python"  # records its train.py arguments and leaves a finished run
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nmkdir -p "$3"\necho {{}} > "$3/run.json"\n'
                      f'echo \'{{"accuracy": 50.0}}\' > "$3/result.json"\n')  # fmt: skip
    python.chmod(0o755)
    search, trained = tmp_path / "search", tmp_path / "train"
    run = sweep.Run(str(trained), "train", "train dtd seed 1", ["--seed", "1"], [str(search)])

    with pytest.raises(sweep.TaskFailed) as failed:
        sweep.run_task(run, str(python))
    message = str(failed.value)
    assert re.fullmatch(rf"error: train.py not started: the run it needs, {re.escape(str(search))}, is not finished "
                        r"\(empty: .*\)", message), message  # fmt: skip
    assert not calls.exists()
    state, last = sweep.run_state(run)
    assert state == "failed" and last["error"] == [message] and last["device"] == "job=local-4242"

    (search / "arch.json").parent.mkdir()
    for name, text in (("run.json", "{}"), ("result.json", '{"accuracy": 50.0}'), ("arch.json", "{}")):
        (search / name).write_text(text)
    sweep.run_task(run, str(python))
    assert calls.read_text() == f"train.py --output-dir {trained} --seed 1\n"
    assert sweep.run_state(run)[0] == "done"


def test_stage_resources_come_from_the_yaml_and_the_command_line_and_bad_keys_are_refused(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("default: {partition: gpu, time: 600, cpus_per_task: 4}\n"
                      "search: {time: 900, gpus_per_task: 2}\neval: {time: 30, gpus_per_task: 0}\n")  # fmt: skip
    options = dict.fromkeys(sweep.SLURM_KEYS) | {"partition": "big", "time": 120, "mem_gb": 24}
    resources = sweep.slurm_resources(str(config), options)
    common = {"tasks_per_node": 1, "cpus_per_task": 4, "mem_gb": 24, "slurm_partition": "big"}
    assert sweep.executor_parameters("search", resources["search"], []) == {
        **common, "name": "dpl_search", "timeout_min": 900, "local_gpus_per_node": 2, "slurm_gpus_per_task": 2}
    assert sweep.executor_parameters("train", resources["train"], ["1001"]) == {
        **common, "name": "dpl_train", "timeout_min": 120, "local_gpus_per_node": 1, "slurm_gpus_per_task": 1,
        "slurm_dependency": "afterany:1001"}  # fmt: skip
    assert sweep.executor_parameters("eval", resources["eval"], ["1002", "977"]) == {
        **common, "name": "dpl_eval", "timeout_min": 30, "local_gpus_per_node": 0, "slurm_dependency": "afterany:1002:977"}
    assert sweep.slurm_resources(None, dict.fromkeys(sweep.SLURM_KEYS))["train"] == {
        "partition": None, "time": 1440, "gpus_per_task": 1, "cpus_per_task": 8, "mem_gb": None, "array_parallelism": None}

    for text, message in (("train: {gpus: 1}", r"train: unknown key 'gpus' \(keys: partition, time,"),
                          ("evaluate: {time: 5}", r"unknown section 'evaluate' \(sections: default, search, train, eval\)"),
                          ("search: {time: ten}", r"search: time must be an integer >= 1, got 'ten'"),
                          ("search: [time]", r"section 'search' must hold key: value lines"),
                          ("default: {time: 5", r"not valid yaml")):  # fmt: skip
        config.write_text(text)
        with pytest.raises(sweep.PlanError, match=rf"^--slurm-config {re.escape(str(config))}: {message}"):
            sweep.slurm_resources(str(config), options)


FAKE_SBATCH = """#!/bin/sh
# Keeps the job script and answers as sbatch does, with job ids from 1001 on.
n=$((1001 + $(ls "$FAKE_SBATCH_DIR" | wc -l)))
cp "$1" "$FAKE_SBATCH_DIR/$n.sh"
echo "Submitted batch job $n"
"""


def sbatch_flags(script: Path) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", script.read_text(), flags=re.MULTILINE))


def test_slurm_submits_one_array_per_stage_after_the_one_before_and_not_what_slurm_still_holds(tmp_path, checkout):
    bin_dir, jobs, queue = tmp_path / "bin", tmp_path / "sbatch", tmp_path / "squeue.txt"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", f"#!/bin/sh\ncat {queue}\n"), ("srun", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    queue.write_text("")
    calls = tmp_path / "calls.jsonl"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SBATCH_DIR": str(jobs), "FAKE_CALLS": str(calls)}
    config = tmp_path / "slurm.yaml"
    config.write_text("default: {partition: gpu, time: 600, cpus_per_task: 4}\nsearch: {time: 900, gpus_per_task: 2}\n")
    plan = ["--protocol", "base-to-new", "--datasets", "dtd", "eurosat", "--seeds", "1", "--shots", "2",
            "--executor", "slurm", "--data", str(tmp_path / "data"), "--slurm-config", str(config),
            "--slurm-partition", "big", "--slurm-time", "120", "--slurm-mem-gb", "24", "--slurm-array-parallelism", "1"]  # fmt: skip
    script = checkout / "scripts" / "dpl" / "sweep.py"

    result = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[submitted] search: 2 run(s) as job 1001\n" in out and "[submitted] train: 2 run(s) as job 1002, after job 1001\n" in out
    assert "[submitted] eval: 2 run(s) as job 1003, after job 1002\n" in out and "sweep: 6 runs: 6 submitted, 0 skipped" in out
    assert f"follow the runs with: python {script} status --protocol base-to-new" in out
    assert not calls.exists(), "the runner submits and exits; train.py runs in the jobs"
    search, train, test = (sbatch_flags(jobs / f"{job}.sh") for job in (1001, 1002, 1003))
    assert {k: search[k] for k in ("partition", "time", "gpus-per-task", "cpus-per-task", "mem", "array", "job-name")} == {
        "partition": "big", "time": "900", "gpus-per-task": "2", "cpus-per-task": "4", "mem": "24GB", "array": "0-1%1",
        "job-name": "dpl_search"}  # fmt: skip
    assert "dependency" not in search and train["dependency"] == "afterany:1001" and test["dependency"] == "afterany:1002"
    assert (train["time"], train["gpus-per-task"], test["time"], test["partition"]) == ("120", "1", "120", "big")
    searched = checkout / "output/base2new/train_base/eurosat/shots_2/DPLSearch/vit_b16_ep20_batch4_b2n/seed1"
    assert re.search(r"== sweep queued job=1001_1 host=\S+ date=\S+", (searched / "sweep.log").read_text())

    # squeue still lists the jobs: status shows them queued, and nothing is submitted again.
    queue.write_text("".join(f"{job}_{task}\n" for job in (1001, 1002, 1003) for task in (0, 1)))
    status = run_sweep("status", *plan, script=script, cwd=tmp_path, env=env)
    assert "6 runs: 0 done, 6 queued, 0 running, 0 failed, 0 pending" in status.stdout and "job=1001_1" in status.stdout
    again = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "6 submitted" not in again.stdout and "6 already queued or running" in again.stdout
    assert len(list(jobs.iterdir())) == 3

    # The jobs are gone without having run (scancel): the runs are pending and are submitted again.
    queue.write_text("")
    assert "6 runs: 0 done, 0 queued, 0 running, 0 failed, 6 pending" in run_sweep("status", *plan, script=script, cwd=tmp_path, env=env).stdout
    again = run_sweep(*plan, script=script, cwd=tmp_path, env=env)
    assert "[submitted] train: 2 run(s) as job 1005, after job 1004\n" in again.stdout and len(list(jobs.iterdir())) == 6


def test_slurm_without_submitit_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "shadow" / "submitit"
    shadow.mkdir(parents=True)  # a submitit that cannot be imported, as when none is installed
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'submitit'\", name='submitit')\n")
    (tmp_path / "data").mkdir()
    result = run_sweep("--datasets", "eurosat", "--executor", "slurm", "--data", str(tmp_path / "data"),
                       "--output", str(tmp_path / "out"),
                       env={"PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])})  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --executor slurm needs submitit, which is not installed: pip install submitit"]
    assert not (tmp_path / "out").exists()


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
