"""What a run folder holds and when its result is final: the one definition used by
``train.py``, the trainers, the launchers and ``scripts/parse_results.py``.

Besides Dassl's ``log.txt`` and checkpoints, a run folder of ours holds:

* ``run.json``, the record of what defines the run's result, written before the first
  checkpoint: the resolved config minus the keys that cannot change the result
  (:data:`IGNORED_KEYS`), the SHA-256 of the CLIP weights, the prompt architecture, and for an
  evaluation the checkpoint files it evaluates. A rerun into the folder must make the same
  record or it is refused, with the differing keys named (:func:`claim`).
* ``result.json``, written last and atomically once the run's result exists (the test
  accuracy, or the searched architecture). The folder is finished exactly when it is there.
* ``run_state/``, beside Dassl's ``<model>/`` folders: per saved epoch, what a resumed run needs
  to continue exactly as an uninterrupted one (random generators, data positions); its
  ``checkpoint`` pointer is written after every model's, so it names the last epoch whose files
  are all complete (:func:`committed_epoch`).

A folder without ``run.json`` (a CoOp/MaPLe trainer's run, or one made before these files
existed) is judged by its Dassl logs (:func:`parse_log`).

Imports only the standard library, so ``python -m trainers.dpl_core.run_folder`` answers the
launchers quickly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

RECORD_FILE = "run.json"
RESULT_FILE = "result.json"
RUN_STATE = "run_state"  # folder of the per-epoch resume state, beside Dassl's <model>/ folders
POINTER = "checkpoint"  # Dassl's name for the file naming a model folder's last checkpoint
EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
FORMAT = 1

# Config keys that cannot change a run's result, left out of its record. Each says why.
IGNORED_KEYS = {
    "OUTPUT_DIR": "where the run is written",
    "RESUME": "where a resume reads checkpoints from",
    "DATASET.ROOT": "where the data lives: a moved data tree holds the same data",
    "DATALOADER.NUM_WORKERS": "loader processes (they change which random crops are drawn, not the experiment)",
    "TRAIN.PRINT_FREQ": "how often progress is printed",
    "TRAIN.CHECKPOINT_FREQ": "how often checkpoints are saved; resuming from any of them is exact",
    "VERBOSE": "how much is printed",
    "INPUT.SIZE": "the loaded CLIP's input resolution (recorded by the weights' SHA-256); another size is refused",
    "TRAINER.DPL.CLIP_CHECKPOINT": "recorded as the SHA-256 of the weights it names",
    "TRAINER.DPL.CLIP_CACHE_DIR": "recorded as the SHA-256 of the weights found there",
    "TRAINER.DPL.ARCH_FILE": "recorded as the architecture the file holds",
    "TRAINER.DPL.CLASS_CHUNK_SIZE": "memory layout of the same text-tower computation",
    "TRAINER.DPL.ACTIVATION_CHECKPOINTING": "recomputes activations in backward; same values",
}
# Trainer nodes that define a run of ours: TRAINER.<other trainer> keys of a host checkout
# (CoOp, MaPLe, ...) are not read by our trainers.
OWN_NODES = {"DPL": ("DPL",), "DPLSearch": ("DPL", "DPLSEARCH")}

# Dassl's log lines (for folders without run.json).
LOG_NAME = re.compile(r"^log\.txt(?:-(.+))?$")  # Dassl names a restart's log log.txt-<timestamp>
ACCURACY = re.compile(r"^\* accuracy: ([-+0-9.eE]+)%$")
FINISH_LINES = ("Finish training", "Finished training")  # Dassl's wording; MaPLe's parser's
RESULT_LINE = "=> result"
PROGRESS = re.compile(r"^epoch \[\d+/\d+\]")  # Dassl's per-iteration training line


class RunFolderError(RuntimeError):
    """An output folder holds another run, or a finished one, and is left as it is."""


class RunFinished(RunFolderError):
    """The output folder already holds this very run, finished."""


# ----------------------------------------------------------------------------- files


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write ``path`` through a temporary file in its folder renamed into place: a kill at any
    moment leaves either the old file or the complete new one, never a truncated file."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def umask_mode(mode: int) -> int:
    """``mode`` minus the process umask: what ``open``/``mkdir`` would give. ``tempfile`` makes
    private (0600/0700) files and folders; run and data folders are often shared, so those are reset."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object at ``path``; None when the file is absent or not a complete object."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (remembered per process while its size and mtime hold)."""
    path = os.path.realpath(path)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


# ----------------------------------------------------------------------------- the record


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.loads(json.dumps(value))  # tuples -> lists, as read back from JSON
    return flat


def config_record(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as ``{"A.B.C": value}``, minus :data:`IGNORED_KEYS` and other
    trainers' ``TRAINER.<NAME>`` nodes."""
    own = OWN_NODES.get(cfg["TRAINER"]["NAME"], ("DPL", "DPLSEARCH"))
    record = {}
    for key, value in _flatten(cfg).items():
        parts = key.split(".")
        if key in IGNORED_KEYS or (parts[0] == "TRAINER" and len(parts) > 2 and parts[1] not in own):
            continue
        record[key] = value
    return record


def make_record(
    cfg: Mapping[str, Any],
    clip_sha256: str,
    architecture: Mapping[str, Any] | None = None,
    evaluates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of a training run (``evaluates`` None) or of an evaluation of saved checkpoints.

    Args:
        cfg: the resolved (yacs) config.
        clip_sha256: SHA-256 of the CLIP weights file.
        architecture: the prompt architecture as a dict (training stage), None for the search.
        evaluates: ``{"epoch": E, "sha256": {model: hash}}`` from :func:`evaluated_checkpoints`.
    """
    return {
        "format": FORMAT,
        "kind": "train" if evaluates is None else "eval",
        "config": config_record(cfg),
        "clip_sha256": clip_sha256,
        "architecture": None if architecture is None else dict(architecture),
        "evaluates": None if evaluates is None else dict(evaluates),
    }


def differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any], config_defaults: Mapping[str, Any] | None = None
) -> list[str]:
    """One line per key whose value differs: ``KEY: <in the folder> -> <this run>``.

    A config key absent from ``recorded`` (added by a later version) is no difference while
    this run leaves it at its value in ``config_defaults`` (a :func:`config_record` of the
    defaults), which is what the older code did.
    """
    old, new = _flatten(recorded), _flatten(current)
    defaults = {f"config.{key}": value for key, value in (config_defaults or {}).items()}
    lines = []
    for key in sorted(set(old) | set(new)):
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            name = key.removeprefix("config.")
            lines.append(f"{name}: {json.dumps(old.get(key, '<absent>'))} -> {json.dumps(new.get(key, '<absent>'))}")
    return lines


def claim(
    folder: str | os.PathLike, record: Mapping[str, Any], config_defaults: Mapping[str, Any] | None = None
) -> None:
    """Make ``folder`` the home of the run ``record`` describes, or refuse without touching it.

    A folder with no record and nothing of a run in it gets ``run.json``; one whose record equals
    ``record`` (up to keys added since, at their defaults: see :func:`differences`) is accepted
    (an unfinished run resumes there).

    Raises:
        RunFinished: the folder holds this run, finished.
        RunFolderError: the folder holds a different run (the message lists every
            differing key with both values), or holds checkpoints or a result of unknown origin.
    """
    folder = Path(folder)
    status = folder_status(folder)
    recorded = read_json(folder / RECORD_FILE)
    if recorded is None:
        if status.state == "finished" or _has_checkpoints(folder):
            what = "a finished run" if status.state == "finished" else "checkpoints"
            raise RunFolderError(
                f"{folder} holds {what} but no {RECORD_FILE} (made by an older version or another "
                "trainer), so it cannot be told whether they belong to this config. Choose another "
                "--output-dir, or delete the folder to run again."
            )
        write_json(folder / RECORD_FILE, record)
        return
    changed = differences(recorded, record, config_defaults)
    if changed:
        listed = "\n  ".join(changed)
        raise RunFolderError(
            f"{folder} holds a different run ({RECORD_FILE}); nothing was changed. Differences "
            f"(in the folder -> this run):\n  {listed}\n"
            "Choose another --output-dir for this config, or delete the folder to replace that run."
        )
    if status.state == "finished":
        raise RunFinished(f"{folder} already holds this run, finished ({status.summary()}); its results are kept")


def _has_checkpoints(folder: Path) -> bool:
    return any(folder.glob("*/model.pth.tar-*")) or any(folder.glob("*/model-best.pth.tar"))


# ----------------------------------------------------------------------------- checkpoints


def read_pointer(model_dir: str | os.PathLike) -> int | None:
    """The epoch a ``checkpoint`` pointer file names (``model.pth.tar-<E>``), if any."""
    try:
        with open(os.path.join(model_dir, POINTER)) as handle:
            match = EPOCH_FILE.match(handle.read().strip())
    except FileNotFoundError:
        return None
    return int(match.group(1)) if match else None


def committed_epoch(folder: str | os.PathLike) -> int | None:
    """The last epoch whose checkpoints and resume state are all complete (None: none saved)."""
    return read_pointer(os.path.join(folder, RUN_STATE))


def saved_epochs(folder: str | os.PathLike) -> list[int]:
    """Epochs saved for every model folder (``<model>/model.pth.tar-<E>``) of a run, sorted."""
    folder = Path(folder)
    per_model = [
        {int(m.group(1)) for f in sub.iterdir() if (m := EPOCH_FILE.match(f.name))}
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and sub.name != RUN_STATE and any(EPOCH_FILE.match(f.name) for f in sub.iterdir())
    ] if folder.is_dir() else []
    return sorted(set.intersection(*per_model)) if per_model else []


def last_saved_epoch(folder: str | os.PathLike) -> int:
    """The epoch a run's pointers name as its last save: the resume commit pointer, or Dassl's
    per-model pointers when they agree (folders made by Dassl's own saving).

    Raises:
        RunFolderError: no pointer names a saved epoch; the message lists the saved epochs.
    """
    epoch = committed_epoch(folder)
    if epoch is None:
        folder = Path(folder)
        pointers = {read_pointer(sub) for sub in folder.iterdir() if sub.is_dir() and sub.name != RUN_STATE} if folder.is_dir() else set()
        pointers.discard(None)
        if len(pointers) == 1:
            epoch = pointers.pop()
    if epoch is None or epoch not in saved_epochs(folder):
        epochs = ", ".join(map(str, saved_epochs(folder))) or "none"
        raise RunFolderError(
            f"{folder}: no checkpoint pointer names a saved epoch; give --load-epoch (saved epochs: {epochs})"
        )
    return epoch


def evaluation_of(model_dir: str, output_dir: str, epoch: int | None) -> dict[str, Any]:
    """What an ``--eval-only`` run evaluates: :func:`evaluated_checkpoints` of ``epoch`` (None:
    the last saved one) of the run in ``model_dir``.

    Raises:
        RunFolderError: no ``model_dir``, ``model_dir`` is the evaluation's own output folder,
            or the epoch is not saved there.
    """
    if not model_dir:
        raise RunFolderError("--eval-only needs --model-dir: the output folder of the training run to evaluate")
    if os.path.abspath(model_dir) == os.path.abspath(output_dir):
        raise RunFolderError(f"--output-dir is the run being evaluated ({model_dir}); give the evaluation its own --output-dir")
    return evaluated_checkpoints(model_dir, last_saved_epoch(model_dir) if epoch is None else epoch)


def evaluated_checkpoints(model_dir: str | os.PathLike, epoch: int) -> dict[str, Any]:
    """``{"epoch": E, "sha256": {model: hash}}`` of every ``<model>/model.pth.tar-<E>`` in ``model_dir``.

    Raises:
        RunFolderError: no model folder holds epoch ``E``; the message lists the saved epochs.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob(f"*/model.pth.tar-{epoch}")) if model_dir.is_dir() else []
    files = [f for f in files if f.parent.name != RUN_STATE]
    if not files:
        epochs = ", ".join(map(str, saved_epochs(model_dir))) or "none"
        raise RunFolderError(f"{model_dir}: no checkpoint of epoch {epoch} (saved epochs: {epochs})")
    return {"epoch": epoch, "sha256": {f.parent.name: sha256_file(f) for f in files}}


# ----------------------------------------------------------------------------- results


def write_result(folder: str | os.PathLike, result: Mapping[str, Any]) -> None:
    """Write ``result.json``: the last file of a run, which makes the folder finished."""
    write_json(Path(folder) / RESULT_FILE, {"format": FORMAT, **result})


@dataclass(frozen=True)
class LogOutcome:
    """What one Dassl log says.

    ``kind`` is ``train`` or ``eval`` (with an accuracy), ``untested`` (training finished but
    no test followed, e.g. ``TEST.NO_TEST`` in a search run) or ``unfinished``.
    """

    path: Path
    kind: str
    accuracy: float | None
    problem: str = ""


def parse_log(path: Path) -> LogOutcome:
    """Read a Dassl log of a folder without ``run.json``.

    A train log's result is the last ``* accuracy: X%`` after the last ``Finish training``. An
    eval log (``eval_only: True`` in the printed arguments; for logs without the argument block,
    one without training-progress lines) gives the last ``* accuracy`` after ``=> result``.
    Anything else is unfinished. Validation tests during training also print ``=> result``,
    which is why a train log without ``Finish training`` never counts as an eval log.
    """
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    finish = result = None
    eval_only: bool | None = None
    trained = False
    accuracies: list[tuple[int, float]] = []
    for i, line in enumerate(lines):
        if line in FINISH_LINES:
            finish = i
        elif line == RESULT_LINE:
            result = i
        elif line.startswith("eval_only:") and eval_only is None:
            eval_only = line.split(":", 1)[1].strip() == "True"
        elif PROGRESS.match(line):
            trained = True
        else:
            match = ACCURACY.match(line)
            if match:
                accuracies.append((i, float(match.group(1))))

    def last_after(start: int) -> float | None:
        after = [acc for i, acc in accuracies if i > start]
        return after[-1] if after else None

    if finish is not None:
        accuracy = last_after(finish)
        if accuracy is None:
            return LogOutcome(path, "untested", None, "'Finish training' but no '* accuracy' after it")
        return LogOutcome(path, "train", accuracy)
    is_eval = eval_only if eval_only is not None else not trained
    if is_eval and result is not None:
        accuracy = last_after(result)
        if accuracy is not None:
            return LogOutcome(path, "eval", accuracy)
        return LogOutcome(path, "unfinished", None, "'=> result' but no '* accuracy' after it")
    if is_eval:
        return LogOutcome(path, "unfinished", None, "evaluation without '=> result'")
    return LogOutcome(path, "unfinished", None, "training without 'Finish training'")


def log_order(path: Path) -> tuple[int, str]:
    """Sort key of a folder's logs: ``log.txt`` (the first run) first, then the restarts'
    ``log.txt-YYYY-MM-DD-HH-MM-SS`` by time."""
    suffix = LOG_NAME.match(path.name).group(1)
    return (0, "") if suffix is None else (1, suffix)


@dataclass(frozen=True)
class FolderStatus:
    """Whether a run folder is finished, and its result.

    ``state`` is ``finished``, ``unfinished`` or ``empty`` (no folder, or nothing of a run).
    ``kind`` is ``train``, ``eval``, ``search`` (with or without an accuracy), ``untested``
    (a log-only folder that finished without a test) or ``unfinished``.
    """

    folder: Path
    state: str
    kind: str
    accuracy: float | None
    source: Path | None  # result.json, or the log the result was read from
    problem: str = ""

    def summary(self) -> str:
        shown = "no test" if self.accuracy is None else f"accuracy {self.accuracy:.2f}%"
        return f"{self.kind}, {shown}, in {self.source}"


def folder_status(folder: str | os.PathLike) -> FolderStatus:
    """The one definition of a finished run.

    With ``run.json`` (our runs): finished exactly when ``result.json`` is complete, whatever
    the log says (a kill during the final test leaves ``Finish training`` in the log and no
    result). Without it (host trainers, older runs): the newest log with a result, per
    :func:`parse_log`; an accuracy line without a number is not a result.
    """
    folder = Path(folder)
    if (folder / RECORD_FILE).is_file():
        result = read_json(folder / RESULT_FILE)
        if result is None or not isinstance(result.get("accuracy", 0.0), (int, float, type(None))):
            return FolderStatus(folder, "unfinished", "unfinished", None, None, f"no complete {RESULT_FILE} yet")
        accuracy = result.get("accuracy")
        return FolderStatus(folder, "finished", str(result.get("kind", "train")), accuracy, folder / RESULT_FILE)
    logs = sorted((p for p in folder.iterdir() if p.is_file() and LOG_NAME.match(p.name)), key=log_order) if folder.is_dir() else []
    if not logs:
        state = "unfinished" if folder.is_dir() and _has_checkpoints(folder) else "empty"
        return FolderStatus(folder, state, "unfinished", None, None, "no log.txt")
    outcomes = [parse_log(p) for p in logs]
    for outcome in reversed(outcomes):
        if outcome.accuracy is not None:
            return FolderStatus(folder, "finished", outcome.kind, outcome.accuracy, outcome.path)
    newest = outcomes[-1]
    state = "finished" if newest.kind == "untested" else "unfinished"
    return FolderStatus(folder, state, newest.kind, None, newest.path, f"{newest.path.name}: {newest.problem}")


def main(argv: list[str] | None = None) -> int:
    """``python -m trainers.dpl_core.run_folder DIR``: print the folder's state; exit 0 when
    finished, 1 when not."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", help="a run folder (output directory of train.py)")
    status = folder_status(parser.parse_args(argv).folder)
    detail = status.summary() if status.state == "finished" else status.problem
    print(f"{status.state}: {detail}")
    return 0 if status.state == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
