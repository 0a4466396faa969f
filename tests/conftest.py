"""Shared pytest setup: make the repo importable and fall back to the Dassl test double.

Dassl is not on PyPI, so CI cannot install it. When ``import dassl`` finds no Dassl at all,
``tests/dassl_double`` (a small stand-in with Dassl's module paths and semantics) goes first on
``sys.path`` and on ``PYTHONPATH``, so subprocesses such as ``python train.py ...`` launched by
tests use it too. When a real Dassl is importable the double stays off the path.
"""

import importlib
import os
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
