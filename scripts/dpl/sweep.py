#!/usr/bin/env python
"""Run a grid of DPL experiments (a plan) on a local pool of GPUs or CPU workers, or on SLURM.

    python scripts/dpl/sweep.py [run|status] --protocol few-shot --datasets eurosat dtd \\
        --seeds 1 2 3 --shots 16 --methods vit_b16_ep60_batch4+vit_b16_ep40_batch4 coop_16ctx_vit_b16_ep200 \\
        [--gram-file PATH] [--gpus 0,1 | --workers N | --executor slurm --slurm-partition P ...] [--dry-run] \\
        [--retry-failed] [-- KEY VALUE ...]

A plan is expanded into runs (search -> training -> evaluation), each one ``train.py`` process
started with the arguments and into the folder the launchers of this folder use (few_shot.sh,
manual.sh, base2new.sh, cross_dataset.sh), so a sweep and the launchers share their runs.

The run folders are the state: train.py skips a finished run of the same config, resumes an
unfinished one and refuses a folder of another config. Beside train.py's files, each folder gets
``sweep.log``: the stdout/stderr of every attempt between ``== sweep start`` / ``== sweep exit``
lines (device, pid, time), which ``status`` reads. Killing the runner and starting it again
loses nothing: unfinished runs resume, finished ones are skipped.

Methods: ``SEARCH_CFG+TRAIN_CFG`` (names in configs/trainers/DPLSearch/ and DPL/, one recipe),
``PRESET`` (a configs/trainers/DPL/<PRESET>.yaml that fixes its architecture, e.g.
``coop_16ctx_vit_b16_ep50``, ``maple_2ctx_depth9_ep5_batch4`` or ``manual_ivlp_2ctx_depth9``:
trained without a search in every protocol, as the launchers' ``- PRESET``), or ``default`` (the
protocol's default pair, as the launchers').

GRAM (``--gram-file PATH``, default ``$DPL_GRAM_FILE``): every method's DPL runs (training and
evaluation; searches are the plain runs') start from that meta-initialisation, into the ``+gram``
folders the launchers use with DPL_GRAM_FILE, so "X + GRAM" is the same plan run again with the
option, beside X's runs. One file fits one prompt configuration: give the methods it was made for.

SLURM (``--executor slurm``, needs ``pip install submitit``): the runs are submitted with submitit
as one job array per stage (search, training, evaluation), each array after the arrays its runs
need (``afterany``). Every array task first checks that the runs it needs are finished, and
otherwise fails at once with one line naming the unfinished run (no train.py); then it starts
train.py exactly as the pool does and appends to the same ``sweep.log`` (``device=job=<job id>``).
Each submitted run's ``sweep.log`` gets ``== sweep queued job=<id>``, so ``status`` shows queued
and running runs with their job id. The runner exits once everything is submitted. Submitting the
plan again submits only runs that are neither finished nor still known to SLURM (``squeue``);
failed runs only with ``--retry-failed``. Resources per stage come from the ``--slurm-*`` options
and ``--slurm-config FILE``, a yaml such as::

    default: {partition: gpu, time: 720, gpus_per_task: 1, cpus_per_task: 8, mem_gb: 32}
    search: {time: 1440}
    eval: {time: 60, array_parallelism: 8}

The command line overrides the yaml's ``default:`` section; a stage's own section overrides both.
submitit's files (pickled tasks, the task logs) go to ``<output>/.submitit/``.

``--slurm-cluster local`` (tests, debugging) runs the same arrays through submitit's
LocalExecutor on this machine. That executor knows no SLURM dependencies, so there the runner
waits for a stage's jobs to end before it submits the next stage, waits for the last stage, and
prints the pool's summary; all tasks of a stage run at once.

Exit status: 0 when every run is done (SLURM: when everything needed is submitted), 1 when some
failed (or were not started because a run they depend on failed), 2 for a bad plan (nothing is
started or submitted).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from trainers.dpl_core.run_folder import folder_status  # noqa: E402  (standard library only)

DEFAULTS = {  # the launchers' default recipe pairs
    "few-shot": ("vit_b16_ep60_batch4", "vit_b16_ep40_batch4"),
    "base-to-new": ("vit_b16_ep20_batch4_b2n", "vit_b16_ep10_batch4_b2n"),
    "cross-dataset": ("vit_b16_ep4_batch4_cross", "vit_b16_ep2_batch4_cross"),
}
CROSS_TARGETS = ("caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat "
                 "ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r").split()  # fmt: skip
SWEEP_LOG = "sweep.log"
MARK = "== sweep "
STAGES = ("search", "train", "eval")  # Run.kind, in the order the stages run
SLURM_KEYS: dict[str, tuple[type, Any, str]] = {  # per-stage resources: yaml key -> (type, default, help)
    "partition": (str, None, "SLURM partition (default: the cluster's)"),
    "time": (int, 1440, "time limit of one run in minutes (default 1440)"),
    "gpus_per_task": (int, 1, "GPUs of one run (default 1; 0 for none)"),
    "cpus_per_task": (int, 8, "CPUs of one run (default 8: the configs' data loaders use 8 workers)"),
    "mem_gb": (int, None, "memory of one run in GB (default: the cluster's)"),
    "array_parallelism": (int, None, "most tasks of one array running at once (default submitit's, 256)"),
}
SLURM_JOB = re.compile(r"\d+(_\d+)?")  # a SLURM job or array task id, the only ids squeue is asked about
# What a GRAM run's config ends with in its folder name (common.sh's DPL_GRAM_TAG; parse_results.py
# reads it); no DPL config may end with it, so a GRAM folder never names a config of its own.
GRAM_SUFFIX = "+gram"


class PlanError(ValueError):
    """A plan that cannot run; reported as one ``error:`` line, exit status 2."""


@dataclass
class Run:
    """One train.py process: its folder, arguments and the runs it needs finished first."""

    key: str  # the output folder, as passed to --output-dir
    kind: str  # search, train, eval
    label: str
    argv: list[str]  # train.py arguments after --output-dir DIR
    deps: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return folder_of(self.key)

    @property
    def log(self) -> Path:
        return self.folder / SWEEP_LOG

    def command(self, python: str) -> list[str]:
        return [python, "train.py", "--output-dir", self.key, *self.argv]


def folder_of(key: str) -> Path:
    """The folder of a run key (an --output-dir, relative to the repository root unless absolute)."""
    path = Path(key)
    return path if path.is_absolute() else REPO / path


# ----------------------------------------------------------------------------- the plan


def recipe(name: str) -> str:
    """The recipe a config name follows (common.sh's dpl_recipe)."""
    wrapped = f"_{name}_"
    return "paper" if "_paper_" in wrapped else "reference" if "_reference_" in wrapped else "ours"


def yaml_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def check_dataset(name: str) -> None:
    if not (REPO / "configs" / "datasets" / f"{name}.yaml").is_file():
        known = " ".join(yaml_names(REPO / "configs" / "datasets"))
        raise PlanError(f"unknown dataset '{name}': no configs/datasets/{name}.yaml; known: {known}")


def check_cfg(trainer: str, name: str) -> None:
    if not (REPO / "configs" / "trainers" / trainer / f"{name}.yaml").is_file():
        known = " ".join(yaml_names(REPO / "configs" / "trainers" / trainer))
        raise PlanError(f"unknown {trainer} config '{name}': no configs/trainers/{trainer}/{name}.yaml; known: {known}")


# A line of a DPL config that fixes its architecture (common.sh's dpl_is_preset, the same pattern):
# ARCH_FILE under configs/architectures/, or per-block TEXT_LENGTHS / IMAGE_LENGTHS.
PRESET_LINE = re.compile(r"""^[ \t]*(ARCH_FILE:[ \t]*["']?configs/architectures/|(TEXT|IMAGE)_LENGTHS:[ \t]*\[[ \t]*[0-9])""",
                         re.MULTILINE)  # fmt: skip


def is_preset(train: str) -> bool:
    """Whether configs/trainers/DPL/<train>.yaml fixes its architecture, so its run needs no search."""
    return PRESET_LINE.search((REPO / "configs" / "trainers" / "DPL" / f"{train}.yaml").read_text()) is not None


def parse_method(method: str, protocol: str) -> tuple[str | None, str]:
    """``(SEARCH_CFG, TRAIN_CFG)``; SEARCH_CFG is None for a preset, which runs without a search."""
    if method == "default":
        return DEFAULTS[protocol]
    if method.endswith(GRAM_SUFFIX):
        raise PlanError(f"method '{method}': '{GRAM_SUFFIX}' marks the folders of GRAM runs: give "
                        f"'{method.removesuffix(GRAM_SUFFIX)}' and --gram-file PATH")  # fmt: skip
    parts = method.split("+")
    # A config's own name may hold '+' (ivlp_2+2ctx_depth12_ep5_batch4): a whole DPL config name is one config.
    if method and (len(parts) == 1 or (REPO / "configs" / "trainers" / "DPL" / f"{method}.yaml").is_file()):
        check_cfg("DPL", method)
        if not is_preset(method):
            raise PlanError(f"method '{method}': DPL config '{method}' needs a search (it sets no ARCH_FILE under "
                            f"configs/architectures/ and no TEXT_LENGTHS/IMAGE_LENGTHS): give SEARCH_CFG+{method}")  # fmt: skip
        return None, method
    if len(parts) != 2 or not all(parts):
        raise PlanError(f"method '{method}': give SEARCH_CFG+TRAIN_CFG, a preset (a DPL config that fixes its "
                        "architecture) or default")  # fmt: skip
    search, train = parts
    check_cfg("DPLSearch", search)
    check_cfg("DPL", train)
    if is_preset(train):
        raise PlanError(f"method '{method}': TRAIN_CFG '{train}' is a preset (configs/trainers/DPL/{train}.yaml "
                        f"fixes its architecture), so it takes no SEARCH_CFG: give '{train}' alone")  # fmt: skip
    if recipe(search) != recipe(train):
        raise PlanError(f"method '{method}': SEARCH_CFG '{search}' follows recipe '{recipe(search)}' but TRAIN_CFG "
                        f"'{train}' follows '{recipe(train)}': give both configs of one recipe")  # fmt: skip
    return search, train


def expand(protocol: str, datasets: list[str], seeds: list[int], shots: list[int], methods: list[str],
           overrides: list[str], data: str, output: str, test_base: bool = False,
           source: str = "imagenet", gram_file: str = "") -> list[Run]:  # fmt: skip
    """The runs of a plan, in the launchers' order, with the launchers' folders and arguments.

    ``data`` and ``output`` are used as given (the launchers pass an absolute DATA, and
    ``output`` relative to the repository root unless DPL_OUTPUT was set). ``gram_file``, an
    absolute path or "", is DPL_GRAM_FILE: the DPL runs start from it, in ``+gram`` folders.
    """
    if protocol not in DEFAULTS:
        raise PlanError(f"unknown protocol '{protocol}': one of {', '.join(DEFAULTS)}")
    if len(overrides) % 2:
        raise PlanError(f"the overrides after '--' must be KEY VALUE pairs, got an odd number of words "
                        f"({len(overrides)}): {' '.join(overrides)}")  # fmt: skip
    # As an override, a GRAM file would train into the plain run's folder, read as X without GRAM.
    if "TRAINER.DPL.GRAM_FILE" in overrides[::2]:
        raise PlanError(f"give the GRAM file as --gram-file PATH, not as an override: the runs then go to "
                        f"'{GRAM_SUFFIX}' folders apart from the plain ones")  # fmt: skip
    if gram_file and not os.path.isfile(gram_file):
        raise PlanError(f"--gram-file {gram_file} is not a file: give the gram_meta_init.pt that "
                        "scripts/gram/meta_train.py wrote for this prompt configuration")  # fmt: skip
    if not datasets or not seeds or not shots or not methods:
        raise PlanError("a plan needs at least one dataset, seed, shot count and method")
    for name in datasets:
        check_dataset(name)
    if protocol == "cross-dataset":
        check_dataset(source)
    for seed in seeds:
        if seed < 0:
            raise PlanError(f"SEED must be an integer >= 0, got '{seed}'")
    for k in shots:
        if k < 1:
            raise PlanError(f"SHOTS must be an integer >= 1, got '{k}'")
    pairs = [parse_method(m, protocol) for m in methods]
    ov = list(overrides)
    gram = ["TRAINER.DPL.GRAM_FILE", gram_file] if gram_file else []
    tag = GRAM_SUFFIX if gram_file else ""  # the config part of a DPL folder name ends with it
    runs: dict[str, Run] = {}

    def add(run: Run) -> None:
        if run.key in runs:
            if runs[run.key].argv != run.argv:
                raise PlanError(f"two runs of the plan write {run.key} with different arguments")
            return
        runs[run.key] = run

    def common(dataset: str, seed: int) -> list[str]:
        return ["--root", data, "--seed", str(seed), "--dataset-config-file", f"configs/datasets/{dataset}.yaml"]

    def few_shot(dataset: str, seed: int, k: int, search: str | None, train: str) -> str:
        """few_shot.sh (a preset: manual.sh, no search); returns the training folder."""
        train_dir = f"{output}/{dataset}/DPL/{train}{tag}_{k}shots/seed{seed}"
        train_args = [*common(dataset, seed), "--trainer", "DPL", "--config-file", f"configs/trainers/DPL/{train}.yaml",
                      "DATASET.NUM_SHOTS", str(k)]  # fmt: skip
        deps = []
        if search is not None:
            search_dir = f"{output}/{dataset}/DPLSearch/{search}_{k}shots/seed{seed}"
            add(Run(search_dir, "search", f"search {dataset} seed {seed}, {k} shots",
                    [*common(dataset, seed), "--trainer", "DPLSearch", "--config-file",
                     f"configs/trainers/DPLSearch/{search}.yaml", "DATASET.NUM_SHOTS", str(k), *ov]))  # fmt: skip
            train_args += ["TRAINER.DPL.ARCH_FILE", f"{search_dir}/arch.json"]
            deps = [search_dir]
            label = f"train {dataset} seed {seed}, {k} shots"
        else:
            label = f"manual {train.removeprefix('manual_')} on {dataset} seed {seed}, {k} shots"
        add(Run(train_dir, "train", label, [*train_args, *gram, *ov], deps))
        return train_dir

    for search, train in pairs:
        for k in shots:
            if protocol == "few-shot":
                for dataset in datasets:
                    for seed in seeds:
                        few_shot(dataset, seed, k, search, train)
            elif protocol == "base-to-new":
                for dataset in datasets:
                    for seed in seeds:
                        base = f"{output}/base2new/train_base/{dataset}/shots_{k}"
                        train_dir = f"{base}/DPL/{train}{tag}/seed{seed}"
                        dpl = [*common(dataset, seed), "--trainer", "DPL", "--config-file", f"configs/trainers/DPL/{train}.yaml"]
                        arch: list[str] = []
                        deps: list[str] = []
                        if search is not None:
                            search_dir = f"{base}/DPLSearch/{search}/seed{seed}"
                            add(Run(search_dir, "search", f"search {dataset} base classes, seed {seed}",
                                    [*common(dataset, seed), "--trainer", "DPLSearch", "--config-file",
                                     f"configs/trainers/DPLSearch/{search}.yaml", "DATASET.NUM_SHOTS", str(k),
                                     "DATASET.SUBSAMPLE_CLASSES", "base", *ov]))  # fmt: skip
                            arch = ["TRAINER.DPL.ARCH_FILE", f"{search_dir}/arch.json"]
                            deps = [search_dir]
                        add(Run(train_dir, "train", f"train {dataset} base classes, seed {seed}",
                                [*dpl, "DATASET.NUM_SHOTS", str(k), "DATASET.SUBSAMPLE_CLASSES", "base", *arch, *gram,
                                 *ov], deps))  # fmt: skip
                        for split in (["base", "new"] if test_base else ["new"]):
                            add(Run(f"{output}/base2new/test_{split}/{dataset}/shots_{k}/DPL/{train}{tag}/seed{seed}",
                                    "eval", f"evaluate {dataset} {split} classes, seed {seed}",
                                    ["--eval-only", "--model-dir", train_dir, *dpl, "DATASET.NUM_SHOTS", str(k),
                                     "DATASET.SUBSAMPLE_CLASSES", split, *arch, *gram, *ov], [train_dir]))  # fmt: skip
            else:  # cross-dataset: datasets are the targets
                for seed in seeds:
                    train_dir = few_shot(source, seed, k, search, train)
                    arch = [] if search is None else [
                        "TRAINER.DPL.ARCH_FILE", f"{output}/{source}/DPLSearch/{search}_{k}shots/seed{seed}/arch.json"]
                    for target in datasets:
                        add(Run(f"{output}/evaluation/DPL/{train}{tag}_{k}shots/{target}/seed{seed}", "eval",
                                f"evaluate on {target}, seed {seed}",
                                ["--eval-only", "--model-dir", train_dir, *common(target, seed), "--trainer", "DPL",
                                 "--config-file", f"configs/trainers/DPL/{train}.yaml", *arch, *gram, *ov],
                                [train_dir]))  # fmt: skip
    return list(runs.values())


# ----------------------------------------------------------------------------- state from the folders


def read_attempts(log: Path) -> list[dict]:
    """The attempt records of ``sweep.log``, one dict per attempt, with the last non-empty output
    line of the attempt under ``last`` and its ``error:`` message.

    An attempt opens with ``== sweep start`` (a process started) or ``== sweep queued`` (a SLURM
    job submitted, marked ``queued``); ``pid`` and ``exit`` records complete the latest attempt.
    """
    attempts: list[dict] = []
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return attempts
    for line in text.splitlines():
        if line.startswith(MARK):
            kind = line[len(MARK):].split(" ", 1)[0]
            fields = dict(f.split("=", 1) for f in line[len(MARK):].split()[1:] if "=" in f)
            if kind == "queued":
                # A task can start before the runner has written its queued record: that record
                # then follows the attempt it announced and opens nothing.
                if not attempts or job_of(attempts[-1]) != fields.get("job"):
                    attempts.append({**fields, "queued": True, "last": "", "error": []})
            elif kind == "start":
                attempts.append({**fields, "last": "", "error": []})
            elif attempts:
                attempts[-1].update(fields)
                if kind == "exit":
                    attempts[-1]["ended"] = True
        elif attempts and line.strip():
            attempts[-1]["last"] = line.strip()
            if line.startswith("error:"):
                attempts[-1]["error"] = [line]
            elif attempts[-1]["error"] and not line.startswith("(run with --debug"):
                attempts[-1]["error"].append(line)
    return attempts


def job_of(attempt: dict) -> str | None:
    """The job of an attempt: a queued record names it (``job=``), a task's start record shows it
    as its device (``device=job=ID``); None for an attempt of the local pool."""
    device = attempt.get("device", "")
    return attempt.get("job") or (device.removeprefix("job=") if device.startswith("job=") else None)


def job_label(cluster: str, job_id: str) -> str:
    """How sweep.log names a submitit job: SLURM's id (``123_4``), else the executor and its id
    (``local-4567``), which never reaches squeue."""
    return job_id if cluster == "slurm" else f"{cluster}-{job_id}"


def last_jobs(runs: list[Run]) -> list[str]:
    """The jobs of the runs' last attempts."""
    jobs = []
    for run in runs:
        attempts = read_attempts(run.log)
        job = job_of(attempts[-1]) if attempts else None
        if job is not None:
            jobs.append(job)
    return jobs


def slurm_alive(jobs: Iterable[str]) -> set[str]:
    """The SLURM jobs among ``jobs`` that squeue still lists (pending or running); none without
    squeue. A failing squeue is an error: reading it as "nothing queued" would submit twice."""
    wanted = {job for job in jobs if SLURM_JOB.fullmatch(job)}
    squeue = shutil.which("squeue")
    if not wanted or squeue is None:
        return set()
    arrays = ",".join(sorted({job.split("_")[0] for job in wanted}))
    result = subprocess.run([squeue, "-h", "-r", "-o", "%i", "-j", arrays], capture_output=True, text=True, check=False)
    # squeue asked about one job only fails when SLURM has forgotten it, which means ended.
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise PlanError(f"squeue -j {arrays} failed, so queued runs cannot be told apart: {reason}")
    return wanted & set(result.stdout.split())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a reused pid is not our train.py
        return b"train.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def run_state(run: Run, alive: set[str] | frozenset[str] = frozenset()) -> tuple[str, dict]:
    """``(state, last attempt)``: done, queued, running, failed or pending, from the folder and
    sweep.log; ``alive`` holds the SLURM jobs squeue still lists (:func:`slurm_alive`)."""
    attempts = read_attempts(run.log)
    last = attempts[-1] if attempts else {}
    if last and not last.get("ended") and job_of(last) in alive:
        return ("queued" if last.get("queued") else "running"), last
    pid = int(last.get("pid", 0) or 0)
    if last and not last.get("ended") and last.get("host") == socket.gethostname() and pid > 0 and pid_alive(pid):
        return "running", last
    if folder_status(run.folder).state == "finished" and (not last or last.get("rc") == "0" or not last.get("ended")):
        return "done", last
    if last.get("ended") and last.get("rc") != "0":
        return "failed", last
    return "pending", last


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = int(value)
    return f"{value // 3600}h{value % 3600 // 60:02d}m" if value >= 3600 else f"{value // 60}m{value % 60:02d}s"


def status_table(runs: list[Run], alive: set[str]) -> str:
    rows = [("STATE", "DEVICE", "ELAPSED", "RUN", "LAST LOG LINE", "LOG")]
    counts: dict[str, int] = {}
    for run in runs:
        state, last = run_state(run, alive)
        counts[state] = counts.get(state, 0) + 1
        elapsed = None
        if "start" in last:
            end = float(last["end"]) if "end" in last else time.time()
            elapsed = end - float(last["start"]) if state in ("running", "done", "failed") else None
        line = last.get("last", "") or (f"(no output; exit status {last.get('rc')})" if last.get("ended") else "")
        device = last.get("device") or (f"job={last['job']}" if "job" in last else "-")
        rows.append((state, device, seconds(elapsed), run.key,
                     (line[:60] + "...") if len(line) > 63 else line or "-", str(run.log) if last else "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "queued", "running", "failed", "pending"))
    lines.append(f"{len(runs)} runs: {summary}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- one attempt


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def mark(kind: str, **fields: object) -> str:
    """One ``== sweep KIND key=value ...`` record of sweep.log, on a line of its own."""
    return f"\n{MARK}{kind} " + " ".join(f"{key}={value}" for key, value in fields.items()) + "\n"


def launch_train(run: Run, python: str, device: str, env: dict[str, str]) -> tuple[int, float, float]:
    """Start ``run``'s train.py from the repository root and wait for it; its output goes to
    sweep.log between the start, pid and exit records. Returns ``(exit status, start, end)``."""
    run.folder.mkdir(parents=True, exist_ok=True)
    begin = time.time()
    with open(run.log, "a") as log:
        log.write(mark("start", host=socket.gethostname(), device=device, start=f"{begin:.3f}", date=now()))
        log.flush()
        # Unbuffered, so that the last log line of a running run is current.
        process = subprocess.Popen(run.command(python), cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        log.write(mark("pid", pid=process.pid))
        log.flush()
        rc = process.wait()
        end = time.time()
        log.write(mark("exit", rc=rc, end=f"{end:.3f}", date=now()))
    return rc, begin, end


def failure(run: Run, attempt: dict) -> str:
    """What went wrong in an attempt: its ``error:`` lines (else its last line), then its log."""
    message = "\n    ".join(attempt.get("error") or [attempt.get("last", "") or f"exit status {attempt.get('rc')}"])
    return f"{message}\n    log: {run.log}"


def check_outcome(run: Run, rc: int) -> str | None:
    """Why an attempt that exited with ``rc`` did not leave a finished run; None when it did."""
    if rc != 0:
        return failure(run, read_attempts(run.log)[-1])
    if folder_status(run.folder).state != "finished":
        return f"train.py returned but {run.key} has no result.json; log: {run.log}"
    if run.kind == "search" and not (run.folder / "arch.json").is_file():
        return f"{run.key} finished without arch.json; delete the folder to search again"
    return None


# ----------------------------------------------------------------------------- the local pool


class Pool:
    """Runs the plan on a concurrent.futures thread pool; each thread starts one train.py at a
    time on the device slot it takes from a queue (a GPU index, or a CPU worker)."""

    def __init__(self, runs: list[Run], devices: list[str | None], python: str, retry_failed: bool,
                 alive: set[str] | frozenset[str] = frozenset(), out=sys.stdout) -> None:  # fmt: skip
        self.runs = {r.key: r for r in runs}
        self.alive = alive  # SLURM jobs still queued or running (slurm_alive)
        self.devices: queue.Queue = queue.Queue()
        for device in devices:
            self.devices.put(device)
        self.width = len(devices)
        self.python = python
        self.retry_failed = retry_failed
        self.out = out
        self.lock = threading.Lock()
        self.outcome: dict[str, tuple[str, str]] = {}  # key -> (done|skipped|failed|blocked, detail)
        self.durations: list[float] = []
        self.started = time.time()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def execute(self, run: Run) -> tuple[str, str]:
        """Run one train.py (waiting first for a live process of an earlier runner on its folder)."""
        state, last = run_state(run, self.alive)
        if job_of(last) in self.alive:
            return "failed", f"{state} as SLURM job {job_of(last)}: not started here (follow it with status, or scancel it)"
        while state == "running":
            time.sleep(2)
            state, last = run_state(run)
        if state == "failed" and not self.retry_failed:
            return "failed", failure(run, read_attempts(run.log)[-1]) + " (earlier attempt; --retry-failed reruns it)"
        device = self.devices.get()
        try:
            return self.launch(run, device)
        finally:
            self.devices.put(device)

    def launch(self, run: Run, device: str | None) -> tuple[str, str]:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if device is None else device}
        rc, begin, end = launch_train(run, self.python, "cpu" if device is None else f"cuda:{device}", env)
        problem = check_outcome(run, rc)
        if problem is not None:
            return "failed", problem
        if "nothing to do" in "\n".join(run.log.read_text(errors="replace").splitlines()[-5:]):
            return "skipped", "finished run of this config"
        self.durations.append(end - begin)
        return "done", seconds(end - begin)

    def progress(self, key: str) -> None:
        state, detail = self.outcome[key]
        finished = len(self.outcome)
        left = len(self.runs) - finished
        failed = sum(1 for s, _ in self.outcome.values() if s in ("failed", "blocked"))
        eta = ""
        if self.durations and left:
            eta = f", ETA {seconds(sum(self.durations) / len(self.durations) * left / self.width)}"
        head = detail.splitlines()[0] if detail else ""
        self.say(f"[{finished}/{len(self.runs)} finished, {failed} failed{eta}] {state} {self.runs[key].label}: {head}")

    def run(self) -> int:
        pending = dict(self.runs)
        with cf.ThreadPoolExecutor(max_workers=max(self.width, 1)) as executor:
            futures: dict[cf.Future, str] = {}
            while pending or futures:
                for key, run in list(pending.items()):
                    states = [self.outcome.get(d, (None,))[0] for d in run.deps]
                    if any(s in ("failed", "blocked") for s in states):
                        bad = next(d for d in run.deps if self.outcome[d][0] in ("failed", "blocked"))
                        self.outcome[key] = ("blocked", f"not started: {bad} failed")
                        del pending[key]
                        self.progress(key)
                    elif all(s in ("done", "skipped") for s in states):
                        self.say(f"[start] {run.label} -> {run.key}")
                        futures[executor.submit(self.execute, run)] = key
                        del pending[key]
                if not futures:
                    continue
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    key = futures.pop(future)
                    try:
                        self.outcome[key] = future.result()
                    except Exception as error:  # noqa: BLE001  a runner error fails this run only
                        self.outcome[key] = ("failed", f"{type(error).__name__}: {error}")
                    self.progress(key)
        return summarize(self.outcome, self.started, self.say)


def summarize(outcome: dict[str, tuple[str, str]], started: float, say: Callable[[str], None]) -> int:
    """The closing lines of a sweep that ran its runs (the pool, submitit's local executor): the
    counts, then each failure with its log. Returns the exit status."""
    counts = {s: sum(1 for o, _ in outcome.values() if o == s) for s in ("done", "skipped", "failed", "blocked")}
    say(f"sweep: {len(outcome)} runs: {counts['done']} done, {counts['skipped']} skipped (finished before), "
        f"{counts['failed']} failed, {counts['blocked']} not started (a run they need failed), "
        f"{seconds(time.time() - started)}")  # fmt: skip
    return list_failures(outcome, say)


def list_failures(outcome: dict[str, tuple[str, str]], say: Callable[[str], None]) -> int:
    """Print the failed and blocked runs with their details; 1 when there are any, else 0."""
    bad = [(k, o) for k, o in outcome.items() if o[0] in ("failed", "blocked")]
    if bad:
        say("failures:")
        for key, (state, detail) in bad:
            say(f"  {state}: {key}\n    {detail}")
    return 1 if bad else 0


# ----------------------------------------------------------------------------- SLURM through submitit


def check_resource(key: str, value: object, where: str) -> None:
    """Refuse a resource value of the wrong type or range; ``where`` names its origin."""
    kind = SLURM_KEYS[key][0]
    if kind is int:
        least = 0 if key == "gpus_per_task" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise PlanError(f"{where}: {key} must be an integer >= {least}, got {value!r}")
    elif not isinstance(value, str) or not value:
        raise PlanError(f"{where}: {key} must be a non-empty string, got {value!r}")


def read_slurm_config(path: str) -> dict[str, dict[str, Any]]:
    """The sections of a --slurm-config yaml (``default``, ``search``, ``train``, ``eval``), checked."""
    import yaml  # PyYAML comes with yacs; only this option needs it

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise PlanError(f"--slurm-config {path}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise PlanError(f"--slurm-config {path}: not valid yaml ({' '.join(str(error).split())})") from None
    data = {} if data is None else data
    sections = ("default", *STAGES)
    if not isinstance(data, dict):
        raise PlanError(f"--slurm-config {path}: expected the sections {', '.join(sections)}, got {type(data).__name__}")
    for section, values in data.items():
        if section not in sections:
            raise PlanError(f"--slurm-config {path}: unknown section '{section}' (sections: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise PlanError(f"--slurm-config {path}: section '{section}' must hold key: value lines")
        for key, value in values.items():
            if key not in SLURM_KEYS:
                raise PlanError(f"--slurm-config {path}: {section}: unknown key '{key}' (keys: {', '.join(SLURM_KEYS)})")
            check_resource(key, value, f"--slurm-config {path}: {section}")
    return {section: dict(values) for section, values in data.items()}


def slurm_resources(config: str | None, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage's resources: the built-in defaults, then the yaml's ``default:`` section, then
    the command-line ``options`` given (not None), then the yaml's section of the stage."""
    sections = read_slurm_config(config) if config else {}
    given = {key: value for key, value in options.items() if value is not None}
    for key, value in given.items():
        check_resource(key, value, f"--slurm-{key.replace('_', '-')}")
    base = {key: default for key, (_, default, _) in SLURM_KEYS.items()}
    return {stage: {**base, **sections.get("default", {}), **given, **sections.get(stage, {})} for stage in STAGES}


def executor_parameters(stage: str, resources: dict[str, Any], after: list[str]) -> dict[str, Any]:
    """submitit.AutoExecutor parameters of one stage's array; ``after``: the SLURM jobs it waits for.

    One task per job (``--gpus-per-task`` needs a task count). ``local_gpus_per_node`` gives
    submitit's local executor the same GPUs (it sets CUDA_VISIBLE_DEVICES); SLURM ignores it.
    """
    params: dict[str, Any] = {"name": f"dpl_{stage}", "timeout_min": resources["time"], "tasks_per_node": 1,
                              "cpus_per_task": resources["cpus_per_task"], "local_gpus_per_node": resources["gpus_per_task"]}  # fmt: skip
    if resources["gpus_per_task"]:
        params["slurm_gpus_per_task"] = resources["gpus_per_task"]
    if resources["partition"] is not None:
        params["slurm_partition"] = resources["partition"]
    if resources["mem_gb"] is not None:
        params["mem_gb"] = resources["mem_gb"]
    if resources["array_parallelism"] is not None:
        params["slurm_array_parallelism"] = resources["array_parallelism"]
    if after:
        params["slurm_dependency"] = "afterany:" + ":".join(after)
    return params


def require_submitit() -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise PlanError("--executor slurm needs submitit, which is not installed: pip install submitit") from None


class TaskFailed(RuntimeError):
    """An array task that left no finished run; the message (SLURM's and submitit's task log) says why."""


def run_task(run: Run, python: str) -> str:
    """One array task, where SLURM runs it: fail at once when a run it needs is not finished
    (afterany starts it after failures too), else start train.py as the pool does.

    Returns the run's duration; raises :class:`TaskFailed` (the job fails) when the run did not finish.
    """
    import submitit

    environment = submitit.JobEnvironment()
    device = f"job={job_label(environment.cluster, environment.job_id)}"
    for dep in run.deps:
        status = folder_status(folder_of(dep))
        if status.state != "finished":
            message = f"error: train.py not started: the run it needs, {dep}, is not finished ({status.state}: {status.problem})"
            run.folder.mkdir(parents=True, exist_ok=True)
            with open(run.log, "a") as log:
                log.write(mark("start", host=socket.gethostname(), device=device, start=f"{time.time():.3f}", date=now()))
                log.write(f"{message}\n")
                log.write(mark("exit", rc=1, end=f"{time.time():.3f}", date=now()))
            raise TaskFailed(message)
    rc, begin, end = launch_train(run, python, device, dict(os.environ))
    problem = check_outcome(run, rc)
    if problem is not None:
        raise TaskFailed(problem)
    return seconds(end - begin)


class SlurmSweep:
    """Submits a plan with submitit: one job array per stage, each after the arrays its runs need.

    Runs that are finished, or queued or running in SLURM, are not submitted; failed ones only
    with ``retry_failed``. On ``cluster="local"`` (submitit's LocalExecutor, which has no
    dependencies) each stage is submitted once the jobs before it have ended, and the sweep
    waits for the last stage.
    """

    def __init__(self, runs: list[Run], resources: dict[str, dict[str, Any]], folder: Path, cluster: str,
                 python: str, retry_failed: bool, alive: set[str], out: TextIO = sys.stdout) -> None:  # fmt: skip
        self.runs = {run.key: run for run in runs}
        self.resources = resources
        self.folder = folder
        self.cluster = cluster
        self.python = python
        self.retry_failed = retry_failed
        self.alive = alive
        self.out = out
        # key -> (skipped|waiting|failed|blocked|submitted|done, detail)
        self.outcome: dict[str, tuple[str, str]] = {}
        self.jobs: dict[str, Any] = {}  # key -> the submitit job of a run submitted now
        self.job_ids: dict[str, str] = {}  # key -> job label, of the runs submitted now and the ones still queued
        self.started = time.time()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def triage(self) -> list[Run]:
        """Decide the runs not to submit (with the reason, said); return the ones to submit."""
        submit = []
        for run in self.runs.values():  # a run comes after the runs it needs
            state, last = run_state(run, self.alive)
            bad = next((d for d in run.deps if self.outcome.get(d, ("submit",))[0] in ("failed", "blocked")), None)
            if state == "done":
                self.outcome[run.key] = ("skipped", "finished before")
            elif job_of(last) in self.alive:
                self.job_ids[run.key] = job_of(last)
                self.outcome[run.key] = ("waiting", f"{state} as job {job_of(last)}")
            elif state == "running":
                reason = f"running on this host as pid {last['pid']}, not under SLURM; submit again when it has ended"
                self.outcome[run.key] = ("failed", reason)
            elif bad is not None:
                self.outcome[run.key] = ("blocked", f"not submitted: {bad} failed")
            elif state == "failed" and not self.retry_failed:
                self.outcome[run.key] = ("failed", failure(run, last) + " (earlier attempt; --retry-failed resubmits it)")
            else:
                submit.append(run)
                continue
            state, detail = self.outcome[run.key]
            self.say(f"[{state}] {run.label}: {detail.splitlines()[0]}")
        return submit

    def run(self) -> int:
        import submitit

        # The tasks unpickle references to trainers.dpl_core; SLURM and the local executor hand
        # them this environment.
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        submit = self.triage()
        for stage in STAGES:
            batch = [run for run in submit if run.kind == stage]
            if not batch:
                continue
            after: list[str] = []
            if self.cluster == "local":
                self.wait(list(self.jobs))
            else:  # whole arrays: afterany on an array waits for all its tasks
                after = sorted({self.job_ids[d].split("_")[0] for run in batch for d in run.deps if d in self.job_ids})
            executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
            executor.update_parameters(**executor_parameters(stage, self.resources[stage], after))
            jobs = executor.map_array(run_task, batch, [self.python] * len(batch))
            for run, job in zip(batch, jobs):
                self.job_ids[run.key] = job_label(self.cluster, job.job_id)
                self.jobs[run.key] = job
                self.outcome[run.key] = ("submitted", self.job_ids[run.key])
                run.folder.mkdir(parents=True, exist_ok=True)
                with open(run.log, "a") as log:
                    log.write(mark("queued", job=self.job_ids[run.key], host=socket.gethostname(), date=now()))
            arrays = sorted({self.job_ids[run.key].split("_")[0] for run in batch})
            self.say(f"[submitted] {stage}: {len(batch)} run(s) as job {', '.join(arrays)}"
                     + (f", after job {', '.join(after)}" if after else ""))  # fmt: skip
        if self.cluster == "local":
            self.wait(list(self.jobs))
            return summarize({key: self.outcome[key] for key in self.runs}, self.started, self.say)
        counts = {s: sum(1 for o, _ in self.outcome.values() if o == s) for s in ("submitted", "skipped", "waiting", "failed", "blocked")}
        self.say(f"sweep: {len(self.runs)} runs: {counts['submitted']} submitted, {counts['skipped']} skipped (finished "
                 f"before), {counts['waiting']} already queued or running, {counts['failed']} failed, {counts['blocked']} "
                 "not submitted (a run they need failed)")  # fmt: skip
        return list_failures({key: self.outcome[key] for key in self.runs}, self.say)

    def wait(self, keys: list[str]) -> None:
        """Wait for the local executor's jobs of ``keys`` that are still out, and take their outcome."""
        for key in keys:
            if self.outcome[key][0] != "submitted":
                continue
            run, job = self.runs[key], self.jobs[key]
            try:
                self.outcome[key] = ("done", job.result())
            except Exception as error:  # noqa: BLE001  a failed task fails its run only
                attempts = read_attempts(run.log)
                last = attempts[-1] if attempts else {}
                if last.get("ended") and last.get("rc") != "0":
                    self.outcome[key] = ("failed", failure(run, last))
                else:
                    self.outcome[key] = ("failed", f"job {job.job_id} failed ({type(error).__name__}); its log: {job.paths.stderr}")
            state, detail = self.outcome[key]
            self.say(f"[{state}] {run.label}: {detail.splitlines()[0]}")


# ----------------------------------------------------------------------------- command line


def parse_devices(args: argparse.Namespace) -> list[str | None]:
    if args.gpus is not None:
        if args.workers is not None:
            raise PlanError("give --gpus or --workers, not both")
        indices = [g.strip() for g in args.gpus.split(",") if g.strip()]
        if not indices or not all(g.isdigit() for g in indices):
            raise PlanError(f"--gpus takes comma-separated GPU indices, e.g. 0,1; got '{args.gpus}'")
        if len(set(indices)) != len(indices):
            raise PlanError(f"--gpus lists a GPU twice: '{args.gpus}'")
        try:
            import torch
        except ImportError as error:
            raise PlanError(f"--gpus: torch cannot be imported ({error}), so no GPU can be used") from None
        count = torch.cuda.device_count()
        if count == 0:
            raise PlanError("--gpus: no GPU is visible to torch (torch.cuda.device_count() is 0); use --workers N on the CPU")
        beyond = [g for g in indices if int(g) >= count]
        if beyond:
            raise PlanError(f"--gpus: no GPU {', '.join(beyond)}: torch sees {count} (indices 0..{count - 1})")
        return list(indices)
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise PlanError(f"--workers must be >= 1, got {workers}")
    return [None] * workers


def abspath(path: str) -> str:
    return os.path.abspath(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=("run", "status"), default="run",
                        help="run the plan (default) or print the state of its runs")  # fmt: skip
    parser.add_argument("--protocol", default="few-shot", choices=tuple(DEFAULTS))
    parser.add_argument("--datasets", nargs="+", required=True,
                        help="configs/datasets/<name>.yaml names (cross-dataset: the targets)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", nargs="+", type=int, default=[16])
    parser.add_argument("--methods", nargs="+", default=["default"],
                        help="SEARCH_CFG+TRAIN_CFG, a preset (a DPL config that fixes its architecture, e.g. "
                             "coop_16ctx_vit_b16_ep50 or manual_ivlp_2ctx_depth9; no search) or default (the protocol's pair)")  # fmt: skip
    parser.add_argument("--source", default="imagenet", help="cross-dataset source dataset (default imagenet)")
    parser.add_argument("--test-base", action="store_true", help="base-to-new: also evaluate the base classes (DPL_TEST_BASE=1)")
    parser.add_argument("--gram-file", default=os.environ.get("DPL_GRAM_FILE", ""), metavar="PATH",
                        help="GRAM meta-initialisation (gram_meta_init.pt) for every method's DPL runs, into "
                             "'+gram' folders (default $DPL_GRAM_FILE, else none)")  # fmt: skip
    parser.add_argument("--data", default=os.environ.get("DATA", ""), help="dataset root (default $DATA)")
    parser.add_argument("--output", default=os.environ.get("DPL_OUTPUT", ""),
                        help="output root (default $DPL_OUTPUT, else output/ in the repository)")  # fmt: skip
    parser.add_argument("--gpus", help="comma-separated GPU indices: one run per GPU at a time")
    parser.add_argument("--workers", type=int, help="N runs at a time on the CPU (default 1 without --gpus)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train.py (default this one)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, dependencies and folders; start nothing")
    parser.add_argument("--retry-failed", action="store_true", help="rerun runs whose last attempt failed (train.py resumes them)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="local: the pool of --gpus/--workers (default); slurm: job arrays through submitit")  # fmt: skip
    slurm = parser.add_argument_group("SLURM (--executor slurm)")
    slurm.add_argument("--slurm-config", metavar="FILE",
                       help=f"yaml of resources: sections default, {', '.join(STAGES)}; keys {', '.join(SLURM_KEYS)}")  # fmt: skip
    for key, (kind, _, text) in SLURM_KEYS.items():
        slurm.add_argument(f"--slurm-{key.replace('_', '-')}", dest=f"slurm_{key}", type=kind, help=text)
    slurm.add_argument("--slurm-cluster", choices=("slurm", "local"), default="slurm",
                       help="local: submitit's LocalExecutor on this machine, stage after stage (tests, debugging)")  # fmt: skip
    return parser


def slurm_options_given(args: argparse.Namespace) -> list[str]:
    """The --slurm-* options on the command line."""
    given = [f"--slurm-{key.replace('_', '-')}" for key in SLURM_KEYS if getattr(args, f"slurm_{key}") is not None]
    given += ["--slurm-config"] if args.slurm_config is not None else []
    return given + (["--slurm-cluster"] if args.slurm_cluster != "slurm" else [])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)
    overrides: list[str] = []
    if "--" in argv:
        overrides = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    args = build_parser().parse_args(argv)
    try:
        output = abspath(args.output) if args.output else "output"
        if args.command == "run" and not args.dry_run:
            if not args.data:
                raise PlanError("no dataset root: give --data DIR or export DATA")
            if not os.path.isdir(args.data):
                raise PlanError(f"--data {args.data} is not a folder: point it at the folder holding the datasets")
        data = abspath(args.data) if args.data else "$DATA"
        runs = expand(args.protocol, args.datasets, args.seeds, args.shots, args.methods, overrides, data, output,
                      test_base=args.test_base, source=args.source,
                      gram_file=abspath(args.gram_file) if args.gram_file else "")  # fmt: skip
        devices: list[str | None] = []
        resources: dict[str, dict[str, Any]] = {}
        if args.command == "run" and args.executor == "slurm":
            if args.gpus is not None or args.workers is not None:
                raise PlanError("--gpus and --workers size the local pool; with --executor slurm give "
                                "--slurm-gpus-per-task and the other --slurm-* options")  # fmt: skip
            resources = slurm_resources(args.slurm_config, {key: getattr(args, f"slurm_{key}") for key in SLURM_KEYS})
            if not args.dry_run:
                require_submitit()
        elif args.command == "run":
            if slurm_options_given(args):
                raise PlanError(f"{slurm_options_given(args)[0]} needs --executor slurm")
            devices = parse_devices(args) if not args.dry_run else []
        alive = slurm_alive(last_jobs(runs)) if not args.dry_run else set()
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(status_table(runs, alive))
        return 0
    if args.dry_run:
        print(f"plan: {len(runs)} runs ({args.protocol}); nothing is started")
        for i, run in enumerate(runs, 1):
            needs = ", ".join(run.deps) if run.deps else "-"
            print(f"{i:3d}. {run.kind:6s} {run.label}\n     folder: {run.key}\n     needs:  {needs}\n"
                  f"     command: {shlex.join(run.command('python'))}")  # fmt: skip
        for stage in STAGES if args.executor == "slurm" else ():
            count = sum(1 for run in runs if run.kind == stage)
            if count:
                params = " ".join(f"{k}={v}" for k, v in executor_parameters(stage, resources[stage], []).items())
                print(f"slurm {stage} array: {count} task(s), after the arrays its runs need; {params}")
        return 0
    if args.executor == "slurm":
        folder = folder_of(output) / ".submitit"
        where = "SLURM" if args.slurm_cluster == "slurm" else "submitit's local executor, stage after stage"
        print(f"sweep: {len(runs)} runs on {where}; logs in <run folder>/{SWEEP_LOG}, submitit's in {folder}", flush=True)
        code = SlurmSweep(runs, resources, folder, args.slurm_cluster, args.python, args.retry_failed, alive).run()
        if args.slurm_cluster == "slurm":
            plan = list(given)
            if args.command in plan[: plan.index("--") if "--" in plan else len(plan)]:
                plan.remove(args.command)
            print(f"follow the runs with: {shlex.join(['python', str(Path(__file__).resolve()), 'status', *plan])}")
        return code
    shown = ", ".join("cpu" if d is None else f"cuda:{d}" for d in devices)
    print(f"sweep: {len(runs)} runs on {len(devices)} slot(s) ({shown}); logs in <run folder>/{SWEEP_LOG}", flush=True)
    return Pool(runs, devices, args.python, args.retry_failed, alive).run()


if __name__ == "__main__":
    sys.exit(main())
