"""scripts/install_into.sh on generated stand-in checkouts with CoOp's layout.

The stand-ins (train.py, a CoOp-like trainer, a clip package, configs, datasets) are written
here for the tests; nothing is copied from CoOp or MaPLe. The import tests run the installed
modules in a subprocess from the stand-in's root, with a ``clip`` package of the host's kind:
MaPLe's (``build_model(state_dict, design_details)`` insists on the dict) or CoOp's (one
argument).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import clip as openai_clip
import pytest
import torch

from trainers.dpl_core.tiny_clip import write_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
INSTALLER = REPO / "scripts" / "install_into.sh"
MARK = "# DPL: added by scripts/install_into.sh"
MANIFEST = ".dpl_install_manifest"
BACKUP = "train.py.dpl-backup"

# Files every install writes (source in this repo -> path in the host).
SHIPPED = {
    "trainers/dpl_common.py": "trainers/dpl_common.py",
    "trainers/dpl_search.py": "trainers/dpl_search.py",
    "trainers/dpl.py": "trainers/dpl.py",
    "scripts/parse_results.py": "scripts/dpl/parse_results.py",
    "scripts/plot_search.py": "scripts/dpl/plot_search.py",
    "scripts/plot_tokens.py": "scripts/dpl/plot_tokens.py",
    **{
        str(p.relative_to(REPO)): str(p.relative_to(REPO))
        for folder in ("trainers/dpl_core", "trainers/gram", "configs/trainers/DPLSearch", "configs/trainers/DPL",
                       "configs/architectures", "scripts/dpl")
        for p in sorted((REPO / folder).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    },
}
SYNTHETIC = ("datasets/synthetic.py", "datasets/coop_format.py", "configs/datasets/synthetic.yaml")

HOST_TRAIN_PY = '''\
"""Stand-in for a CoOp-style train.py (written for the DPL drop-in tests)."""
import argparse

from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import set_random_seed, setup_logger

import datasets.pets

import trainers.coop


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(args.dataset_config_file)
    cfg.merge_from_file(args.config_file)
    cfg.DATASET.ROOT = args.root
    cfg.OUTPUT_DIR = args.output_dir
    cfg.SEED = args.seed
    cfg.TRAINER.NAME = args.trainer
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup_cfg(args)
    set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    build_trainer(cfg).train()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--root", "--output-dir", "--trainer", "--config-file", "--dataset-config-file"):
        parser.add_argument(flag, default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    main(parser.parse_args())
'''

HOST_FILES = {
    "train.py": HOST_TRAIN_PY,
    "trainers/__init__.py": "",
    "trainers/coop.py": '''\
        """Stand-in for the host's own trainer."""
        from dassl.engine import TRAINER_REGISTRY, TrainerX


        @TRAINER_REGISTRY.register()
        class CoOp(TrainerX):
            """Registered like the host's CoOp; never trained in these tests."""
        ''',
    "datasets/__init__.py": "",
    "datasets/pets.py": '''\
        """Stand-in for one of the host's dataset readers."""
        from dassl.data.datasets import DATASET_REGISTRY, DatasetBase


        @DATASET_REGISTRY.register()
        class OxfordPets(DatasetBase):
            """Registered like the host's reader; never read in these tests."""
        ''',
    "configs/datasets/oxford_pets.yaml": 'DATASET:\n  NAME: "OxfordPets"\n',
    "configs/trainers/CoOp/vit_b16.yaml": 'OPTIM:\n  MAX_EPOCH: 50\n',
    "scripts/coop/main.sh": "#!/bin/bash\necho host launcher\n",
    "parse_test_res.py": '"""Stand-in for the host\'s result parser."""\n',
    "clip/__init__.py": '"""Placeholder clip package; the import tests write a working one."""\n',
}

# The host's clip package: OpenAI's clip, loaded under another name (this package shadows
# ``clip``), with the host's build_model from clip/model.py (MAPLE_ or COOP_CLIP_MODEL).
CLIP_INIT = '''\
"""Stand-in for a host checkout's copy of clip (written for the DPL drop-in tests)."""
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location(
    "_openai_clip", {init!r}, submodule_search_locations=[{folder!r}]
)
_openai = importlib.util.module_from_spec(_spec)
sys.modules["_openai_clip"] = _openai
_spec.loader.exec_module(_openai)

from _openai_clip import available_models, load, tokenize  # noqa: E402
from . import model  # noqa: E402

clip = sys.modules["_openai_clip.clip"]
'''
MAPLE_CLIP_MODEL = '''\
"""build_model as in MaPLe's copy: the design_details dict is required."""
from _openai_clip.model import *  # noqa: F401,F403
from _openai_clip import model as _vanilla

DESIGN_DETAILS_SEEN = []


def build_model(state_dict, design_details):
    if not isinstance(design_details, dict) or "trainer" not in design_details:
        raise TypeError(f"design_details must be MaPLe's dict, got {{design_details!r}}")
    DESIGN_DETAILS_SEEN.append(dict(design_details))
    return _vanilla.build_model(state_dict)
'''
# A clip package like CoOp's: OpenAI's, whose build_model takes the state dict only.
COOP_CLIP_MODEL = '''\
"""build_model as in CoOp's copy: one argument, a second one is a TypeError."""
from _openai_clip.model import *  # noqa: F401,F403
from _openai_clip import model as _vanilla

DESIGN_DETAILS_SEEN = []


def build_model(state_dict):
    return _vanilla.build_model(state_dict)
'''


def make_checkout(root: Path, **extra: str) -> Path:
    """Write a stand-in CoOp checkout (plus ``extra`` files, path -> text) under ``root``."""
    for rel, text in {**HOST_FILES, **extra}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "scripts/coop/main.sh").chmod(0o755)
    return root


def write_clip_package(checkout: Path, style: str) -> None:
    """Replace the stand-in's clip/ by OpenAI's clip with a MaPLe- or CoOp-style build_model."""
    folder = Path(openai_clip.__file__).parent
    init = CLIP_INIT.format(init=str(folder / "__init__.py"), folder=str(folder))
    (checkout / "clip/__init__.py").write_text(init)
    (checkout / "clip/model.py").write_text(MAPLE_CLIP_MODEL if style == "maple" else COOP_CLIP_MODEL)


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file (content, mode) and folder (None) below ``root``, by relative path."""
    tree: dict[str, tuple[bytes, int] | None] = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        tree[rel] = None if path.is_dir() else (path.read_bytes(), path.stat().st_mode)
    return tree


def install(checkout: Path, *flags: str, expect: int = 0) -> str:
    """Run the installer; assert its exit status; return stdout + stderr."""
    result = subprocess.run(["bash", str(INSTALLER), str(checkout), *flags], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output
    return output


def our_lines(checkout: Path) -> list[str]:
    return [line for line in (checkout / "train.py").read_text().splitlines() if MARK in line]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "CoOp")


def test_install_copies_our_files_and_adds_one_import_line(checkout):
    original_train_py = (checkout / "train.py").read_bytes()
    output = install(checkout)

    for src, dst in {**SHIPPED, **{p: p for p in SYNTHETIC}}.items():
        assert (checkout / dst).read_bytes() == (REPO / src).read_bytes(), dst
        assert re.search(rf"^  add +{re.escape(dst)}\b", output, re.M), f"{dst} not reported:\n{output}"
    assert (checkout / "scripts/dpl/parse_results.py").exists() and not (checkout / "scripts/parse_results.py").exists()
    # Our dataset readers other than the synthetic one are never copied.
    assert sorted(p.name for p in (checkout / "datasets").iterdir()) == ["__init__.py", "coop_format.py", "pets.py", "synthetic.py"]

    lines = (checkout / "train.py").read_text().splitlines()
    index = lines.index("import trainers.coop")
    assert lines[index + 1] == f"import trainers.dpl, trainers.dpl_search, datasets.synthetic  {MARK}"
    assert len(our_lines(checkout)) == 1
    assert (checkout / BACKUP).read_bytes() == original_train_py
    assert "train.py" in output and BACKUP in output

    manifest = (checkout / MANIFEST).read_text().splitlines()
    listed = {line.split("\t")[2]: line.split("\t")[1] for line in manifest if line.startswith("file\t")}
    expected = set(SHIPPED.values()) | set(SYNTHETIC)
    assert set(listed) == expected
    for path, digest in listed.items():
        assert hashlib.sha256((checkout / path).read_bytes()).hexdigest() == digest, path
    folders = {line.split("\t")[1] for line in manifest if line.startswith("dir\t")}
    assert {"trainers/dpl_core", "trainers/gram", "configs/trainers/DPLSearch", "configs/trainers/DPL", "configs/architectures",
            "scripts/dpl"} <= folders
    assert not folders & {"trainers", "configs", "configs/trainers", "scripts", "datasets"}, "host folders are not ours"


def test_installed_plot_script_reads_the_search_with_the_installed_core(checkout, tmp_path):
    install(checkout)
    search = tmp_path / "search"
    search.mkdir()
    arch = {"format": "dpl-architecture", "version": 1, "backbone": "ViT-B/16", "candidates": [0, 1, 2],
            "text_lengths": [2, 0], "image_lengths": [1, 0]}
    (search / "arch.json").write_text(json.dumps(arch))
    history = {"epoch": 1, "candidates": [0, 1, 2], "temperature": 1.0,
               "text": [[0.0, 0.1, 0.5], [0.3, 0.0, 0.0]], "image": [[0.0, 0.4, 0.1], [0.2, 0.0, 0.0]]}
    (search / "alpha_history.jsonl").write_text(json.dumps(history) + "\n")
    # Run from outside both trees, without this repository on the path: the script must find
    # the checkout's trainers/dpl_core two folders above itself.
    result = subprocess.run(
        [sys.executable, str(checkout / "scripts/dpl/plot_search.py"), str(search)],
        cwd=tmp_path, env=_subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (search / "mixture_weights.png").stat().st_size > 0 and (search / "search_evolution.png").stat().st_size > 0
    assert "disagrees" not in result.stderr


def test_reinstall_is_idempotent(checkout):
    install(checkout)
    after_first = snapshot(checkout)
    output = install(checkout)
    assert "Nothing to do" in output
    assert snapshot(checkout) == after_first
    assert len(our_lines(checkout)) == 1


def test_dry_run_prints_the_plan_and_changes_nothing(checkout):
    before = snapshot(checkout)
    output = install(checkout, "--dry-run")
    assert snapshot(checkout) == before
    assert re.search(r"^  add +trainers/dpl\.py$", output, re.M)
    assert re.search(r"^  edit +train\.py .*import trainers\.dpl, trainers\.dpl_search", output, re.M)
    assert "Dry run: nothing changed." in output

    install(checkout)
    installed = snapshot(checkout)
    output = install(checkout, "--uninstall", "--dry-run")
    assert snapshot(checkout) == installed
    assert re.search(r"^  remove +trainers/dpl\.py$", output, re.M)


@pytest.mark.parametrize(
    "removed, rewritten, message",
    [
        (["train.py"], {}, "no train.py"),
        ([], {"train.py": "import trainers.coop\n"}, "train.py has no extend_cfg"),
        ([], {"train.py": "def extend_cfg(cfg):\n    pass\n"}, "no 'import trainers.<name>' line"),
        (["trainers/__init__.py"], {}, "no trainers/ package"),
        (["clip", "configs"], {}, "neither a clip/ nor a configs/ folder"),
    ],
)
def test_refuses_what_is_not_a_checkout(checkout, removed, rewritten, message):
    for rel in removed:
        path = checkout / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for rel, text in rewritten.items():
        (checkout / rel).write_text(text)
    before = snapshot(checkout)
    output = install(checkout, expect=1)
    assert "does not look like a CoOp or MaPLe checkout" in output and re.search(message, output), output
    assert snapshot(checkout) == before


def test_refuses_missing_paths_and_the_dpl_repository(tmp_path):
    assert "is not a directory" in install(tmp_path / "nowhere", expect=1)
    assert "is the DPL repository itself" in install(REPO, expect=1)


def test_refuses_conflicting_files_without_changing_anything(checkout):
    (checkout / "trainers/dpl.py").write_text('"""The host\'s own file that happens to share our name."""\n')
    (checkout / "trainers/mine.py").write_text("class DPLSearch:\n    pass\n")
    before = snapshot(checkout)
    output = install(checkout, expect=1)
    assert "trainers/dpl.py exists and was not installed by DPL" in output
    assert "trainers/mine.py defines a trainer class named DPL or DPLSearch" in output
    assert "Nothing was changed" in output
    assert snapshot(checkout) == before


def test_edited_installed_file_is_a_conflict_and_survives_uninstall(checkout):
    install(checkout)
    edited = checkout / "configs/trainers/DPL/vit_b16_ep40_batch4.yaml"
    edited.write_text(edited.read_text() + "# my tweak\n")
    output = install(checkout, expect=1)
    assert "configs/trainers/DPL/vit_b16_ep40_batch4.yaml was installed by DPL but edited since" in output

    output = install(checkout, "--uninstall")
    assert re.search(r"^  keep +configs/trainers/DPL/vit_b16_ep40_batch4\.yaml", output, re.M)
    assert edited.read_text().endswith("# my tweak\n")
    assert not (checkout / "trainers/dpl.py").exists() and not (checkout / MANIFEST).exists()


def test_reinstall_updates_our_older_files_and_removes_dropped_ones(checkout):
    install(checkout)
    # Pretend an older version installed a different dpl.py and a launcher we no longer ship.
    older = checkout / "trainers/dpl.py"
    older.write_text('"""An older DPL trainer."""\n')
    dropped = checkout / "scripts/dpl/old_launcher.sh"
    dropped.write_text("#!/bin/bash\n")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (older, dropped)}
    manifest = (checkout / MANIFEST).read_text()
    manifest = re.sub(r"^file\t\w+\ttrainers/dpl\.py$", f"file\t{digest[older]}\ttrainers/dpl.py", manifest, flags=re.M)
    manifest += f"file\t{digest[dropped]}\tscripts/dpl/old_launcher.sh\n"
    (checkout / MANIFEST).write_text(manifest)

    output = install(checkout)
    assert re.search(r"^  update +trainers/dpl\.py$", output, re.M)
    assert re.search(r"^  remove +scripts/dpl/old_launcher\.sh", output, re.M)
    assert older.read_bytes() == (REPO / "trainers/dpl.py").read_bytes()
    assert not dropped.exists()
    assert "old_launcher" not in (checkout / MANIFEST).read_text()


def test_host_synthetic_reader_is_kept_and_not_imported(tmp_path):
    own = '"""The host\'s own synthetic reader."""\n'
    checkout = make_checkout(tmp_path / "CoOp", **{"datasets/synthetic.py": own})
    output = install(checkout)
    assert (checkout / "datasets/synthetic.py").read_text() == own
    assert not (checkout / "datasets/coop_format.py").exists()
    assert not (checkout / "configs/datasets/synthetic.yaml").exists()
    assert re.search(r"^  skip +datasets/synthetic\.py .*has its own datasets/synthetic\.py", output, re.M)
    assert our_lines(checkout) == [f"import trainers.dpl, trainers.dpl_search  {MARK}"]


def test_uninstall_restores_the_tree_and_keeps_later_host_edits(checkout):
    host_cache = checkout / "trainers/__pycache__/coop.cpython-311.pyc"
    host_cache.parent.mkdir()
    host_cache.write_bytes(b"host byte code")
    original = snapshot(checkout)
    install(checkout)
    # Byte code Python wrote for our modules goes with them; the host's stays.
    for rel in ("trainers/__pycache__/dpl.cpython-311.pyc", "trainers/dpl_core/__pycache__/config.cpython-311.pyc"):
        (checkout / rel).parent.mkdir(exist_ok=True)
        (checkout / rel).write_bytes(b"our byte code")
    output = install(checkout, "--uninstall")
    assert "DPL uninstalled." in output and BACKUP in output
    restored = snapshot(checkout)
    assert restored.pop(BACKUP) == original["train.py"]
    assert restored == original

    # With the host's own edit of train.py after the install, only our line goes.
    install(checkout)
    train_py = checkout / "train.py"
    train_py.write_text(train_py.read_text().replace("N_CTX = 16", "N_CTX = 4"))
    install(checkout, "--uninstall")
    assert train_py.read_text() == HOST_TRAIN_PY.replace("N_CTX = 16", "N_CTX = 4")
    assert "no DPL install found" in install(checkout, "--uninstall", expect=1)


def _subprocess_env() -> dict[str, str]:
    """The test environment (with the Dassl double when needed) minus this repository."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# CoOp's one-argument build_model is also covered in-process by test_clip_loader.py.
@pytest.mark.parametrize("clip_style", ["maple", pytest.param("coop", marks=pytest.mark.slow)])
def test_installed_trainers_import_and_build_clip_with_the_host_clip(checkout, tmp_path, clip_style):
    write_clip_package(checkout, clip_style)
    install(checkout)
    tiny = write_tiny_checkpoint(tmp_path / "tiny.pt")
    probe = textwrap.dedent(
        f"""
        import json
        import dassl.config
        from dassl.data.datasets import DATASET_REGISTRY
        from dassl.engine import TRAINER_REGISTRY

        import train  # the host's train.py, with the import line we added
        import clip
        import trainers.dpl, trainers.dpl_search
        from trainers.dpl_core.clip_loader import load_clip

        cfg = dassl.config.get_cfg_default()
        train.extend_cfg(cfg)
        model = load_clip("ViT-B/16", {tiny!r})
        print(json.dumps({{
            "trainers": sorted(TRAINER_REGISTRY._obj_map),
            "datasets": sorted(DATASET_REGISTRY._obj_map),
            "module": trainers.dpl.__file__,
            "clip": clip.__file__,
            "design_details": clip.model.DESIGN_DETAILS_SEEN,
            "blocks": len(model.transformer.resblocks),
            "host_key": cfg.TRAINER.COOP.N_CTX,
            "dpl_key": cfg.TRAINER.DPLSEARCH.MAX_LENGTH,
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=checkout, env=_subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"CoOp", "DPL", "DPLSearch"} <= set(seen["trainers"])
    assert {"OxfordPets", "Synthetic"} <= set(seen["datasets"])
    assert Path(seen["module"]).resolve() == (checkout / "trainers/dpl.py").resolve()
    assert Path(seen["clip"]).resolve() == (checkout / "clip/__init__.py").resolve()
    assert seen["blocks"] == 3 and seen["host_key"] == 16 and seen["dpl_key"] == 6
    if clip_style == "maple":
        assert [d["trainer"] for d in seen["design_details"]] == ["CoOp"]
    else:
        assert seen["design_details"] == []


@pytest.mark.slow
def test_search_and_training_run_with_the_host_train_py(checkout, tmp_path):
    write_clip_package(checkout, "maple")
    install(checkout)
    tiny = write_tiny_checkpoint(tmp_path / "tiny.pt")
    data = tmp_path / "data"

    def run(trainer: str, config: str, output: Path, *opts: str) -> str:
        argv = [
            "train.py", "--root", str(data), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/synthetic.yaml", "--config-file", config,
            "--output-dir", str(output), "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1",
            "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "TRAINER.DPL.CLIP_CHECKPOINT", tiny,
            "TRAINER.DPLSEARCH.MAX_LENGTH", "2", *opts,
        ]  # fmt: skip
        result = subprocess.run(
            [sys.executable, *argv], cwd=checkout, env=_subprocess_env(), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    search = tmp_path / "out/synthetic/DPLSearch/seed1"
    run("DPLSearch", "configs/trainers/DPLSearch/vit_b16_ep60_batch4.yaml", search)
    arch = json.loads((search / "arch.json").read_text())
    assert arch["format"] == "dpl-architecture" and len(arch["text_lengths"]) == 3

    trained = tmp_path / "out/synthetic/DPL/seed1"
    log = run("DPL", "configs/trainers/DPL/vit_b16_ep40_batch4.yaml", trained, "TRAINER.DPL.ARCH_FILE", str(search / "arch.json"))
    tail = log[log.rindex("Finish training"):]
    assert re.search(r"\* accuracy: [\d.]+%", tail)


# ----- --fix-dassl-warmup: the opt-in repair of the host's own Dassl trainers ------------------

FIX_MODULE = "trainers/dpl_dassl_fix.py"
FIX_LINE = "import trainers.dpl_dassl_fix  # DPL: Dassl fix added by scripts/install_into.sh --fix-dassl-warmup"

# Run from a stand-in checkout's root: imports the host's train.py (and so whatever lines the
# installer put there), then does what a host trainer does with Dassl: builds the configured
# schedule with a warm-up, trains 5 epochs, and after epoch 2 saves a checkpoint with
# save_checkpoint, reads it with load_checkpoint (--eval-only) and resumes from it.
HOST_SCHEDULE_PROBE = """
import json, tempfile
import torch
import dassl.optim.lr_scheduler, dassl.utils.torchtools
import train  # the host's train.py
from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, resume_from_checkpoint, save_checkpoint

report = {
    "warmup_base_replaced": dassl.optim.lr_scheduler._BaseWarmupScheduler.__bases__
    != (torch.optim.lr_scheduler._LRScheduler,),
    "load_replaced": dassl.utils.torchtools.torch is not torch,
}
for warmup, epochs in (("constant", 1), ("linear", 1), ("linear", 2)):
    optim_cfg = get_cfg_default().OPTIM
    optim_cfg.NAME, optim_cfg.LR, optim_cfg.MAX_EPOCH, optim_cfg.LR_SCHEDULER = "sgd", 0.002, 5, "cosine"
    optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE = epochs, warmup
    optim_cfg.WARMUP_CONS_LR, optim_cfg.WARMUP_MIN_LR = 1e-5, 2e-5
    model = torch.nn.Linear(4, 3)
    key = f"{warmup}{epochs}"
    try:
        optim = build_optimizer(model, optim_cfg)
        sched = build_lr_scheduler(optim, optim_cfg)
    except Exception as error:
        report[key] = f"{type(error).__name__}: {error}"
        continue
    lrs = []
    with tempfile.TemporaryDirectory() as folder:
        for epoch in range(5):
            lrs.append(optim.param_groups[0]["lr"])
            optim.step()
            sched.step()
            if epoch == 1:
                state = {"state_dict": model.state_dict(), "epoch": 2, "optimizer": optim.state_dict(),
                         "scheduler": sched.state_dict(), "val_result": 12.5}
                save_checkpoint(state, folder, model_name="model.pth.tar-2")
        checkpoint = load_checkpoint(folder + "/model.pth.tar-2")
        start = resume_from_checkpoint(folder, model, build_optimizer(model, optim_cfg), build_lr_scheduler(optim, optim_cfg))
    report[key] = {"lrs": lrs, "epoch": checkpoint["epoch"], "resumed_at": start}
print(json.dumps(report))
"""


def dassl_schedule(warmup: str, warmup_epochs: int, epochs: int = 5) -> list[float]:
    """The learning rate of each epoch under Dassl's warm-up schedulers (lr 0.002, cosine over
    5 epochs, WARMUP_RECOUNT as by default, constant 1e-5 / linear from 2e-5), as stock Dassl
    gives them on torch releases that still build them."""
    rates = []
    for epoch in range(epochs):
        if epoch < warmup_epochs:
            rates.append(1e-5 if warmup == "constant" else 2e-5 if epoch == 0 else 0.002 * epoch / warmup_epochs)
        else:
            rates.append(0.002 * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / 5)))
    return rates


def probe_host_schedules(checkout: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", HOST_SCHEDULE_PROBE],
        cwd=checkout, env=_subprocess_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def torch_needs(part: str) -> bool:
    """Whether the running torch breaks stock Dassl in ``part`` (what the fix then changes)."""
    if part == "warmup":
        return "verbose" not in inspect.signature(torch.optim.lr_scheduler._LRScheduler.__init__).parameters
    major, minor = (int(n) for n in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
    return (major, minor) >= (2, 6)


def test_dassl_fix_is_opt_in_recorded_and_taken_out_byte_for_byte(checkout):
    original = snapshot(checkout)
    install(checkout)
    plain = snapshot(checkout)
    assert not (checkout / FIX_MODULE).exists()
    assert "dpl_dassl_fix" not in (checkout / "train.py").read_text() and "option\t" not in (checkout / MANIFEST).read_text()

    output = install(checkout, "--fix-dassl-warmup")
    assert re.search(rf"^  add +{re.escape(FIX_MODULE)}$", output, re.M)
    assert "--unfix-dassl-warmup" in output
    assert (checkout / FIX_MODULE).read_bytes() == (REPO / FIX_MODULE).read_bytes()
    lines = (checkout / "train.py").read_text().splitlines()
    index = lines.index("import trainers.coop")
    assert lines[index + 1].endswith(MARK) and lines[index + 2] == FIX_LINE
    manifest = (checkout / MANIFEST).read_text().splitlines()
    assert "option\tfix-dassl-warmup" in manifest
    assert f"file\t{hashlib.sha256((REPO / FIX_MODULE).read_bytes()).hexdigest()}\t{FIX_MODULE}" in manifest
    assert (checkout / BACKUP).read_bytes() == original["train.py"][0], "the backup is train.py before any install"

    # A re-install (e.g. after updating DPL) keeps the recorded choice.
    fixed = snapshot(checkout)
    assert "Nothing to do" in install(checkout)
    assert snapshot(checkout) == fixed

    output = install(checkout, "--unfix-dassl-warmup")
    assert re.search(rf"^  remove +{re.escape(FIX_MODULE)} +\(the Dassl fix is taken out\)", output, re.M)
    assert snapshot(checkout) == plain, "--unfix-dassl-warmup restores the install without the fix, byte for byte"

    install(checkout, "--fix-dassl-warmup")
    install(checkout, "--uninstall")
    restored = snapshot(checkout)
    assert restored.pop(BACKUP) == original["train.py"]
    assert restored == original


def test_dassl_fix_flags_are_checked(checkout):
    assert "exclude each other" in install(checkout, "--fix-dassl-warmup", "--unfix-dassl-warmup", expect=2)
    assert "give it alone" in install(checkout, "--uninstall", "--fix-dassl-warmup", expect=2)
    before = snapshot(checkout)
    assert "no Dassl fix to take out" in install(checkout, "--unfix-dassl-warmup", expect=1)
    output = install(checkout, "--fix-dassl-warmup", "--dry-run")
    assert re.search(r"^  edit +train\.py .*import trainers\.dpl, trainers\.dpl_search.*; import trainers\.dpl_dassl_fix\)$", output, re.M)
    assert snapshot(checkout) == before

    # The host's own file at our path is a conflict like any other.
    (checkout / FIX_MODULE).write_text('"""The host\'s own module."""\n')
    assert f"{FIX_MODULE} exists and was not installed by DPL" in install(checkout, "--fix-dassl-warmup", expect=1)


def test_train_py_without_a_final_newline_is_restored_byte_for_byte(tmp_path):
    checkout = make_checkout(tmp_path / "CoOp", **{"train.py": "def extend_cfg(cfg):\n    pass\n\nimport trainers.coop"})
    original = (checkout / "train.py").read_bytes()
    install(checkout, "--fix-dassl-warmup")
    assert (checkout / "train.py").read_text().endswith(FIX_LINE)
    install(checkout, "--unfix-dassl-warmup")
    assert not (checkout / "train.py").read_text().endswith("\n")
    install(checkout, "--uninstall")
    assert (checkout / "train.py").read_bytes() == original


def test_dassl_fix_lets_the_host_warmup_schedule_build_load_and_resume(checkout):
    """With Dassl (the double reproduces stock Dassl's defects, or a real install): without the
    flag nothing of Dassl is changed; with it the host's warm-up schedules build and give Dassl's
    rates, and their checkpoints load and resume, on this torch."""
    write_clip_package(checkout, "coop")
    install(checkout)
    plain = probe_host_schedules(checkout)
    assert not plain["warmup_base_replaced"] and not plain["load_replaced"]
    if torch_needs("warmup"):
        for key in ("constant1", "linear1", "linear2"):
            assert "takes from 2 to 3 positional arguments but 4 were given" in plain[key], plain[key]

    install(checkout, "--fix-dassl-warmup")
    fixed = probe_host_schedules(checkout)
    assert fixed["warmup_base_replaced"] == torch_needs("warmup")
    assert fixed["load_replaced"] == torch_needs("weights_only")
    for warmup, epochs in (("constant", 1), ("linear", 1), ("linear", 2)):
        run = fixed[f"{warmup}{epochs}"]
        assert isinstance(run, dict), run
        assert run["lrs"] == pytest.approx(dassl_schedule(warmup, epochs), rel=1e-12)
        assert run["epoch"] == 2 and run["resumed_at"] == 2
