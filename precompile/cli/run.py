"""``run``: a program with ``PRECOMPILE_AUTO=1``, every ``torch.compile`` in it cached.

    precompile run [--] script.py ARGS        the script, in this process, as python runs it
    precompile run [--] -m module ARGS        the module, as ``python -m`` runs it
    precompile run [--] COMMAND ARGS          any command (torchrun, pytest, accelerate
                                              launch, bash -c ...), with the variable set

A script or module runs in this process, with ``sys.argv`` and ``sys.path[0]`` as python
sets them, after the mode is on here (``precompile.auto.boot``); any other command replaces
this process with the variable in its environment, and the Python processes it starts turn
the mode on through the ``precompile-auto.pth`` file the package installed. Either way
every child process inherits the variable.
"""
from __future__ import annotations

import os
import runpy
import site
import sys
from collections.abc import Callable
from typing import Any

from precompile import settings

from .common import CliError

PTH_NAME = "precompile-auto.pth"
USAGE = ("usage: precompile run [--] script.py ARGS | -m module ARGS | COMMAND ARGS\n"
         "Runs the program with PRECOMPILE_AUTO=1: every torch.compile in it and in the "
         "processes it starts is cached.")


def run(argv: list[str]) -> int:
    """Run ``argv`` under the mode; its exit status (a script's SystemExit passes through)."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        return _usage(asked=bool(argv))
    os.environ[settings.AUTO] = "1"
    settings.share_auto_run()  # every process under this command adds to one stats file
    return _start(argv)


def _start(argv: list[str]) -> int:
    """The program as it was named: a module or a script runs in this process, anything
    else replaces it."""
    if argv[0] == "-m":
        return _run_module(argv)
    if argv[0].endswith(".py") and os.path.isfile(argv[0]):
        return _run_script(argv)
    return _exec_command(argv)


def _usage(*, asked: bool) -> int:
    """The usage: on stdout when asked for (status 0), else on stderr (status 2)."""
    print(USAGE, file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


def _run_script(argv: list[str]) -> int:
    """``script.py ARGS`` in this process, as ``python script.py`` runs it."""
    path = argv[0]
    return _in_process(lambda: runpy.run_path(path, run_name="__main__"), argv,
                       os.path.dirname(os.path.abspath(path)))


def _run_module(argv: list[str]) -> int:
    """``-m module ARGS`` in this process, as ``python -m`` runs it."""
    if len(argv) < 2:
        raise CliError("run -m needs a module name")
    return _in_process(lambda: runpy.run_module(argv[1], run_name="__main__", alter_sys=True),
                       argv[1:], os.getcwd())


def _exec_command(argv: list[str]) -> int:
    """Replace this process with any other command, the variable in its environment; its
    Python processes turn the mode on through the ``.pth`` file (warned when missing)."""
    if not pth_installed():
        print(f"precompile run: warning: {PTH_NAME} is not in site-packages, so Python "
              "processes started by this command will not cache torch.compile; reinstall "
              "precompile (pip install precompile), or run a script as "
              "`precompile run script.py`", file=sys.stderr)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise CliError(f"cannot run {argv[0]}: {e.strerror}") from e
    return 0  # not reached: execvp replaces this process


def _in_process(start: Callable[[], Any], argv: list[str], path0: str) -> int:
    from precompile import auto

    auto.boot()
    sys.argv = list(argv)
    sys.path.insert(0, path0)  # what python puts first for a script (or the cwd for -m)
    start()
    return 0


def pth_installed() -> bool:
    """Whether the ``.pth`` that boots the mode in new Python processes is installed."""
    # Either function may be missing (older virtualenvs' site module).
    dirs = [*getattr(site, "getsitepackages", list)(),
            getattr(site, "getusersitepackages", lambda: None)()]
    return any(isinstance(d, str) and os.path.isfile(os.path.join(d, PTH_NAME)) for d in dirs)
