"""Mirrors ``dassl.utils.logger``: tee of ``sys.stdout`` into a log file."""

import os
import os.path as osp
import sys
import time
from typing import Any, Optional

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """Mirrors Dassl's ``Logger``: writes go to the wrapped console and to a file opened with ``"w"``."""

    def __init__(self, fpath: Optional[str] = None) -> None:
        """Wrap the current ``sys.stdout``; open ``fpath`` for writing (creating its directory) if given."""
        self.console = sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            self.file = open(fpath, "w")

    def __del__(self) -> None:
        """Close on garbage collection, as Dassl does (this closes the wrapped console too)."""
        self.close()

    def __enter__(self) -> None:
        """Context-manager entry, a no-op as in Dassl."""

    def __exit__(self, *args: Any) -> None:
        """Close on context exit, as in Dassl."""
        self.close()

    def write(self, msg: str) -> None:
        """Write ``msg`` to the console and the file."""
        self.console.write(msg)
        if self.file is not None:
            self.file.write(msg)

    def flush(self) -> None:
        """Flush both streams and fsync the file, as Dassl does."""
        self.console.flush()
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the console and the file; Dassl closes the wrapped console as well."""
        self.console.close()
        if self.file is not None:
            self.file.close()


def setup_logger(output: Optional[str] = None) -> None:
    """Tee stdout to ``output`` (a .txt/.log path) or ``output/log.txt``, never overwriting, as in Dassl."""
    if output is None:
        return
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        # Dassl keeps an existing log and writes next to it with a timestamp suffix.
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    sys.stdout = Logger(fpath)
