"""Known bad inputs end ``train.py`` with one ``error: <message>`` line and a non-zero status,
not a traceback (the traceback comes with ``--debug``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_trainers import run_args
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
LENGTHS = ("TRAINER.DPL.TEXT_LENGTHS", "[1, 1, 1]", "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("errors")
    (base / "data").mkdir()
    return {"base": base, "clip": write_tiny_checkpoint(base / "tiny.pt"), "data": str(base / "data")}


def fail(args: list[str]) -> str:
    """Run train.py, expect exit status 1 with an error line and no traceback; return stderr."""
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def dpl_args(world, out: str, *extra: str, flags=()) -> list[str]:
    return run_args("DPL", world["base"] / out, world["data"], world["clip"], *LENGTHS, *extra, flags=flags)


def with_dataset(args: list[str], name: str) -> list[str]:
    args = list(args)
    args[args.index("--dataset-config-file") + 1] = str(REPO / "configs" / "datasets" / f"{name}.yaml")
    return args


def test_a_missing_dataset_folder(world):
    line = fail(with_dataset(dpl_args(world, "a"), "eurosat"))
    assert "EuroSAT: dataset folder not found" in line and str(Path(world["data"]) / "eurosat") in line


def test_a_missing_split_file(world):
    (Path(world["data"]) / "oxford_pets" / "images").mkdir(parents=True)
    line = fail(with_dataset(dpl_args(world, "b"), "oxford_pets"))
    assert "split_zhou_OxfordPets.json" in line and "annotations/trainval.txt" in line


def test_a_missing_or_corrupt_clip_file(world):
    line = fail(dpl_args(world, "c", "TRAINER.DPL.CLIP_CHECKPOINT", "/no/such/ViT-B-16.pt"))
    assert line == "error: CLIP checkpoint not found: /no/such/ViT-B-16.pt (set by TRAINER.DPL.CLIP_CHECKPOINT)"
    corrupt = world["base"] / "corrupt.pt"
    corrupt.write_bytes(Path(world["clip"]).read_bytes()[:5000])
    line = fail(dpl_args(world, "d", "TRAINER.DPL.CLIP_CHECKPOINT", str(corrupt)))
    assert f"could not read CLIP checkpoint {corrupt}" in line


def test_a_bad_arch_file_and_a_bad_key(world):
    arch = world["base"] / "arch.json"
    arch.write_text('{"text_lengths": [1, 2')
    args = run_args("DPL", world["base"] / "e", world["data"], world["clip"], "TRAINER.DPL.ARCH_FILE", str(arch))
    assert str(arch) in fail(args)
    line = fail(dpl_args(world, "f", "TRAINER.DPL.PROMPT_LENGHT", "4"))
    assert "TRAINER.DPL.PROMPT_LENGHT" in line and "Check its spelling" in line


def test_eval_only_without_a_model(world):
    line = fail(dpl_args(world, "g", flags=("--eval-only",)))
    assert line == "error: --eval-only needs --model-dir: the output folder of the training run to evaluate"
    assert not (world["base"] / "g").exists()


def test_a_corrupt_image_is_named(world):
    data = world["base"] / "corrupt_data"
    train_py = [sys.executable, "train.py", *dpl_args(world, "h", "OPTIM.MAX_EPOCH", "1", flags=("--no-train",))]
    train_py[train_py.index("--root") + 1] = str(data)
    subprocess.run(train_py, cwd=REPO, check=True, capture_output=True)  # writes the synthetic images
    for image in (data / "synthetic" / "images").rglob("*.png"):
        image.write_bytes(b"not a png")
    args = dpl_args(world, "i", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "1")
    args[args.index("--root") + 1] = str(data)
    line = fail(args)
    assert line.startswith(f"error: cannot read image {data / 'synthetic' / 'images'}") and ".png: cannot identify" in line
    shutil.rmtree(data)


def test_debug_shows_the_traceback(world):
    args = dpl_args(world, "j", "TRAINER.DPL.CLIP_CHECKPOINT", "/no/such.pt", flags=("--debug",))
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr and "CLIPLoadError" in result.stderr


@pytest.mark.parametrize("command", [["train.py", "--help"], ["scripts/benchmark.py", "--help"]])
def test_no_deprecation_warning_from_the_clip_package(command):
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert "pkg_resources" not in result.stderr, result.stderr
