"""How the CLI's documents read to people. Every command builds the document ``--json``
prints and hands it here, so the text and JSON outputs say the same thing."""
from __future__ import annotations

import json
import time
from typing import Any

from precompile.counters import stats_summary_lines

# ------------------------------------------------------------------ values


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
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def fmt_age(t: float | None, now: float | None = None) -> str:
    if not t:
        return "-"
    delta = max(0.0, (now or time.time()) - t)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h")):
        if delta < limit:
            return f"{int(delta // div)}{unit} ago"
    return f"{int(delta // 86400)}d ago"


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [header, *rows])


def _print_multiline(text: str, first: str, rest: str) -> None:
    """A reason that may carry a diff: its first line after ``first``, the others after
    ``rest``."""
    head, *tail = text.splitlines() or [""]
    print(f"{first}{head}")
    for ln in tail:
        print(f"{rest}{ln}")


# ---------------------------------------------------------------------- ls


def print_ls(rows: list[dict[str, Any]], url: str) -> None:
    if not rows:
        print(f"no packages in {url}")
        return
    now = time.time()
    print(table([[r["function"] or "(unreadable)",
                  str(r["entries"] if r["entries"] is not None else "-"), fmt_size(r["size"]),
                  fmt_time(r["created"]), fmt_age(r["last_used"], now), r["key"]]
                 for r in rows],
                ["FUNCTION", "ENTRIES", "SIZE", "CREATED", "LAST USED", "KEY"]))
    for r in rows:
        if r["error"]:
            print(f"{r['key']}: {r['error']}")
        elif not r["trusted"]:
            print(f"{r['key']}: UNTRUSTED, the library will not load it: {r['untrusted_reason']}")
    print(f"\n{len(rows)} packages, {fmt_size(sum(r['size'] or 0 for r in rows))} in {url}")


# ----------------------------------------------------------------- inspect

_ROLE_LABEL = {"main": "function", "user": "user function (own frame)",
               "resume": "resume function (after a graph break)"}


def print_inspect(d: dict[str, Any]) -> None:
    print(f"package    {d['key']}")
    print(f"file       {d['path'] or '(store without files)'}  ({fmt_size(d['size'])})")
    if not d["ok"]:
        print(f"UNREADABLE {d['error']}")
        return
    _print_inspect_head(d)
    print(f"\nframes ({len(d['frames'])}):")
    for fr in d["frames"]:
        _print_frame(fr)
    _print_inspect_tail(d)


def _print_inspect_tail(d: dict[str, Any]) -> None:
    """Artifacts, sources, bypasses and key factors: the package beyond its frames."""
    print(f"\nbackend artifacts ({len(d['artifacts'])}):")
    for a in d["artifacts"]:
        print(f"  {a['id']}  {a['kind']}  {a['parts']}  {fmt_size(a['size'])}")
    print(f"\ninlined sources ({len(d['sources'])}):")
    for s in d["sources"]:
        print(f"  {s['module']}:{s['qualname']}  lines {s['first_line']}-"
              f"{(s['last_line'] or 1) - 1}  sha256 {str(s['sha256'])[:12]}")
    if d["bypasses"]:
        print("\nentries not stored:")
        for b in d["bypasses"]:
            print(f"  {b}")
    for title, values in (("key factors", d["factors"]), ("written on", d["system"])):
        print(f"\n{title}:")
        for k, v in sorted(values.items()):
            print(f"  {k:<17} {v}")


def _print_inspect_head(d: dict[str, Any]) -> None:
    print(f"function   {d['function']}")
    print(f"backend    {d['backend']}   entries {d['entries']}   frames {len(d['frames'])}   "
          f"devices {','.join(d['devices']) or '-'}")
    print(f"created    {fmt_time(d['created'])}   saved {fmt_time(d['saved'])}   "
          f"last used {fmt_time(d['last_used'])}")
    print(f"signature  {d['signature']['status']}")
    if not d["trust"]["trusted"]:
        print(f"UNTRUSTED  {d['trust']['reason']}")


def _print_frame(fr: dict[str, Any]) -> None:
    print(f"  {fr['module']}:{fr['qualname']}  [{_ROLE_LABEL.get(fr['role'], fr['role'])}]")
    if fr["global_name"]:
        print(f"    installed as global {fr['global_name']}")
    if fr["skipped"] and not fr["entries"]:
        print("    skipped: nothing to compile here; it runs eagerly")
    for e in fr["entries"]:
        _print_entry(e)


def _print_entry(e: dict[str, Any]) -> None:
    n_guards = len(e.get("guards", [])) + len(e.get("shape_guards", []))
    print(f"    entry {e['index']}: guards {str(e['guards_blob'])[:12]} ({n_guards} guards, "
          f"{len(e['identity_checks'])} identity checks)")
    if "guards_error" in e:
        print(f"      guards: {e['guards_error']}")
    for g in e.get("guards", []):
        detail = f" {g['detail']}" if g["detail"] else ""
        print(f"      guard    {g['name'] or '(global state)'}: {g['type']}{detail}")
    for s in e.get("shape_guards", []):
        print(f"      guard    shape: {s}")
    for c in e["identity_checks"]:
        print(f"      identity {c.get('source')}: {c.get('guard_type')} -> {c.get('fingerprint')}")
    for b in e["backends"]:
        print(f"      calls    {b['id']} ({b['kind']}, {fmt_size(b['size'])})")
    for alias, mod in sorted(e["imports"].items()):
        print(f"      imports  {mod} as {alias}")


# ------------------------------------------------------------------ verify


def print_verify(results: list[dict[str, Any]], where: str, *, verbose: bool) -> None:
    for r in results:
        _print_verdict(r, verbose)
    if not results:
        print(f"no packages in {where}")
        return
    bad = sum(not r["ok"] for r in results)
    print(f"{len(results) - bad} ok, {bad} with problems"
          + ("" if verbose or not bad else "  (-v for details)"))


def _print_verdict(r: dict[str, Any], verbose: bool) -> None:
    problems = r["problems"]
    line = f"{r['status'].upper():<13} {r['key']}  {r['function'] or '?'}"
    first = (problems[0].splitlines() or [""])[0] if problems else ""
    if first:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        line += f": {first}{more}"
    print(line)
    if verbose:
        for prob in problems:
            for ln in prob.splitlines()[1:]:
                print(f"    {ln}")
        for n in r["notes"]:
            print(f"    note: {n}")


# ----------------------------------------------------------------- explain


def print_explain(doc: dict[str, Any], *, looked_at: int) -> None:
    function, results = doc["function"], doc["packages"]
    print(f"{function}  (cache {doc['cache']})")
    if not results:
        print(f"would MISS: no package for {function} in the cache ({looked_at} packages "
              "looked at); the first call compiles and stores one")
        if doc["unreadable_packages"]:
            print(f"  {len(doc['unreadable_packages'])} packages could not be read: "
                  "see `precompile verify`")
    elif doc["would_hit"]:
        _print_hit(results[0])
    else:
        print(f"would MISS: {len(results)} stored package(s) for {function}, none applies")
        for r in results:
            print(f"  package {r['key']} (saved {fmt_time(r['saved'])}):")
            for reason in r["reasons"] + r["source_changes"]:
                _print_multiline(reason, "    - ", "      ")
            _print_notes(r, indent="    ")


def _print_hit(best: dict[str, Any]) -> None:
    print(f"would HIT: package {best['key']} ({best['entries']} entries, saved "
          f"{fmt_time(best['saved'])})")
    if not best["options_known"]:
        print("  (backend/dynamic/fullgraph compared as stored: the object named is not a "
              "precompile.cached wrapper)")
    _print_notes(best)


def _print_notes(r: dict[str, Any], indent: str = "  ") -> None:
    if r["would_hit"]:
        for f in r["identity_failures"]:
            print(f"{indent}note: entry will not install: {f}")
    for u in r["unchecked_sources"]:
        print(f"{indent}note: not checked: {u}")


# ------------------------------------------------------------------- prune


def print_prune(doc: dict[str, Any], url: str) -> None:
    dry = doc["dry_run"]
    verb = "would remove" if dry else "removed"
    for r in doc["removed"]:
        print(f"{verb} {r['key']} ({fmt_size(r['size'])}): {r['reason']}")
    for k in doc["kept"]:
        print(f"kept    {k['key']}: {k['kept_because']}")
    print(f"{verb} {len(doc['removed'])} packages, {fmt_size(doc['freed'])}; "
          f"{fmt_size(doc['remaining'])} {'would be ' if dry else ''}left in {url}")


# ------------------------------------------------------------------- stats


def print_stats_help(env_name: str, fields: dict[str, str]) -> None:
    print("precompile counts hits and misses per process: call precompile.stats() in your "
          "program,\nor let a run write them to a file and read it here:\n\n"
          f"  {env_name}=stats.json pytest -p precompile.pytest_plugin ...\n"
          f"  precompile stats --file stats.json   (or with {env_name} set)\n\n"
          "A program can write one itself: json.dump(precompile.stats(), open(path, 'w')).\n"
          "\nprecompile.stats() fields:")
    for name, what in fields.items():
        print(f"  {name:<14} {what}")


def print_stats(path: str, doc: dict[str, Any]) -> None:
    print(f"{path}  (from {doc.get('source', '?')}, written {fmt_time(doc.get('written'))})")
    for line in stats_summary_lines(doc["stats"]):
        print(line)
    secs = doc["stats"].get("load_seconds")
    if isinstance(secs, (int, float)):
        print(f"  load time {secs:.3f}s")
