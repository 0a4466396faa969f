"""DPL's model code: architecture format, CLIP loading, prompted encoders, config keys, text
templates (data), a tiny random CLIP (demo and tests).

Imports only torch, clip and yacs; the Dassl trainers live beside this package. Importing any
of its modules checks first that the installed torch is recent enough (torch itself is not
imported for that: the run-folder and architecture modules serve scripts that need no torch).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import warnings

# OpenAI's clip package and Dassl's WILDS dependency (outdated) import pkg_resources, whose
# deprecation warning would open every command's output; our modules import clip only after
# this package's __init__ has run, and train.py imports this package before Dassl.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

# The oldest torch the model code runs on (measured; before 2.0 attention takes the written-out
# path of prompted_clip.softmax_attention). The trainers need 2.0 (requirements.txt): torch
# 1.13's weights_only loading cannot read the floats in their checkpoints.
MIN_TORCH = (1, 13)


def check_torch_version(version: str) -> None:
    """Raise ImportError naming ``version`` and the minimum when it is older than :data:`MIN_TORCH`.

    Args:
        version: a torch version string, e.g. ``"1.12.1+cu113"`` or ``"2.5.1"``.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < MIN_TORCH:
        minimum = ".".join(map(str, MIN_TORCH))
        raise ImportError(
            f"DPL needs torch >= {minimum} (its trainers >= 2.0), but torch {version} is installed; "
            "install a newer torch with a matching torchvision (see requirements.txt)"
        )


def _installed_torch_version() -> str | None:
    """The version of the torch this process uses: the imported module's, else the installed one's."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return getattr(torch, "__version__", None)
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None  # no torch: the modules that need it fail on their own import


_torch_version = _installed_torch_version()
if _torch_version is not None:
    check_torch_version(_torch_version)
