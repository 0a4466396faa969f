#!/usr/bin/env bash
# Set up everything train.py needs, in one command: a virtual environment, a current pip, the
# requirements, and Dassl (not on PyPI) at a pinned commit.
#
#   bash scripts/setup.sh            # then: source .venv/bin/activate
#
# Environment (all optional):
#   DPL_VENV      where the virtual environment goes (default: .venv in the repository)
#   PYTHON        interpreter that creates it (default: python3; 3.9 or newer)
#   DPL_TORCH     "cpu" installs the CPU-only torch build first (about 0.2 GB instead of the
#                 several GB of CUDA libraries PyPI's default build brings); empty (default):
#                 whatever `pip install torch` gives on this machine
#   DASSL_SRC     a local Dassl.pytorch clone to install instead of cloning it (offline
#                 clusters); it is used as it is, whatever commit it is at
#   DASSL_COMMIT  the commit cloned when DASSL_SRC is not set (default: the one tested here)
#   DASSL_DEPS    packages Dassl imports at import time that are not in requirements.txt
#                 (default: "gdown scikit-learn future wilds==1.2.2")
#
# Running it again reuses the environment and the clone and installs only what is missing.
set -euo pipefail

DASSL_URL=https://github.com/KaiyangZhou/Dassl.pytorch.git
DASSL_PINNED=c61a1b570ac6333bd50fb5ae06aea59002fb20bb  # Dassl 0.6.3, the version this project is tested on

die() {
  echo "error: $*" >&2
  exit 2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DPL_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
DASSL_COMMIT=${DASSL_COMMIT:-$DASSL_PINNED}
DASSL_DEPS=${DASSL_DEPS-gdown scikit-learn future wilds==1.2.2}
case ${DPL_TORCH:-} in
  "" | cpu) ;;
  *) die "DPL_TORCH must be empty or 'cpu', got '$DPL_TORCH'" ;;
esac
if [[ -n ${DASSL_SRC:-} && ! -f $DASSL_SRC/setup.py ]]; then
  die "DASSL_SRC=$DASSL_SRC is not a Dassl.pytorch clone (no setup.py there)"
fi
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; set PYTHON to a Python 3.9+ interpreter"

if [[ ! -x $VENV/bin/python ]]; then
  echo "[setup] virtual environment: $VENV"
  "$PYTHON" -m venv "$VENV"
else
  echo "[setup] reusing the virtual environment in $VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# Old pips (23.x) build Dassl in an isolated environment without numpy, which its setup.py imports.
echo "[setup] upgrading pip"
"${PIP[@]}" install --quiet --upgrade pip wheel

if [[ ${DPL_TORCH:-} == cpu ]]; then
  echo "[setup] CPU-only torch"
  "${PIP[@]}" install --quiet torch torchvision --index-url https://download.pytorch.org/whl/cpu
fi
echo "[setup] requirements.txt"
"${PIP[@]}" install --quiet -r "$ROOT/requirements.txt"

if [[ -n ${DASSL_SRC:-} ]]; then
  DASSL_DIR=$(cd "$DASSL_SRC" && pwd)
  echo "[setup] Dassl from the local clone $DASSL_DIR"
else
  DASSL_DIR=$ROOT/third_party/Dassl.pytorch
  if [[ ! -d $DASSL_DIR/.git ]]; then
    echo "[setup] cloning Dassl into $DASSL_DIR"
    git clone --quiet "$DASSL_URL" "$DASSL_DIR" ||
      die "could not clone $DASSL_URL; offline, clone it elsewhere and set DASSL_SRC=/path/to/Dassl.pytorch"
  fi
  git -C "$DASSL_DIR" checkout --quiet "$DASSL_COMMIT" ||
    die "Dassl commit $DASSL_COMMIT not found in $DASSL_DIR (git -C $DASSL_DIR fetch, or set DASSL_COMMIT)"
  echo "[setup] Dassl at commit $DASSL_COMMIT"
fi
if [[ -n $DASSL_DEPS ]]; then
  read -r -a deps <<<"$DASSL_DEPS"
  echo "[setup] what Dassl imports: ${deps[*]}"
  "${PIP[@]}" install --quiet "${deps[@]}"
fi
# --no-deps: Dassl's requirements.txt pins linters and tb-nightly that training does not need.
"${PIP[@]}" install --quiet --no-build-isolation --no-deps -e "$DASSL_DIR"

"$VENV/bin/python" -W "ignore::UserWarning" -c "import dassl, torch, clip; print(f'[setup] done: torch {torch.__version__}, dassl {dassl.__version__} from {dassl.__path__[0]}')"
echo "[setup] next: source $VENV/bin/activate && bash scripts/dpl/demo.sh && python -m pytest"
