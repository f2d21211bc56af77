"""How the CLI's documents read to people. Every command builds the document ``--json``
prints and hands it here, so the text and JSON outputs say the same thing.

Everything the CLI prints goes through :func:`emit` (JSON through ``json.dumps``, which
escapes control characters): function names, keys, reasons and diffs come from packages
and stores anyone may have written, and a raw escape sequence in one would drive the
user's terminal (set its title, move the cursor, hide lines)."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, TextIO

from precompile.counters import printable, stats_summary_lines

# ------------------------------------------------------------------ values


clean = printable  # the one escaping function (precompile.counters), by the CLI's name


def emit(text: str = "", *, file: TextIO | None = None) -> None:
    """Print ``text`` line by line, each line :func:`clean`: the one way the CLI writes
    text for people."""
    for line in text.split("\n"):
        print(clean(line), file=file)


_MULTILINE_FIELDS = frozenset({"problems", "reasons", "source_changes"})  # diffs


def one_line(doc: Any, multiline: bool = False) -> Any:
    """``doc`` with the line breaks in its strings escaped, except in the fields that hold
    diffs: a name from a package must not print a line of its own ("FAKE: ok")."""
    if isinstance(doc, str):
        return doc if multiline else doc.replace("\n", "\\n")
    if isinstance(doc, dict):
        return {k: one_line(v, multiline or k in _MULTILINE_FIELDS) for k, v in doc.items()}
    if isinstance(doc, list):
        return [one_line(v, multiline) for v in doc]
    return doc


def fmt_size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError, TypeError):  # a time no clock can show
        return "?"


def fmt_age(t: float | None, now: float) -> str:
    """How long before ``now`` (the clock reading the caller decided with) ``t`` was."""
    if not t:
        return "-"
    if not isinstance(t, (int, float)) or not math.isfinite(t):
        return "?"
    delta = max(0.0, now - t)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h")):
        if delta < limit:
            return f"{int(delta // div)}{unit} ago"
    return f"{int(delta // 86400)}d ago"


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def show(doc: Any, as_json: bool, for_people: Callable[[], None]) -> None:
    """A command's document: as JSON with ``--json``, else as ``for_people`` prints it
    (built from the same document, so both outputs say the same thing)."""
    if as_json:
        print_json(doc)
    else:
        for_people()


def table(rows: list[list[str]], header: list[str]) -> str:
    rows = [[clean(c) for c in r] for r in [header, *rows]]
    widths = [max(map(len, column)) for column in zip(*rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _head_and_tail(reason: str) -> tuple[str, list[str]]:
    """A reason's first line, which says what is wrong, and the lines after it (a diff,
    where it carries one)."""
    head, *tail = reason.splitlines() or [""]
    return head, tail


def _print_multiline(text: str, first: str, rest: str) -> None:
    """A reason that may carry a diff: its first line after ``first``, the others after
    ``rest``."""
    head, tail = _head_and_tail(text)
    emit(f"{first}{head}")
    for ln in tail:
        emit(f"{rest}{ln}")


# ---------------------------------------------------------------------- ls


def print_ls(rows: list[dict[str, Any]], url: str) -> None:
    rows = one_line(rows)
    if not rows:
        emit(f"no packages in {url}")
        return
    now = time.time()
    emit(table([_ls_row(r, now) for r in rows],
                ["FUNCTION", "ENTRIES", "SIZE", "CREATED", "LAST USED", "KEY"]))
    for problem in filter(None, map(_ls_problem, rows)):
        emit(problem)
    emit(f"\n{len(rows)} packages, {fmt_size(sum(r['size'] or 0 for r in rows))} in {url}")


def _ls_row(r: dict[str, Any], now: float) -> list[str]:
    entries = str(r["entries"]) if r["entries"] is not None else "-"
    return [r["function"] or "(unreadable)", entries, fmt_size(r["size"]),
            fmt_time(r["created"]), fmt_age(r["last_used"], now), r["key"]]


def _ls_problem(r: dict[str, Any]) -> str | None:
    """Why a listed package is of no use here (unreadable, untrusted), or None."""
    if r["error"]:
        return f"{r['key']}: {r['error']}"
    if not r["trusted"]:
        return f"{r['key']}: UNTRUSTED, the library will not load it: {r['untrusted_reason']}"
    return None


# ----------------------------------------------------------------- inspect

_ROLE_LABEL = {"main": "function", "user": "user function (own frame)",
               "resume": "resume function (after a graph break)"}


def print_inspect(d: dict[str, Any]) -> None:
    d = one_line(d)
    emit(f"package    {d['key']}")
    emit(f"file       {d['path'] or '(store without files)'}  ({fmt_size(d['size'])})")
    if not d["ok"]:
        emit(f"UNREADABLE {d['error']}")
        return
    _print_inspect_head(d)
    emit(f"\nframes ({len(d['frames'])}):")
    for fr in d["frames"]:
        _print_frame(fr)
    _print_inspect_tail(d)


def _print_inspect_tail(d: dict[str, Any]) -> None:
    """Artifacts, sources, bypasses and key factors: the package beyond its frames."""
    _print_section(f"backend artifacts ({len(d['artifacts'])})",
                   [f"{a['id']}  {a['kind']}  {a['parts']}  {fmt_size(a['size'])}"
                    for a in d["artifacts"]])
    _print_section(f"inlined sources ({len(d['sources'])})",
                   [_source_line(s) for s in d["sources"]])
    if d["bypasses"]:
        _print_section("entries not stored", d["bypasses"])
    for title, values in (("key factors", d["factors"]), ("written on", d["system"])):
        _print_section(title, [f"{k:<17} {v}" for k, v in sorted(values.items())])


def _source_line(s: dict[str, Any]) -> str:
    """An inlined source range: the stored end is exclusive, the line shown inclusive."""
    return (f"{s['module']}:{s['qualname']}  lines {s['first_line']}-"
            f"{(s['last_line'] or 1) - 1}  sha256 {str(s['sha256'])[:12]}")


def _print_section(title: str, lines: list[str]) -> None:
    emit(f"\n{title}:")
    for line in lines:
        emit(f"  {line}")


def _print_inspect_head(d: dict[str, Any]) -> None:
    emit(f"function   {d['function']}")
    emit(f"backend    {d['backend']}   entries {d['entries']}   frames {len(d['frames'])}   "
          f"devices {','.join(d['devices']) or '-'}")
    emit(f"created    {fmt_time(d['created'])}   saved {fmt_time(d['saved'])}   "
          f"last used {fmt_time(d['last_used'])}")
    emit(f"signature  {d['signature']['status']}")
    if not d["trust"]["trusted"]:
        emit(f"UNTRUSTED  {d['trust']['reason']}")


def _print_frame(fr: dict[str, Any]) -> None:
    emit(f"  {fr['module']}:{fr['qualname']}  [{_ROLE_LABEL.get(fr['role'], fr['role'])}]")
    if fr["global_name"]:
        emit(f"    installed as global {fr['global_name']}")
    if fr["skipped"] and not fr["entries"]:
        emit("    skipped: nothing to compile here; it runs eagerly")
    for e in fr["entries"]:
        _print_entry(e)


def _print_entry(e: dict[str, Any]) -> None:
    n_guards = len(e.get("guards", [])) + len(e.get("shape_guards", []))
    emit(f"    entry {e['index']}: guards {str(e['guards_blob'])[:12]} ({n_guards} guards, "
          f"{len(e['identity_checks'])} identity checks)")
    if "guards_error" in e:
        emit(f"      guards: {e['guards_error']}")
    for line in _entry_lines(e):
        emit("      " + line)


def _entry_lines(e: dict[str, Any]) -> list[str]:
    """An entry's guards, identity checks, guard tree, graph calls, imports and the constant
    calls it asks again, a line each."""
    tree = [f"checks   {line}" for line in e.get("guard_tree", [])] or [
        "checks   none recorded (written by an earlier precompile: not installed)"]
    return [*map(_guard_line, e.get("guards", [])),
            *(f"guard    shape: {s}" for s in e.get("shape_guards", [])),
            *(f"identity {c.get('source')}: {c.get('guard_type')} -> {c.get('fingerprint')}"
              for c in e["identity_checks"]),
            *tree,
            *(f"calls    {b['id']} ({b['kind']}, {fmt_size(b['size'])})" for b in e["backends"]),
            *(f"imports  {mod} as {alias}" for alias, mod in sorted(e["imports"].items())),
            *map(_constant_call_line, e.get("constant_calls", []))]


def _guard_line(g: dict[str, Any]) -> str:
    detail = f" {g['detail']}" if g["detail"] else ""
    return f"guard    {g['name'] or '(global state)'}: {g['type']}{detail}"


def _constant_call_line(c: dict[str, Any]) -> str:
    args = ", ".join([*map(repr, c.get("args", [])),
                      *(f"{k}={v!r}" for k, v in c.get("kwargs", {}).items())])
    return f"asks     {c.get('function')}({args}) == {c.get('value')!r} as {c.get('global_name')}"


# ------------------------------------------------------------------ verify


def print_verify(results: list[dict[str, Any]], where: str, *, verbose: bool) -> None:
    results = one_line(results)
    for r in results:
        _print_verdict(r, verbose)
    if not results:
        emit(f"no packages in {where}")
        return
    bad = sum(not r["ok"] for r in results)
    emit(f"{len(results) - bad} ok, {bad} with problems"
          + ("" if verbose or not bad else "  (-v for details)"))


def _print_verdict(r: dict[str, Any], verbose: bool) -> None:
    """One line a package, and with ``verbose`` the rest of the first problem (its diff),
    every other problem in full and the notes."""
    emit(_verdict_line(r))
    if verbose:
        first, *others = r["problems"] or [""]
        for ln in _head_and_tail(first)[1]:  # its first line closes the verdict line
            emit(f"    {ln}")
        for prob in others:
            _print_multiline(prob, "  - ", "    ")
        for n in r["notes"]:
            emit(f"    note: {n}")


def _verdict_line(r: dict[str, Any]) -> str:
    """Status, key, function and the first line of the first problem."""
    problems = r["problems"]
    line = f"{r['status'].upper():<13} {r['key']}  {r['function'] or '?'}"
    first = _head_and_tail(problems[0])[0] if problems else ""
    if first:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        line += f": {first}{more}"
    return line


# ----------------------------------------------------------------- explain


def print_explain(doc: dict[str, Any], *, looked_at: int) -> None:
    doc = one_line(doc)
    function, results = doc["function"], doc["packages"]
    emit(f"{function}  (cache {doc['cache']})")
    if not results:
        emit(f"would MISS: no package for {function} in the cache ({looked_at} packages "
              "looked at); the first call compiles and stores one")
        if doc["unreadable_packages"]:
            emit(f"  {len(doc['unreadable_packages'])} packages could not be read: "
                  "see `precompile verify`")
    elif doc["would_hit"]:
        _print_hit(results[0])
    else:
        _print_misses(function, results)


def _print_misses(function: str, results: list[dict[str, Any]]) -> None:
    """Every stored package of the function, each with all its reasons (and diffs)."""
    emit(f"would MISS: {len(results)} stored package(s) for {function}, none applies")
    for r in results:
        emit(f"  package {r['key']} (saved {fmt_time(r['saved'])}):")
        for reason in r["reasons"] + r["source_changes"]:
            _print_multiline(reason, "    - ", "      ")
        _print_unchecked(r, indent="    ")


def _print_hit(best: dict[str, Any]) -> None:
    """The package that would serve the call; the entries of it that would not install
    (another still applies) and what could not be checked, as notes."""
    emit(f"would HIT: package {best['key']} ({best['entries']} entries, saved "
          f"{fmt_time(best['saved'])})")
    if not best["options_known"]:
        emit("  (backend/dynamic/fullgraph compared as stored: the object named is not a "
              "precompile.cached wrapper)")
    for f in best["identity_failures"]:
        emit(f"  note: entry will not install: {f}")
    _print_unchecked(best)


def _print_unchecked(r: dict[str, Any], indent: str = "  ") -> None:
    for u in r["unchecked_sources"]:
        emit(f"{indent}note: not checked: {u}")


# ------------------------------------------------------------------- prune


# dry_run -> (what happened to a package, how what is left reads)
_PRUNE_WORDS = {True: ("would remove", "would be left"), False: ("removed", "left")}


def print_prune(doc: dict[str, Any], url: str) -> None:
    doc = one_line(doc)
    verb, left = _PRUNE_WORDS[doc["dry_run"]]
    for r in doc["removed"]:
        emit(f"{verb} {r['key']} ({fmt_size(r['size'])}): {r['reason']}")
    for k in doc["kept"]:
        emit(f"kept    {k['key']}: {k['kept_because']}")
    emit(f"{verb} {len(doc['removed'])} packages, {fmt_size(doc['freed'])}; "
          f"{fmt_size(doc['remaining'])} {left} in {url}")


# ---------------------------------------------------------- export / import


def print_skipped(headline: str, skipped: list[str]) -> None:
    """What an archive command did, then each package it left out and why."""
    emit(headline)
    for line in skipped:
        emit(f"  skipped {line}")


# ------------------------------------------------------------------- stats


def print_stats_help(env_name: str, fields: dict[str, str]) -> None:
    emit("precompile counts hits and misses per process: call precompile.stats() in your "
          "program,\nor let a run write them to a file and read it here:\n\n"
          f"  {env_name}=stats.json pytest -p precompile.pytest_plugin ...\n"
          f"  precompile stats --file stats.json   (or with {env_name} set)\n\n"
          "A program can write one itself: json.dump(precompile.stats(), open(path, 'w')).\n"
          "\nprecompile.stats() fields:")
    for name, what in fields.items():
        emit(f"  {name:<14} {what}")


def print_stats(path: str, doc: dict[str, Any]) -> None:
    doc = one_line(doc)
    emit(f"{path}  (from {doc.get('source', '?')}, written {fmt_time(doc.get('written'))})")
    for line in stats_summary_lines(doc["stats"]):
        emit(line)
    secs = doc["stats"].get("load_seconds")
    if isinstance(secs, (int, float)):
        emit(f"  load time {secs:.3f}s")
