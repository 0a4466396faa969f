"""Real ``train.py`` processes killed with SIGKILL and started again with the same command.

A run killed after a checkpoint, in the middle of an epoch, during the final test or right before
its result is written, and then rerun (as often as it was killed), must end exactly where one
uninterrupted run ends: the same final tensors, optimizer states, ``arch.json``,
``alpha_history.jsonl`` and accuracy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_trainers import run_args
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint
from trainers.dpl_core.run_folder import folder_status

REPO = Path(__file__).resolve().parents[1]
KILLABLE = Path(__file__).resolve().parent / "killable_train.py"
EPOCHS = "3"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    return {"base": base, "clip": write_tiny_checkpoint(base / "tiny.pt"), "data": str(base / "data")}


def argv(trainer: str, out: Path, world, *extra: str) -> list[str]:
    return run_args(trainer, out, world["data"], world["clip"], "OPTIM.MAX_EPOCH", EPOCHS, *extra)


def run_to_the_end(args: list[str]) -> str:
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def kill_at(pause: str, args: list[str], flag: Path) -> None:
    """Start ``train.py`` (through killable_train.py), wait until it stops at ``pause``, SIGKILL it."""
    flag.unlink(missing_ok=True)
    env = {**os.environ, "DPL_PAUSE_AT": pause, "DPL_PAUSE_FLAG": str(flag)}
    process = subprocess.Popen([sys.executable, str(KILLABLE), *args], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not flag.exists():
        if process.poll() is not None:
            raise AssertionError(f"train.py ended before reaching {pause}: {process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"train.py did not reach {pause}"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


def final_state(folder: Path) -> dict[str, dict]:
    """Every registered model's last checkpoint: learned tensors and optimizer state."""
    states = {}
    for model_dir in sorted(p for p in folder.iterdir() if (p / "checkpoint").is_file() and p.name != "run_state"):
        states[model_dir.name] = torch.load(model_dir / f"model.pth.tar-{EPOCHS}", weights_only=True)
    return states


def max_difference(a, b) -> float:
    """Largest absolute difference between two nested structures of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max([max_difference(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max([max_difference(x, y) for x, y in zip(a, b)] or [0.0])
    assert a == b
    return 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "trainer, extra, kills",
    [
        ("DPLSearch", (), ("checkpoint:1", "step:4", "result")),
        ("DPL", ("TRAINER.DPL.TEXT_LENGTHS", "[2, 0, 1]", "TRAINER.DPL.IMAGE_LENGTHS", "[1, 3]"),
         ("step:3", "checkpoint:2", "final-test")),
    ],
)  # fmt: skip
def test_killed_and_rerun_equals_one_uninterrupted_run(world, trainer, extra, kills):
    whole, cut = world["base"] / f"{trainer}_whole", world["base"] / f"{trainer}_cut"
    run_to_the_end(argv(trainer, whole, world, *extra))

    for pause in kills:
        kill_at(pause, argv(trainer, cut, world, *extra), world["base"] / "paused")
        assert folder_status(cut).state == "unfinished", f"killed at {pause}, the folder must not count as done"
    log = run_to_the_end(argv(trainer, cut, world, *extra))
    if kills[-1] in ("final-test", "result"):
        assert "Previous epoch: 3" in log and "epoch [" not in log.split("Previous epoch: 3")[1], "only the end reruns"

    expected, resumed = final_state(whole), final_state(cut)
    difference = max_difference(expected, resumed)
    print(f"{trainer}: max abs difference after {len(kills)} kills and reruns: {difference:.3g}")
    assert difference <= 1e-6
    for name in ("arch.json", "alpha_history.jsonl"):
        if (whole / name).exists():
            assert (cut / name).read_text() == (whole / name).read_text()
    result, result_cut = (json.loads((f / "result.json").read_text()) for f in (whole, cut))
    assert result_cut == result
    assert folder_status(cut).state == "finished"
    assert "Loaded CLIP weights from" in (cut / "log.txt").read_text(), "library logs reach log.txt"
