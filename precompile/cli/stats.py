"""``stats``: the counters a run wrote to ``$PRECOMPILE_STATS_FILE`` (the file format and
its writer live with the counters, in precompile/counters.py)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from precompile.counters import STATS_FIELDS, STATS_FILE_VERSION

from . import _library as lib
from . import text
from .common import EXIT_OK, CliError


def read_stats_file(path: str) -> dict[str, Any]:
    """The stats document at ``path``; a bare ``precompile.stats()`` dump is accepted too."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise CliError(f"no stats file at {path}: nothing has written one yet (run pytest with "
                       f"-p precompile.pytest_plugin and {lib.settings.STATS_FILE} set)"
                       ) from None
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read stats file {path}: {e}") from e
    return _stats_doc(doc, path)


def _stats_doc(doc: Any, path: str) -> dict[str, Any]:
    """A stats file's document as ``precompile stats`` prints it."""
    if isinstance(doc, dict):
        if isinstance(doc.get("stats"), dict):
            return doc
        if "hits" in doc:
            return {"version": STATS_FILE_VERSION, "source": "precompile.stats()", "stats": doc}
    raise CliError(f"{path} is not a precompile stats file")


def cmd_stats(args: argparse.Namespace) -> int:
    path = args.file or lib.settings.text(lib.settings.STATS_FILE)
    if not path:
        text.show({"error": "no stats file", "fields": STATS_FIELDS}, args.json,
                  lambda: text.print_stats_help(lib.settings.STATS_FILE, STATS_FIELDS))
        return EXIT_OK
    doc = read_stats_file(path)
    text.show(doc, args.json, lambda: _print_stats(path, doc))
    return EXIT_OK


def _print_stats(path: str, doc: dict[str, Any]) -> None:
    text.print_stats(path, doc)
    _print_processes(doc)


def _print_processes(doc: dict[str, Any]) -> None:
    """A ``PRECOMPILE_AUTO`` run's file has a line per process that compiled."""
    processes = doc.get("processes")
    if not isinstance(processes, list):
        return
    from precompile.auto_report import summary_line

    text.emit(f"  {len(processes)} process(es) of this run:")
    for p in processes:
        if isinstance(p, dict) and isinstance(p.get("stats"), dict):
            text.emit("  " + summary_line(p["stats"], p.get("pid", "?")))
