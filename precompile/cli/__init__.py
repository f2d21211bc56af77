"""``precompile``: look into, check and tidy a precompile cache from the shell.

    precompile ls [CACHE]                       packages: function, entries, size, times
    precompile inspect PACKAGE                  frames, guards, resume functions, artifacts
    precompile verify [CACHE|PACKAGE]           hashes, signatures, torch/python, sources
    precompile explain MODULE:QUALNAME [CACHE]  would the next call hit? if not, why not
    precompile warmup MODULE:FACTORY --spec S   compile every signature of a spec, save
    precompile coverage MODULE:FACTORY --spec S would every signature hit? exit 1 if not
    precompile prune [CACHE] --max-size 2G | --older-than 7d | --stale
    precompile export CACHE FILE                a cache's packages in one archive
    precompile import FILE [--cache CACHE]      an archive's packages into a cache
    precompile stats [--file FILE]              counters a run wrote to $PRECOMPILE_STATS_FILE
    precompile run [--] script.py|-m mod|CMD    a program with PRECOMPILE_AUTO=1 (cli/run.py)

``python -m precompile ...`` runs the same commands.

CACHE is a directory or a store URL and defaults the way the library does
($PRECOMPILE_CACHE_URL, $PRECOMPILE_CACHE_DIR, ~/.cache/precompile). PACKAGE is a key in
the cache (a unique prefix is enough) or the path of a ``.pcpkg`` file. Every read command
takes ``--json``.

Exit status: 0 fine, 1 problems found (``verify``), a miss (``explain``, ``coverage``) or a
signature that failed to compile (``warmup``), 2 the command
itself could not run (no such package, unreadable store, bad arguments).

Reading is side-effect free: package files are read without refreshing their "last used"
time, and ``verify`` locates user modules (on ``sys.path``, then in the current directory)
without importing them. Only ``explain``, ``warmup`` and ``coverage`` import the module they
are asked about (they need the live function). The CLI never changes ``sys.path``, and
everything it prints for people goes through ``text.emit``, which escapes what packages and
stores say.

Trust is the library's, exactly: a package is *trusted* only if the library would load it
(its store's owner/permission checks pass, and with ``PRECOMPILE_SIGNING_KEY`` set, its
signature verifies). Only trusted packages have guard state unpickled (``inspect``) or
identity checks resolved (``explain``); the others are still listed and checksummed, marked
UNTRUSTED with the reason. A package must also have been written for the key it is stored
under, and a ``.pcpkg`` file outside the configured cache is trusted only with
``inspect --trust`` (then as ``precompile.load`` would trust it).

Layout: ``parser`` (arguments), ``inventory`` (reading and trusting packages), ``checks``
(would this machine use one), ``listing`` (ls/inspect/verify), ``explain``, ``fleet``
(warmup/coverage), ``maintenance``
(prune/export/import), ``stats``, ``text`` (the human-readable output) and ``_library``
(the library internals the CLI relies on).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from precompile.counters import write_stats_file
from precompile.errors import SettingError

from . import text
from .common import EXIT_ERROR, EXIT_OK, CliError
from .parser import build_parser, parse_age, parse_size
from .run import run

__all__ = ["main", "build_parser", "parse_age", "parse_size", "write_stats_file"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (errors are printed, never raised)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"] and argv[1:2] not in (["-h"], ["--help"]):
        return _run(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return _call(args)


def _run(argv: list[str]) -> int:
    """``precompile run``: everything after it is the program's, not ours to parse."""
    try:
        return run(argv)
    except CliError as e:
        text.emit(f"precompile run: {e}", file=sys.stderr)
        return EXIT_ERROR


def _call(args: argparse.Namespace) -> int:
    """Run a parsed command; what stops it becomes an exit status and one line."""
    try:
        return int(args.func(args))
    except (CliError, SettingError) as e:  # SettingError: a PRECOMPILE_* variable is unusable
        text.emit(f"precompile {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `precompile ls | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
