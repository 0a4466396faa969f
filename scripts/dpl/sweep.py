#!/usr/bin/env python
"""Run a grid of DPL experiments (a plan) on a local pool of GPUs or CPU workers.

    python scripts/dpl/sweep.py [run|status] --protocol few-shot --datasets eurosat dtd \\
        --seeds 1 2 3 --shots 16 --methods vit_b16_ep60_batch4+vit_b16_ep40_batch4 manual_ivlp_2ctx_depth9 \\
        --gpus 0,1 [--dry-run] [--retry-failed] [-- KEY VALUE ...]

A plan is expanded into runs (search -> training -> evaluation), each one ``train.py`` process
started with the arguments and into the folder the launchers of this folder use (few_shot.sh,
manual.sh, base2new.sh, cross_dataset.sh), so a sweep and the launchers share their runs.

The run folders are the state: train.py skips a finished run of the same config, resumes an
unfinished one and refuses a folder of another config. Beside train.py's files, each folder gets
``sweep.log``: the stdout/stderr of every attempt between ``== sweep start`` / ``== sweep exit``
lines (device, pid, time), which ``status`` reads. Killing the runner and starting it again
loses nothing: unfinished runs resume, finished ones are skipped.

Methods: ``SEARCH_CFG+TRAIN_CFG`` (names in configs/trainers/DPLSearch/ and DPL/, one recipe),
``manual_<preset>`` (configs/trainers/DPL/manual_<preset>.yaml, few-shot only, no search), or
``default`` (the protocol's default pair, as the launchers').

Exit status: 0 when every run is done, 1 when some failed (or were skipped because a run they
depend on failed), 2 for a bad plan (nothing is started).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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
        path = Path(self.key)
        return path if path.is_absolute() else REPO / path

    @property
    def log(self) -> Path:
        return self.folder / SWEEP_LOG

    def command(self, python: str) -> list[str]:
        return [python, "train.py", "--output-dir", self.key, *self.argv]


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


def parse_method(method: str, protocol: str) -> tuple[str | None, str]:
    """``(SEARCH_CFG, TRAIN_CFG)``; SEARCH_CFG is None for a manual preset."""
    if method == "default":
        return DEFAULTS[protocol]
    if method.startswith("manual_") and "+" not in method:
        if protocol != "few-shot":
            raise PlanError(f"method '{method}': manual presets run in the few-shot protocol only (as manual.sh)")
        check_cfg("DPL", method)
        return None, method
    parts = method.split("+")
    if len(parts) != 2 or not all(parts):
        raise PlanError(f"method '{method}': give SEARCH_CFG+TRAIN_CFG, manual_<preset> or default")
    search, train = parts
    check_cfg("DPLSearch", search)
    check_cfg("DPL", train)
    if recipe(search) != recipe(train):
        raise PlanError(f"method '{method}': SEARCH_CFG '{search}' follows recipe '{recipe(search)}' but TRAIN_CFG "
                        f"'{train}' follows '{recipe(train)}': give both configs of one recipe")  # fmt: skip
    return search, train


def expand(protocol: str, datasets: list[str], seeds: list[int], shots: list[int], methods: list[str],
           overrides: list[str], data: str, output: str, test_base: bool = False,
           source: str = "imagenet") -> list[Run]:  # fmt: skip
    """The runs of a plan, in the launchers' order, with the launchers' folders and arguments.

    ``data`` and ``output`` are used as given (the launchers pass an absolute DATA, and
    ``output`` relative to the repository root unless DPL_OUTPUT was set).
    """
    if protocol not in DEFAULTS:
        raise PlanError(f"unknown protocol '{protocol}': one of {', '.join(DEFAULTS)}")
    if len(overrides) % 2:
        raise PlanError(f"the overrides after '--' must be KEY VALUE pairs, got an odd number of words "
                        f"({len(overrides)}): {' '.join(overrides)}")  # fmt: skip
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
        """few_shot.sh (manual.sh without a search); returns the training folder."""
        train_dir = f"{output}/{dataset}/DPL/{train}_{k}shots/seed{seed}"
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
        add(Run(train_dir, "train", label, [*train_args, *ov], deps))
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
                        search_dir = f"{base}/DPLSearch/{search}/seed{seed}"
                        train_dir = f"{base}/DPL/{train}/seed{seed}"
                        arch = ["TRAINER.DPL.ARCH_FILE", f"{search_dir}/arch.json"]
                        dpl = [*common(dataset, seed), "--trainer", "DPL", "--config-file", f"configs/trainers/DPL/{train}.yaml"]
                        add(Run(search_dir, "search", f"search {dataset} base classes, seed {seed}",
                                [*common(dataset, seed), "--trainer", "DPLSearch", "--config-file",
                                 f"configs/trainers/DPLSearch/{search}.yaml", "DATASET.NUM_SHOTS", str(k),
                                 "DATASET.SUBSAMPLE_CLASSES", "base", *ov]))  # fmt: skip
                        add(Run(train_dir, "train", f"train {dataset} base classes, seed {seed}",
                                [*dpl, "DATASET.NUM_SHOTS", str(k), "DATASET.SUBSAMPLE_CLASSES", "base", *arch, *ov],
                                [search_dir]))  # fmt: skip
                        for split in (["base", "new"] if test_base else ["new"]):
                            add(Run(f"{output}/base2new/test_{split}/{dataset}/shots_{k}/DPL/{train}/seed{seed}", "eval",
                                    f"evaluate {dataset} {split} classes, seed {seed}",
                                    ["--eval-only", "--model-dir", train_dir, *dpl, "DATASET.NUM_SHOTS", str(k),
                                     "DATASET.SUBSAMPLE_CLASSES", split, *arch, *ov], [train_dir]))  # fmt: skip
            else:  # cross-dataset: datasets are the targets
                for seed in seeds:
                    train_dir = few_shot(source, seed, k, search, train)
                    search_dir = f"{output}/{source}/DPLSearch/{search}_{k}shots/seed{seed}"
                    for target in datasets:
                        add(Run(f"{output}/evaluation/DPL/{train}_{k}shots/{target}/seed{seed}", "eval",
                                f"evaluate on {target}, seed {seed}",
                                ["--eval-only", "--model-dir", train_dir, *common(target, seed), "--trainer", "DPL",
                                 "--config-file", f"configs/trainers/DPL/{train}.yaml",
                                 "TRAINER.DPL.ARCH_FILE", f"{search_dir}/arch.json", *ov], [train_dir]))  # fmt: skip
    return list(runs.values())


# ----------------------------------------------------------------------------- state from the folders


def read_attempts(log: Path) -> list[dict]:
    """The ``== sweep start``/``exit`` records of ``sweep.log``, one dict per attempt, with the
    last non-empty output line of the attempt under ``last`` and its ``error:`` message."""
    attempts: list[dict] = []
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return attempts
    for line in text.splitlines():
        if line.startswith(MARK):
            fields = dict(f.split("=", 1) for f in line[len(MARK):].split()[1:] if "=" in f)
            if line[len(MARK):].startswith("start"):
                attempts.append({**fields, "last": "", "error": []})
            elif attempts:
                attempts[-1].update(fields)
                if line[len(MARK):].startswith("exit"):
                    attempts[-1]["ended"] = True
        elif attempts and line.strip():
            attempts[-1]["last"] = line.strip()
            if line.startswith("error:"):
                attempts[-1]["error"] = [line]
            elif attempts[-1]["error"] and not line.startswith("(run with --debug"):
                attempts[-1]["error"].append(line)
    return attempts


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


def run_state(run: Run) -> tuple[str, dict]:
    """``(state, last attempt)``: done, running, failed or pending, from the folder and sweep.log."""
    attempts = read_attempts(run.log)
    last = attempts[-1] if attempts else {}
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


def status_table(runs: list[Run]) -> str:
    rows = [("STATE", "DEVICE", "ELAPSED", "RUN", "LAST LOG LINE", "LOG")]
    counts: dict[str, int] = {}
    for run in runs:
        state, last = run_state(run)
        counts[state] = counts.get(state, 0) + 1
        elapsed = None
        if "start" in last:
            end = float(last["end"]) if "end" in last else time.time()
            elapsed = end - float(last["start"]) if state in ("running", "done", "failed") else None
        line = last.get("last", "") or (f"(no output; exit status {last.get('rc')})" if last.get("ended") else "")
        rows.append((state, last.get("device", "-") if last else "-", seconds(elapsed), run.key,
                     (line[:60] + "...") if len(line) > 63 else line or "-", str(run.log) if last else "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "pending"))
    lines.append(f"{len(runs)} runs: {summary}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the local pool


class Pool:
    """Runs the plan on a concurrent.futures thread pool; each thread starts one train.py at a
    time on the device slot it takes from a queue (a GPU index, or a CPU worker)."""

    def __init__(self, runs: list[Run], devices: list[str | None], python: str, retry_failed: bool,
                 out=sys.stdout) -> None:  # fmt: skip
        self.runs = {r.key: r for r in runs}
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
        state, last = run_state(run)
        while state == "running":
            time.sleep(2)
            state, last = run_state(run)
        if state == "failed" and not self.retry_failed:
            return "failed", self.failure(run, read_attempts(run.log)[-1]) + " (earlier attempt; --retry-failed reruns it)"
        device = self.devices.get()
        try:
            return self.launch(run, device)
        finally:
            self.devices.put(device)

    def launch(self, run: Run, device: str | None) -> tuple[str, str]:
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = "" if device is None else device
        env["PYTHONUNBUFFERED"] = "1"  # the last log line of a running run is current
        shown = "cpu" if device is None else f"cuda:{device}"
        run.folder.mkdir(parents=True, exist_ok=True)
        begin = time.time()
        with open(run.log, "a") as log:
            log.write(f"\n{MARK}start host={socket.gethostname()} device={shown} start={begin:.3f} "
                      f"date={datetime.now().isoformat(timespec='seconds')}\n")  # fmt: skip
            log.flush()
            process = subprocess.Popen(run.command(self.python), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)  # fmt: skip
            log.write(f"\n{MARK}pid pid={process.pid}\n")
            log.flush()
            rc = process.wait()
            end = time.time()
            log.write(f"\n{MARK}exit rc={rc} end={end:.3f} date={datetime.now().isoformat(timespec='seconds')}\n")
        attempt = read_attempts(run.log)[-1]
        if rc != 0:
            return "failed", self.failure(run, attempt)
        if folder_status(run.folder).state != "finished":
            return "failed", f"train.py returned but {run.key} has no result.json; log: {run.log}"
        if run.kind == "search" and not (run.folder / "arch.json").is_file():
            return "failed", f"{run.key} finished without arch.json; delete the folder to search again"
        if "nothing to do" in "\n".join(run.log.read_text(errors="replace").splitlines()[-5:]):
            return "skipped", "finished run of this config"
        self.durations.append(end - begin)
        return "done", seconds(end - begin)

    @staticmethod
    def failure(run: Run, attempt: dict) -> str:
        message = "\n    ".join(attempt.get("error") or [attempt.get("last", "") or f"exit status {attempt.get('rc')}"])
        return f"{message}\n    log: {run.log}"

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
        counts = {s: sum(1 for o, _ in self.outcome.values() if o == s) for s in ("done", "skipped", "failed", "blocked")}
        self.say(f"sweep: {len(self.runs)} runs: {counts['done']} done, {counts['skipped']} skipped (finished before), "
                 f"{counts['failed']} failed, {counts['blocked']} not started (a run they need failed), "
                 f"{seconds(time.time() - self.started)}")  # fmt: skip
        bad = [(k, o) for k, o in self.outcome.items() if o[0] in ("failed", "blocked")]
        if bad:
            self.say("failures:")
            for key, (state, detail) in bad:
                self.say(f"  {state}: {key}\n    {detail}")
        return 1 if bad else 0


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
                        help="SEARCH_CFG+TRAIN_CFG, manual_<preset> or default (the protocol's pair)")  # fmt: skip
    parser.add_argument("--source", default="imagenet", help="cross-dataset source dataset (default imagenet)")
    parser.add_argument("--test-base", action="store_true", help="base-to-new: also evaluate the base classes (DPL_TEST_BASE=1)")
    parser.add_argument("--data", default=os.environ.get("DATA", ""), help="dataset root (default $DATA)")
    parser.add_argument("--output", default=os.environ.get("DPL_OUTPUT", ""),
                        help="output root (default $DPL_OUTPUT, else output/ in the repository)")  # fmt: skip
    parser.add_argument("--gpus", help="comma-separated GPU indices: one run per GPU at a time")
    parser.add_argument("--workers", type=int, help="N runs at a time on the CPU (default 1 without --gpus)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train.py (default this one)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, dependencies and folders; start nothing")
    parser.add_argument("--retry-failed", action="store_true", help="rerun runs whose last attempt failed (train.py resumes them)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
                      test_base=args.test_base, source=args.source)  # fmt: skip
        devices = parse_devices(args) if args.command == "run" and not args.dry_run else []
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(status_table(runs))
        return 0
    if args.dry_run:
        print(f"plan: {len(runs)} runs ({args.protocol}); nothing is started")
        for i, run in enumerate(runs, 1):
            needs = ", ".join(run.deps) if run.deps else "-"
            print(f"{i:3d}. {run.kind:6s} {run.label}\n     folder: {run.key}\n     needs:  {needs}\n"
                  f"     command: {shlex.join(run.command('python'))}")  # fmt: skip
        return 0
    shown = ", ".join("cpu" if d is None else f"cuda:{d}" for d in devices)
    print(f"sweep: {len(runs)} runs on {len(devices)} slot(s) ({shown}); logs in <run folder>/{SWEEP_LOG}", flush=True)
    return Pool(runs, devices, args.python, args.retry_failed).run()


if __name__ == "__main__":
    sys.exit(main())
