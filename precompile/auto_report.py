"""What ``PRECOMPILE_AUTO`` did in a process, said at its exit: one log line (seen under
``PRECOMPILE_LOG=info``) and, with ``PRECOMPILE_STATS_FILE`` set, its counters added to that
file. Every process of one run (the first one and the children that inherited the
variable: ranks, workers, subprocesses) adds itself to the same file under a lock, so
``precompile stats`` shows the run's totals and a line per process; a new run replaces the
file. A process that never called ``torch.compile`` says and writes nothing.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from . import settings
from .counters import STATS, STATS_FILE_VERSION

log = logging.getLogger("precompile")
SOURCE = "PRECOMPILE_AUTO"
_LOCK_TIMEOUT_S = 30.0
_MAX_PROCESSES = 1000
_MAX_REASON_CHARS = 300


def report(seen: int, passed: list[str]) -> None:
    """Flush, then log and record this process's counters. Never raises (runs at exit)."""
    if not seen and not passed:
        return
    try:
        stats = final_stats(seen, passed)
        log.info("%s", summary_line(stats, os.getpid()))
        path = settings.text(settings.STATS_FILE)
        if path:
            add_to_stats_file(path, stats, settings.text(settings.AUTO_RUN) or "")
    except Exception as e:  # noqa: BLE001 - a report must never change how a program ends
        log.warning("precompile: PRECOMPILE_AUTO could not report its counters: %r", e)


def final_stats(seen: int, passed: list[str]) -> dict[str, Any]:
    """``precompile.stats()`` once every package is written, plus what only the mode
    knows: calls taken, calls left to torch, and every frame Dynamo compiled."""
    if "precompile.api" in sys.modules:
        from . import api

        try:
            api.flush(timeout=120)
        except Exception as e:  # noqa: BLE001 - report what was saved
            STATS.note_miss(f"saving packages at exit failed: {e!r}")
    stats = STATS.as_dict()
    stats["functions_seen"] = seen
    stats["passed_to_torch"] = list(passed)
    stats["dynamo_frames"] = _dynamo_frames()
    return stats


def _dynamo_frames() -> int:
    if "torch" not in sys.modules:
        return 0
    from . import _torch

    return _torch.dynamo_frames_total()


def summary_line(stats: dict[str, Any], pid: Any) -> str:
    """One line: ``precompile auto (pid N): 2 functions, 1 hits, 1 misses, ...; miss: why``."""
    line = (f"precompile auto (pid {pid}): {stats.get('functions_seen', 0)} functions,"
            f" {stats.get('hits', 0)} hits, {stats.get('misses', 0)} misses,"
            f" {stats.get('saves', 0)} saves, frames traced {stats.get('frames_traced', 0)}"
            f" (all of Dynamo: {stats.get('dynamo_frames', 0)})")
    if stats.get("bypasses"):
        line += f", {stats['bypasses']} entries not storable"
    parts = [line]
    parts += [f"miss: {_short(r)}" for r in stats.get("miss_reasons") or []]
    parts += [f"left to torch: {_short(r)}" for r in stats.get("passed_to_torch") or []]
    return "; ".join(parts)


def _short(reason: Any) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS - 3] + "..."


def add_to_stats_file(path: str, stats: dict[str, Any], run: str) -> None:
    """Add this process to the run's stats file (a file from another run is replaced)."""
    from cache_backends.file_lock import file_lock
    from cache_backends.local import write_atomically

    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with file_lock(path + ".lock", _LOCK_TIMEOUT_S):
        doc = _read_run(path, run)
        doc["processes"] = (doc["processes"] + [
            {"pid": os.getpid(), "argv": sys.argv[:3], "stats": stats}])[-_MAX_PROCESSES:]
        doc["stats"] = totals([p["stats"] for p in doc["processes"]])
        doc["written"] = time.time()
        data = json.dumps(doc, indent=2, default=str).encode()
        write_atomically(directory, path, data, mode=0o644)


def _read_run(path: str, run: str) -> dict[str, Any]:
    fresh = {"version": STATS_FILE_VERSION, "source": SOURCE, "run": run, "processes": []}
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return fresh
    if (isinstance(doc, dict) and doc.get("source") == SOURCE and doc.get("run") == run
            and isinstance(doc.get("processes"), list)):
        return doc
    return fresh


def totals(many: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters added up over processes; reason lists merged without repeats."""
    out: dict[str, Any] = {}
    for stats in many:
        for name, value in stats.items():
            _add_counter(out, name, value)
    return out


def _add_counter(out: dict[str, Any], name: str, value: Any) -> None:
    """One process's counter into the totals: lists merged, numbers added, flags and
    anything else left out."""
    if isinstance(value, list):
        merged = out.setdefault(name, [])
        merged.extend(v for v in value if v not in merged)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[name] = out.get(name, 0) + value
