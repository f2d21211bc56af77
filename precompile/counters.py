"""Process-wide counters behind ``precompile.stats()``, the warnings a run gives once, the
stats file that carries the counters out of a run (the pytest plugin writes it,
``precompile stats`` reads it), and :func:`printable`, the one way text from packages and
stores is made safe for a terminal (the CLI, reports, summaries and the library's log).

Standard library only: the pytest plugin imports this without paying for torch."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger("precompile")

_MAX_REASONS = 200


def printable(value: Any) -> str:
    """``str(value)`` with every non-printable character (controls, escapes, bidi and
    other format characters, line breaks) written as its backslash escape: store and
    package text (a redis error reply, a key, a reason) may carry escape sequences that
    would drive a terminal (set its title, move the cursor, hide lines) or forge a line."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def printable_lines(text: str) -> str:
    """``text`` with its own line breaks kept and every line :func:`printable`."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


class EscapingFilter(logging.Filter):
    """Makes every record of the ``precompile`` logger printable before any handler sees it
    (ours, the user's, or logging's last-resort stderr handler): the message (its
    arguments merged in) and a traceback's text keep no escape sequence."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = printable(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = printable_lines(
                logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = printable_lines(record.stack_info)
        return True


def escape_log(logger: logging.Logger = log) -> None:
    """Install :class:`EscapingFilter` on ``logger`` once."""
    if not any(isinstance(f, EscapingFilter) for f in logger.filters):
        logger.addFilter(EscapingFilter())


@dataclasses.dataclass
class Stats:
    hits: int = 0  # packages installed with at least one entry
    misses: int = 0  # first calls that found no usable package
    saves: int = 0  # packages written
    bypasses: int = 0  # compiled entries that could not be stored
    frames_traced: int = 0  # frames Dynamo compiled under precompile
    load_errors: int = 0  # stored packages that were corrupt, stale or incompatible
    load_seconds: float = 0.0  # time spent fetching, verifying and installing
    waited_s: float = 0.0  # time spent waiting for another process to compile (single flight)
    led: int = 0  # keys this process compiled for others waiting on it
    followed: int = 0  # keys another process compiled while this one waited
    seconds_saved: float = 0.0  # compile time the installed packages took to make, less load time
    kernels_restored: int = 0  # C++ kernel libraries written from packages into the Inductor cache
    miss_reasons: list[str] = dataclasses.field(default_factory=list)
    unbundled_kernels: list[str] = dataclasses.field(default_factory=list)  # must be rebuilt here
    recompile_reasons: list[str] = dataclasses.field(default_factory=list)  # failing guards
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def note_miss(self, reason: str) -> None:
        with self._lock:
            if reason not in self.miss_reasons and len(self.miss_reasons) < _MAX_REASONS:
                self.miss_reasons.append(reason)

    def note_recompile(self, reason: str) -> None:
        with self._lock:
            if len(self.recompile_reasons) < _MAX_REASONS:
                self.recompile_reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if not f.name.startswith("_")}
        d["miss_reasons"] = list(self.miss_reasons)
        d["unbundled_kernels"] = list(self.unbundled_kernels)
        d["recompile_reasons"] = list(self.recompile_reasons)
        return d

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            if not f.name.startswith("_"):
                fresh = f.default_factory() if callable(f.default_factory) else f.default
                setattr(self, f.name, fresh)


STATS = Stats()

_WARNED: set[str] = set()


def warn_once(topic: str, message: str) -> None:
    """Log ``message`` the first time ``topic`` comes up: one store that fails (read-only,
    full, down) is one warning however many functions and calls meet it."""
    if topic not in _WARNED:
        _WARNED.add(topic)
        log.warning("precompile: %s", message)


# ------------------------------------------------------------------- stats file

STATS_FILE_VERSION = 1

STATS_FIELDS = {
    "hits": "first calls that installed a stored package",
    "misses": "first calls that found no usable package (they compiled)",
    "saves": "packages written",
    "bypasses": "compiled entries that could not be stored",
    "frames_traced": "frames Dynamo traced under precompile (0 on a fully warm run)",
    "load_errors": "stored packages that were corrupt, stale or incompatible",
    "load_seconds": "time spent fetching, verifying and installing packages",
    "miss_reasons": "why each miss happened, in words",
}


def stats_summary_lines(stats: dict[str, Any], prefix: str = "precompile: ") -> list[str]:
    """The one-line summary (plus one line per miss reason) the pytest plugin prints."""
    line = (f"{prefix}{stats.get('hits', 0)} hits, {stats.get('misses', 0)} misses, "
            f"{stats.get('saves', 0)} saves, frames traced {stats.get('frames_traced', 0)}")
    extra = _summary_extras(stats)
    if extra:
        line += " (" + ", ".join(extra) + ")"
    out = [line]
    for reason in stats.get("miss_reasons") or []:
        first, *rest = str(reason).split("\n")
        out.append(f"  miss: {printable(first)}")
        out.extend(f"  {printable(ln)}" for ln in rest)
    return out


def _summary_extras(stats: dict[str, Any]) -> list[str]:
    """The counters worth a mention only when they are not zero."""
    extra = []
    if stats.get("bypasses"):
        extra.append(f"{stats['bypasses']} entries not storable")
    if stats.get("load_errors"):
        extra.append(f"{stats['load_errors']} unusable packages")
    if stats.get("seconds_saved", 0) > 0.05:
        extra.append(f"~{stats['seconds_saved']:.1f} s of compiling saved")
    return extra


def write_stats_file(path: str, stats: dict[str, Any], source: str) -> None:
    """Write ``stats`` as JSON, atomically (readers never see half a file)."""
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    doc = {"version": STATS_FILE_VERSION, "source": source, "written": time.time(),
           "pid": os.getpid(), "stats": stats}
    # Imported here: the local store reads settings, which count into this module's STATS.
    from cache_backends.local import write_atomically

    data = json.dumps(doc, indent=2, default=str).encode()
    write_atomically(directory, path, data, mode=0o644)
