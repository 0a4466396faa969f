"""Shared pytest setup: make the repo importable and fall back to the Dassl test double.

Dassl is not on PyPI, so CI cannot install it. When ``import dassl`` finds no Dassl at all,
``tests/dassl_double`` (a small stand-in with Dassl's module paths and semantics) goes first on
``sys.path`` and on ``PYTHONPATH``, so subprocesses such as ``python train.py ...`` launched by
tests use it too. When a real Dassl is importable the double stays off the path.
"""

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DASSL_DOUBLE_DIR = Path(__file__).resolve().parent / "dassl_double"


def _prepend_import_path(path: Path) -> None:
    """Put ``path`` first on ``sys.path`` (this process) and ``PYTHONPATH`` (child processes)."""
    entry = str(path)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != entry]
    os.environ["PYTHONPATH"] = os.pathsep.join([entry, *current])


def _activate_dassl_double() -> None:
    """Import Dassl, or put the double on the import paths when no Dassl is installed.

    A Dassl that is installed but fails to import (e.g. a missing dependency) is reported rather
    than silently replaced by the double.
    """
    try:
        importlib.import_module("dassl")
    except ModuleNotFoundError as err:
        if err.name != "dassl":
            raise
        _prepend_import_path(DASSL_DOUBLE_DIR)
        importlib.import_module("dassl")


_prepend_import_path(REPO_ROOT)
_activate_dassl_double()
# Judged by where dassl came from: a child process inherits the double through PYTHONPATH.
USING_DASSL_DOUBLE: bool = DASSL_DOUBLE_DIR in Path(importlib.import_module("dassl").__file__).resolve().parents


def pytest_report_header(config) -> str:
    """Say in the header which Dassl the suite runs against, and from where."""
    import dassl

    where = os.path.dirname(dassl.__file__)
    if USING_DASSL_DOUBLE:
        return f"dassl: the test double in {where} (no Dassl installed)"
    return f"dassl: real Dassl {getattr(dassl, '__version__', '?')} from {where}"


@pytest.fixture(scope="session")
def using_dassl_double() -> bool:
    """Whether the tests run against the Dassl test double (True) or a real Dassl install (False)."""
    return USING_DASSL_DOUBLE


# --------------------------------------------------------------------------------------------
# Project fixtures (added by the lead) go below this line.
# --------------------------------------------------------------------------------------------


# A train.py that records its arguments and leaves what a run leaves: logs, checkpoints, run.json,
# for DPLSearch arch.json, and result.json last. A folder with result.json is left alone, as
# train.py leaves a finished run of the same config. FAKE_STOP=<trainer> makes that trainer stop
# after epoch 1.
FAKE_TRAIN_PY = r'''
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "argv": args}) + "\n")
out = args[args.index("--output-dir") + 1]
trainer = args[args.index("--trainer") + 1]
first_key = next((i for i, a in enumerate(args) if a[:1].isupper() and "." in a), len(args))  # a preset's evaluation has none
opts = dict(zip(args[first_key::2], args[first_key + 1::2]))
if os.path.exists(os.path.join(out, "result.json")):
    sys.exit(0)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump({"argv": args}, f)
log = os.path.join(out, "log.txt")
n = 0
while os.path.exists(log):
    n += 1
    log = os.path.join(out, f"log.txt-{n}")
stop = os.environ.get("FAKE_STOP") == trainer
with open(log, "w") as f:
    if "--eval-only" not in args:
        epochs = 1 if stop else int(opts.get("OPTIM.MAX_EPOCH", 2))
        os.makedirs(os.path.join(out, "prompt_learner"), exist_ok=True)
        for epoch in range(1, epochs + 1):
            open(os.path.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), "w").close()
            f.write(f"epoch [{epoch}/{opts.get('OPTIM.MAX_EPOCH', 2)}]\n")
        if stop:
            sys.exit(1)
        if trainer == "DPLSearch":
            open(os.path.join(out, "arch.json"), "w").close()
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"kind": "train", "accuracy": 50.0}, f)
'''


@pytest.fixture()
def checkout(tmp_path):
    """A CoOp/MaPLe-like checkout holding our launchers in scripts/dpl/ and a recording train.py."""
    root = tmp_path / "CoOp"
    shutil.copytree(REPO_ROOT / "scripts" / "dpl", root / "scripts" / "dpl")
    shutil.copytree(REPO_ROOT / "trainers" / "dpl_core", root / "trainers" / "dpl_core")
    (root / "trainers" / "__init__.py").write_text("")
    shutil.copytree(REPO_ROOT / "configs", root / "configs")
    (root / "train.py").write_text(FAKE_TRAIN_PY)
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    return root


@pytest.fixture(scope="module")
def clip4():
    """A tiny CLIP with 4 blocks per tower, so deep prompts can stop before the end."""
    from trainers.dpl_core.tiny_clip import make_tiny_clip

    return make_tiny_clip(seed=0, vision_layers=4, transformer_layers=4).float().eval()


@pytest.fixture(scope="module")
def images():
    """Two random images at the tiny CLIP's resolution."""
    import torch

    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
