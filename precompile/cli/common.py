"""What every command shares: the error that stops a command, exit statuses, and where
user modules are looked up."""
from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A command cannot run at all (exit status 2)."""


def add_cwd_to_path() -> None:
    """Find the user's modules the way ``python -m`` would: from the current directory."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
