"""``scripts/setup.sh``: one command from a fresh clone to a working ``train.py``.

CI cannot reach git hosts, so the Dassl step is tested on its offline path (``DASSL_SRC``, a
local clone) with a stand-in whose ``setup.py`` imports numpy as Dassl's does: the step that
fails with pip's build isolation. The stand-in venv sees this environment's packages through a
``.pth`` file, so ``requirements.txt`` is already satisfied and nothing large is downloaded.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def run_setup(env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the Dassl double
    result = subprocess.run(["bash", str(SETUP)], env={**full, **env}, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DPL_TORCH": "gpu"}, "DPL_TORCH must be empty or 'cpu', got 'gpu'"),
        ({"DASSL_SRC": "/no/such/clone"}, "DASSL_SRC=/no/such/clone is not a Dassl.pytorch clone"),
        ({"PYTHON": "no-such-python3"}, "no 'no-such-python3' on PATH"),
    ],
)
def test_bad_settings_stop_before_anything_is_made(tmp_path, env, message):
    result = run_setup({"DPL_VENV": str(tmp_path / "venv"), **env}, check=False)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "venv").exists()


def stand_in_dassl(folder: Path) -> Path:
    (folder / "dassl").mkdir(parents=True)
    (folder / "dassl" / "__init__.py").write_text('__version__ = "0.6.3+standin"\n')
    (folder / "setup.py").write_text(textwrap.dedent("""\
        import numpy as np  # as Dassl's setup.py: fails where pip builds in an isolated environment
        from setuptools import find_packages, setup

        setup(name="dassl", version="0.6.3+standin", packages=find_packages(), include_dirs=[np.get_include()])
    """))
    return folder


@pytest.mark.slow
def test_setup_makes_a_venv_with_requirements_and_a_local_dassl(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # This environment's packages (torch, clip, ...) become visible to the new venv.
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (Path(purelib) / "outer_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    dassl = stand_in_dassl(tmp_path / "Dassl.pytorch")

    env = {"DPL_VENV": str(venv), "DASSL_SRC": str(dassl), "DASSL_DEPS": ""}
    first = run_setup(env)
    assert f"reusing the virtual environment in {venv}" in first.stdout
    assert f"Dassl from the local clone {dassl}" in first.stdout and "dassl 0.6.3+standin" in first.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import dassl; print(dassl.__file__)"],
                           capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})  # fmt: skip
    assert where.stdout.strip() == str(dassl / "dassl" / "__init__.py")
    assert "next: source" in first.stdout
    assert run_setup(env).returncode == 0, "running it again is harmless"


def test_the_pytest_header_says_which_dassl_is_in_use(using_dassl_double):
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "tests/test_architecture.py"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    header = [line for line in result.stdout.splitlines() if line.startswith("dassl: ")]
    expected = "dassl: the test double in " if using_dassl_double else "dassl: real Dassl "
    assert len(header) == 1 and header[0].startswith(expected), result.stdout[:2000]
