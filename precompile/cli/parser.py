"""The ``precompile`` command line: its arguments, and the size/age values they take."""
from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from .explain import cmd_explain
from .fleet import add_commands as add_fleet_commands
from .listing import cmd_inspect, cmd_ls, cmd_verify
from .maintenance import RECENT_SECONDS, cmd_export, cmd_import, cmd_prune
from .stats import cmd_stats

# add(name, help, json_flag=True): a subcommand's parser (``--json`` added unless told not)
AddCommand = Callable[..., argparse.ArgumentParser]

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GiB``, ``100k``, ``0``, ``123`` (bytes). Units are 1024-based."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 500M, 2G, 100K or 0")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w``; a bare number is seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"bad age {text!r}: use e.g. 7d, 12h, 30m or 45s")
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="precompile", description="Look into, check and tidy a precompile cache.",
        epilog="CACHE defaults to $PRECOMPILE_CACHE_URL, $PRECOMPILE_CACHE_DIR or "
               "~/.cache/precompile. Exit status: 0 ok, 1 problems/miss, 2 error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    _add_reading_commands(add)
    add_fleet_commands(add)
    _add_changing_commands(add)
    _add_run_and_stats(add)
    return parser


def _add_reading_commands(add: AddCommand) -> None:
    """``ls``, ``inspect``, ``verify``, ``explain``: what a cache holds (listing.py, explain.py)."""
    p = add("ls", "list the packages in a cache")
    p.add_argument("cache", nargs="?", metavar="CACHE")
    p.set_defaults(func=cmd_ls)

    p = add("inspect", "show one package: frames, guards, resume functions, artifacts, keys")
    p.add_argument("package", metavar="PACKAGE", help="key (or unique prefix) or .pcpkg path")
    p.add_argument("--cache", metavar="CACHE", help="where to look the key up")
    p.add_argument("--no-guards", action="store_true",
                   help="do not unpickle guard state (faster; shows counts only)")
    p.add_argument("--trust", action="store_true",
                   help="a .pcpkg outside the cache: unpickle its guard state as "
                        "precompile.load would (owner checks, signature), not nothing")
    p.set_defaults(func=cmd_inspect)

    p = add("verify", "check hashes, signatures, torch/python/platform and sources")
    p.add_argument("target", nargs="?", metavar="CACHE|PACKAGE")
    p.add_argument("-v", "--verbose", action="store_true", help="show diffs and notes")
    p.set_defaults(func=cmd_verify)

    p = add("explain", "say whether a function's next first call would hit, and why not")
    p.add_argument("ref", metavar="FN_OR_MODULE_REF", help="module:qualname, e.g. "
                   "mypkg.model:Net or mypkg.train:step")
    p.add_argument("cache", nargs="?", metavar="CACHE")
    p.set_defaults(func=cmd_explain)


def _add_changing_commands(add: AddCommand) -> None:
    """``prune``, ``export``, ``import``: the commands that change or copy a cache
    (maintenance.py)."""
    p = add("prune", "delete packages (safe while other processes use the cache)")
    p.add_argument("cache", nargs="?", metavar="CACHE")
    p.add_argument("--max-size", type=parse_size, metavar="SIZE",
                   help="delete least recently used packages until the cache fits (500M, 2G)")
    p.add_argument("--older-than", type=parse_age, metavar="AGE",
                   help="delete packages not used for AGE (7d, 12h, 30m)")
    p.add_argument("--stale", action="store_true",
                   help="delete corrupt packages and those for another torch/python/platform")
    p.add_argument("--force", action="store_true",
                   help=f"also delete packages written in the last {int(RECENT_SECONDS)}s")
    p.add_argument("-n", "--dry-run", action="store_true", help="only say what would go")
    p.set_defaults(func=cmd_prune)

    p = add("export", "write a cache's packages into one archive (for CI caches)")
    p.add_argument("cache", metavar="DIR_OR_URL", help="the cache to export")
    p.add_argument("file", metavar="FILE", help="archive to write (.tar.gz)")
    p.set_defaults(func=cmd_export)

    p = add("import", "put an archive's packages into a cache (verified first)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--cache", metavar="CACHE", help="destination (default: the default cache)")
    p.add_argument("--max-package-size", type=parse_size, metavar="SIZE",
                   default=1 << 30, help="refuse the archive if a package is larger (1G)")
    p.add_argument("--max-total-size", type=parse_size, metavar="SIZE", default=16 << 30,
                   help="refuse the archive if it expands to more (16G, every member "
                        "counted); an archive is also refused when it expands over 100 "
                        "times its size")
    p.add_argument("--max-packages", type=int, metavar="N", default=100_000,
                   help="refuse the archive if it has more members (100000)")
    p.add_argument("--max-seconds", type=float, metavar="S", default=900.0,
                   help="refuse the archive if reading and verifying it takes longer (900)")
    p.set_defaults(func=cmd_import)


def _add_run_and_stats(add: AddCommand) -> None:
    """``run`` (parsed by run.py itself: listed here for --help) and ``stats``."""
    p = add("run", "run a program with PRECOMPILE_AUTO=1: `precompile run [--] script.py "
               "ARGS`, `-m module ARGS` or any COMMAND (torchrun ...)", json_flag=False)
    p.add_argument("program", nargs="*", metavar="PROGRAM")

    p = add("stats", "show the counters a run wrote to $PRECOMPILE_STATS_FILE")
    p.add_argument("--file", metavar="FILE", help="stats file (default $PRECOMPILE_STATS_FILE)")
    p.set_defaults(func=cmd_stats)
