"""What every command shares: the error that stops a command, exit statuses, and where
user modules are looked up."""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A command cannot run at all (exit status 2)."""


def user_module_dirs() -> tuple[str, ...]:
    """Where user modules not on sys.path are looked for: the current directory, as
    ``python -m`` would, but only *after* sys.path. The CLI never changes sys.path: a
    ``msgpack.py`` or ``torch.py`` in whatever directory it runs from must never shadow
    the real one (``verify`` would otherwise run it)."""
    return (os.getcwd(),)


def import_user_module(name: str) -> types.ModuleType:
    """Import ``name`` (``explain`` needs the live function) from sys.path, or, when its
    top-level package is not on sys.path, from :func:`user_module_dirs`, without adding
    them to sys.path: its own imports resolve the normal way."""
    top = name.partition(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        _import_from_user_dirs(top)
    return importlib.import_module(name)


def _import_from_user_dirs(top: str) -> None:
    """Import the top-level package ``top`` from :func:`user_module_dirs` into
    ``sys.modules`` (nothing when it is not there: the import that follows says so)."""
    spec = importlib.machinery.PathFinder.find_spec(top, list(user_module_dirs()))
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise
