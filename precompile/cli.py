"""``precompile``: look into, check and tidy a precompile cache from the shell.

    precompile ls [CACHE]                       packages: function, entries, size, times
    precompile inspect PACKAGE                  frames, guards, resume functions, artifacts
    precompile verify [CACHE|PACKAGE]           hashes, signatures, torch/python, sources
    precompile explain MODULE:QUALNAME [CACHE]  would the next call hit? if not, why not
    precompile prune [CACHE] --max-size 2G | --older-than 7d | --stale
    precompile stats [--file FILE]              counters a run wrote to $PRECOMPILE_STATS_FILE

CACHE is a directory or a store URL and defaults the way the library does
($PRECOMPILE_CACHE_URL, $PRECOMPILE_CACHE_DIR, ~/.cache/precompile). PACKAGE is a key in
the cache (a unique prefix is enough) or the path of a ``.pcpkg`` file. Every read command
takes ``--json``.

Exit status: 0 fine, 1 problems found (``verify``) or a miss (``explain``), 2 the command
itself could not run (no such package, unreadable store, bad arguments).

Reading is side-effect free: package files are read without refreshing their "last used"
time, and ``verify`` locates user modules on ``sys.path`` without importing them. Only
``explain`` imports the module it is asked about (it needs the live function).

Trust is the library's, exactly: a package is *trusted* only if the library would load it
(its store's owner/permission checks pass, and with ``PRECOMPILE_SIGNING_KEY`` set, its
signature verifies). Only trusted packages have guard state unpickled (``inspect``) or
identity checks resolved (``explain``); the others are still listed and checksummed, marked
UNTRUSTED with the reason.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.machinery
import json
import linecache
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

# Only the standard library at import time: the pytest plugin imports the stats helpers
# below, and the heavy modules load inside the commands that need them.

RECENT_SECONDS = 60.0  # prune never deletes a package written this recently (unless --force)
STATS_FILE_ENV = "PRECOMPILE_STATS_FILE"
STATS_FILE_VERSION = 1

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A command cannot run at all (exit status 2)."""


# ====================================================================== formatting


def fmt_size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable


def fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def fmt_age(t: float | None, now: float | None = None) -> str:
    if not t:
        return "-"
    delta = max(0.0, (now or time.time()) - t)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "m"), (86400, 3600, "h"),
                             (float("inf"), 86400, "d")):
        if delta < limit:
            return f"{int(delta // div)}{unit} ago"
    return "-"  # unreachable


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


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


# ========================================================================= stats


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
    extra = []
    if stats.get("bypasses"):
        extra.append(f"{stats['bypasses']} entries not storable")
    if stats.get("load_errors"):
        extra.append(f"{stats['load_errors']} unusable packages")
    if stats.get("seconds_saved", 0) > 0.05:
        extra.append(f"~{stats['seconds_saved']:.1f} s of compiling saved")
    if extra:
        line += " (" + ", ".join(extra) + ")"
    out = [line]
    for reason in stats.get("miss_reasons") or []:
        first, *rest = str(reason).splitlines() or [""]
        out.append(f"  miss: {first}")
        out.extend(f"  {ln}" for ln in rest)
    return out


def write_stats_file(path: str, stats: dict[str, Any], source: str) -> None:
    """Write ``stats`` as JSON, atomically (readers never see half a file)."""
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    doc = {"version": STATS_FILE_VERSION, "source": source, "written": time.time(),
           "pid": os.getpid(), "stats": stats}
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=str)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ====================================================================== packages


@dataclasses.dataclass
class Pkg:
    """One stored package as the CLI sees it: where it is, and whether it decodes."""

    key: str
    path: str | None
    size: int | None
    modified: float | None  # last write (file mtime / store "created")
    last_used: float | None
    data: bytes | None = None
    env: Any = None  # format.Envelope once decoded
    error: str | None = None  # why it does not decode (corrupt, truncated, foreign)
    flags: int = 0
    signature: str = "unsigned"
    signature_ok: bool = True
    trust_problem: str | None = None  # why the store's checks refuse it (owner, permissions)

    @property
    def meta(self) -> dict[str, Any]:
        return self.env.meta if self.env is not None else {}

    @property
    def factors(self) -> dict[str, Any]:
        f = self.meta.get("factors")
        return f if isinstance(f, dict) else {}

    @property
    def function(self) -> str:
        return str(self.meta.get("function") or self.factors.get("function") or "")

    @property
    def created(self) -> float | None:
        c = self.meta.get("created")
        return float(c) if isinstance(c, (int, float)) and c else self.modified

    @property
    def trusted(self) -> bool:
        """Whether the library would load it: decoded, from a store it accepts, and accepted
        by the signing policy in force. Only then may its pickles be loaded."""
        return self.env is not None and self.signature_ok and self.trust_problem is None

    @property
    def untrusted_reason(self) -> str | None:
        """Why the library would refuse it (None when trusted), in words."""
        if self.env is None:
            return f"does not decode: {self.error}"
        if not self.signature_ok:
            return self.signature
        return self.trust_problem


def _signing_key() -> bytes | None:
    from precompile import settings

    return settings.signing_key()


def decode_pkg(pkg: Pkg) -> Pkg:
    """Verify ``pkg.data`` (checksums, blob hashes, signature policy) and decode it."""
    from precompile import format
    from precompile.errors import PackageError

    assert pkg.data is not None
    try:
        _, pkg.flags, _ = format.read_header(pkg.data)
        env = format.decode(pkg.data)
        _check_manifest(env)
    except PackageError as e:
        pkg.error = str(e)
        pkg.signature, pkg.signature_ok = "unknown (package does not decode)", False
        return pkg
    pkg.env = env
    signed = bool(pkg.flags & format.FLAG_SIGNED)
    key = _signing_key()
    if key is None:
        pkg.signature = ("signed (not verified: set PRECOMPILE_SIGNING_KEY to verify)"
                         if signed else "unsigned")
        pkg.signature_ok = True
    elif not signed:
        pkg.signature = ("UNSIGNED, but PRECOMPILE_SIGNING_KEY is set: the library refuses "
                         "this package")
        pkg.signature_ok = False
    else:
        try:
            format.decode(pkg.data, signing_key=key)
            pkg.signature, pkg.signature_ok = "signed, verified with PRECOMPILE_SIGNING_KEY", True
        except PackageError:
            pkg.signature = "signed, but the signature does NOT match PRECOMPILE_SIGNING_KEY"
            pkg.signature_ok = False
    return pkg


def _check_manifest(env: Any) -> None:
    """Raise FormatError unless the manifest has the shape the library can install (a file
    can pass its checksum and still be malformed: a bug, or a recomputed checksum)."""
    from precompile.errors import FormatError
    from precompile.package import CompilePackage

    if not isinstance(env.meta.get("factors", {}), dict):
        raise FormatError("package metadata is malformed (factors is not a map)")
    bypasses = env.manifest.get("bypasses", [])
    if not isinstance(bypasses, list) or not all(isinstance(b, str) for b in bypasses):
        raise FormatError("package manifest is malformed (bypasses is not a list of strings)")
    try:  # the library's own validation (it only builds data; nothing is installed)
        CompilePackage.from_manifest(_PLACEHOLDER_CODE, "", {}, env.manifest, env.blobs)
    except FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else it trips on is a malformed manifest
        raise FormatError(f"package manifest is malformed ({type(e).__name__}: {e})") from None


_PLACEHOLDER_CODE = (lambda: None).__code__


def load_file(path: str) -> Pkg:
    """A ``.pcpkg`` named on the command line, trusted as its directory would be as a
    cache (the same owner and permission checks)."""
    from cache_backends.local import peek_file

    try:
        data, problem = peek_file(path)
        st = os.stat(path)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    key = os.path.basename(path)
    key = key.removesuffix(".pcpkg")
    return decode_pkg(Pkg(key, os.path.abspath(path), len(data), st.st_mtime,
                          max(st.st_atime, st.st_mtime), data, trust_problem=problem))


def load_from_store(store: Any, key: str, *, read: bool = True) -> Pkg | None:
    """A package from a store (decoded when ``read``; only its stat otherwise), or None if
    it vanished meanwhile (another process pruned it)."""
    from precompile.errors import StoreError

    try:
        st = store.stat(key)
    except (StoreError, OSError):
        st = None
    path = getattr(st, "path", None)
    if not read and st is not None:
        return Pkg(key, path, st.size, st.created, st.last_used)
    problem = None
    try:
        if hasattr(store, "peek"):  # a local directory: its checks, without touching atime
            try:
                data, problem = store.peek(key)
            except FileNotFoundError:
                return None
        else:
            data = store.get(key)  # other stores apply their own checks, or raise
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    except StoreError as e:
        raise CliError(str(e)) from e
    if data is None:
        return None
    pkg = Pkg(key, path, st.size if st else len(data), st.created if st else None,
              st.last_used if st else None, data, trust_problem=problem)
    return decode_pkg(pkg) if read else pkg


def open_store(spec: str | None) -> Any:
    from precompile.api import default_store
    from precompile.errors import StoreError

    try:
        return default_store(cache_dir=spec) if spec else default_store()
    except (StoreError, ValueError) as e:
        raise CliError(f"cannot open cache {spec or '(default)'}: {e}") from e


def store_keys(store: Any) -> list[str]:
    from precompile.errors import StoreError

    try:
        return list(store.list())
    except StoreError as e:
        raise CliError(str(e)) from e


def iter_store(store: Any, *, read: bool = True) -> Iterator[Pkg]:
    for key in store_keys(store):
        pkg = load_from_store(store, key, read=read)
        if pkg is not None:
            yield pkg


def _looks_like_store(ref: str) -> bool:
    return "://" in ref or os.path.isdir(ref)


def find_package(ref: str, cache: str | None) -> Pkg:
    """PACKAGE: a ``.pcpkg`` path, a key in the cache, a unique prefix of one, or the
    ``module:qualname`` of the function when one package holds it."""
    if os.path.isfile(ref):
        return load_file(ref)
    store = open_store(cache)
    keys = store_keys(store)
    name = ref.removesuffix(".pcpkg")
    name = os.path.basename(name) if os.sep in name else name
    matches = [k for k in keys if k == name] or [k for k in keys if k.startswith(name)]
    if not matches and ":" in ref:
        found = [p for p in iter_store(store) if p.function == ref]
        if len(found) == 1:
            return found[0]
        matches = [p.key for p in found]
    if not matches:
        raise CliError(f"no package {ref!r}: not a file, and {store.url} holds no such key "
                       "(see `precompile ls`)")
    if len(matches) > 1:
        raise CliError(f"{ref!r} matches {len(matches)} packages in {store.url}: "
                       + ", ".join(matches[:10]) + ("..." if len(matches) > 10 else ""))
    pkg = load_from_store(store, matches[0])
    if pkg is None:
        raise CliError(f"package {matches[0]} disappeared from {store.url} while reading it")
    return pkg


# ================================================================== compatibility


def compat_problems(pkg: Pkg) -> list[str]:
    """Why this machine's python/torch/platform cannot use ``pkg`` (the library's checks)."""
    from precompile import keys

    here = keys.system_factors()
    out = []
    for name, mine in here.items():
        theirs = pkg.factors.get(name)
        if theirs != mine:
            out.append(f"written for {name} {theirs}, this machine has {mine}")
    return out


def _find_module_file(name: str) -> str | None:
    """The source file of module ``name`` on sys.path, found *without importing* it or its
    parent packages (so checking a cache never runs user code)."""
    mod = sys.modules.get(name)
    if mod is not None and name != "__main__":
        return getattr(mod, "__file__", None)
    parts = name.split(".")
    search: list[str] | None = None
    spec = None
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    return origin if origin and origin.endswith(".py") else None


def source_changes(ranges: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(changed, unchecked): stored inlined source ranges whose text differs now (with a
    diff, as ``keys.changed_sources`` words it), and ranges that cannot be checked here."""
    from precompile import keys

    changed, unchecked = [], []
    for raw in ranges:
        try:
            rng = keys.SourceRange.from_dict(raw)
        except (KeyError, TypeError):
            unchecked.append(f"malformed source record {raw!r:.80}")
            continue
        if rng.module == "__main__":
            unchecked.append(f"{rng.qualname} lines {rng.first_line}-{rng.last_line - 1} in a "
                             "script run as __main__ (only the script itself can check them)")
            continue
        if rng.module in sys.modules:  # imported (explain): exactly the library's check
            changed.extend(keys.changed_sources([rng]))
            continue
        path = _find_module_file(rng.module)
        if path is None:
            unchecked.append(f"module {rng.module} is not on sys.path here (run from the "
                             "project directory or set PYTHONPATH)")
            continue
        linecache.checkcache(path)
        lines = linecache.getlines(path)
        now = "".join(lines[rng.first_line - 1:rng.last_line - 1])
        where = f"{path} lines {rng.first_line}-{rng.last_line - 1} ({rng.qualname})"
        if not lines:
            changed.append(f"{where}: source is no longer readable")
        elif hashlib.sha256(now.encode()).hexdigest() != rng.sha256:
            changed.append(f"{where} changed:\n{keys.short_diff(rng.text, now)}")
    return changed, unchecked


# ============================================================================ ls


def _summary(pkg: Pkg) -> dict[str, Any]:
    fn = pkg.function
    module, _, qualname = fn.partition(":")
    manifest = pkg.env.manifest if pkg.env is not None else {}
    return {
        "key": pkg.key,
        "path": pkg.path,
        "function": fn or None,
        "module": module or None,
        "qualname": qualname or None,
        "entries": pkg.meta.get("entries"),
        "frames": len(manifest.get("frames", [])) if pkg.env is not None else None,
        "backend": pkg.meta.get("backend_name"),
        "size": pkg.size,
        "created": pkg.created,
        "saved": pkg.meta.get("saved"),
        "last_used": pkg.last_used,
        "torch": pkg.factors.get("torch"),
        "python": pkg.factors.get("python"),
        "signed": bool(pkg.flags & 1),
        "ok": pkg.env is not None,
        "error": pkg.error,
        "trusted": pkg.trusted,
        "untrusted_reason": pkg.untrusted_reason,
    }


def cmd_ls(args: argparse.Namespace) -> int:
    store = open_store(args.cache)
    rows = sorted((_summary(p) for p in iter_store(store)),
                  key=lambda r: (r["function"] or "~", -(r["saved"] or 0)))
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no packages in {store.url}")
        return EXIT_OK
    now = time.time()
    table = []
    for r in rows:
        fn = r["function"] or "(unreadable)"
        table.append([fn, str(r["entries"] if r["entries"] is not None else "-"),
                      fmt_size(r["size"]), fmt_time(r["created"]), fmt_age(r["last_used"], now),
                      r["key"]])
    print(_table(table, ["FUNCTION", "ENTRIES", "SIZE", "CREATED", "LAST USED", "KEY"]))
    for r in rows:
        if r["error"]:
            print(f"{r['key']}: {r['error']}")
        elif not r["trusted"]:
            print(f"{r['key']}: UNTRUSTED, the library will not load it: {r['untrusted_reason']}")
    total = sum(r["size"] or 0 for r in rows)
    print(f"\n{len(rows)} packages, {fmt_size(total)} in {store.url}")
    return EXIT_OK


# ======================================================================= inspect


def _source_label(src: Any) -> str:
    name = getattr(src, "name", None)
    return str(name() if callable(name) else name)


def readable_guards(blob: bytes) -> dict[str, Any]:
    """Dynamo's pickled GuardsState as a list of readable guards. Only called on packages
    that passed ``format.decode`` (every byte checksummed) and the signing policy."""
    import io
    import pickle

    from precompile import _torch

    # The library's own unpickler where it has one (it repairs a torch 2.13 grad bug).
    unpickler = getattr(_torch, "_GuardsUnpickler", pickle.Unpickler)
    with contextlib.redirect_stdout(sys.stderr):
        state = unpickler(io.BytesIO(blob)).load()  # verified package, see docstring
    og = state.output_graph
    sizes = {}
    for src, ss in (getattr(og, "input_source_to_sizes_strides", None) or {}).items():
        with contextlib.suppress(Exception):
            sizes[_source_label(src)] = ss
    guards = []
    for g in getattr(og, "guards", None) or []:
        kind = g.create_fn_name()
        types_ = sorted(set(g.guard_types or [])) or [kind]
        detail = ""
        if g.name in sizes and "TENSOR_MATCH" in kind:
            ss = sizes[g.name]
            detail = f"size={tuple(ss.get('size', ()))} stride={tuple(ss.get('stride', ()))}"
        guards.append({"name": g.name or "", "type": kind, "types": types_, "detail": detail})
    guards.sort(key=lambda d: (d["name"] == "", d["name"], d["type"]))
    shape = []
    with contextlib.suppress(Exception):
        shape = [str(e) for e in state.shape_code_parts.verbose_code_parts.exprs]
    return {"guards": guards, "shape_guards": shape}


def _code_info(code: Any) -> dict[str, Any] | None:
    if code is None:
        return None
    return {"name": getattr(code, "co_qualname", None), "file": getattr(code, "co_filename", None),
            "line": getattr(code, "co_firstlineno", None),
            "bytecode_bytes": len(getattr(code, "co_code", b""))}


def inspect_dict(pkg: Pkg, *, guards: bool = True) -> dict[str, Any]:
    out = _summary(pkg)
    out["signature"] = {"signed": bool(pkg.flags & 1), "status": pkg.signature,
                        "ok": pkg.signature_ok}
    out["trust"] = {"trusted": pkg.trusted, "reason": pkg.untrusted_reason}
    if pkg.env is None:
        return out
    meta, manifest, blobs = pkg.env.meta, pkg.env.manifest, pkg.env.blobs
    artifacts = manifest.get("artifacts") or {}
    frames = []
    for fd in manifest.get("frames", []):
        entries = []
        for i, ed in enumerate(fd.get("entries", []), 1):
            entry: dict[str, Any] = {
                "index": i,
                "guards_blob": ed.get("guards"),
                "identity_checks": ed.get("identity", []),
                "backends": [{"id": b, "kind": artifacts.get(b, {}).get("kind"),
                              "size": len(blobs.get(artifacts.get(b, {}).get("blob"), b""))}
                             for b in ed.get("backends", [])],
                "imports": ed.get("imports", {}),
                "code": _code_info(ed.get("code")),
            }
            blob = blobs.get(ed.get("guards"))
            if not guards:
                pass
            elif blob is None:
                entry["guards_error"] = "guard blob missing from the package"
            elif not pkg.trusted:
                entry["guards_error"] = ("not unpickled: the library would not load this "
                                         f"package ({pkg.untrusted_reason})")
            else:
                try:
                    entry.update(readable_guards(blob))
                except Exception as e:  # noqa: BLE001 - any unpickling trouble: say so, go on
                    entry["guards_error"] = f"unreadable ({type(e).__name__}: {e})"
            entries.append(entry)
        frames.append({
            "role": fd.get("role"), "module": fd.get("module"), "qualname": fd.get("qualname"),
            "fingerprint": fd.get("fingerprint"), "global_name": fd.get("global_name"),
            "skipped": bool(fd.get("skipped")), "code": _code_info(fd.get("code")),
            "entries": entries,
        })
    out["frames"] = frames
    out["artifacts"] = [{
        "id": bid, "kind": ad.get("kind"), "blob": ad.get("blob"),
        "size": len(blobs.get(ad.get("blob"), b"")),
        "has_backward": bool(ad.get("has_backward")),
        "parts": "forward+backward" if ad.get("has_backward") else "forward only",
    } for bid, ad in sorted(artifacts.items())]
    out["sources"] = [{k: s.get(k) for k in ("module", "qualname", "first_line", "last_line",
                                              "sha256")} for s in manifest.get("sources", [])]
    out["devices"] = manifest.get("devices", [])
    out["bypasses"] = manifest.get("bypasses", [])
    out["factors"] = meta.get("factors", {})
    out["system"] = meta.get("system", {})
    out["format"] = {"flags": pkg.flags}
    return out


_ROLE_LABEL = {"main": "function", "user": "user function (own frame)",
               "resume": "resume function (after a graph break)"}


def cmd_inspect(args: argparse.Namespace) -> int:
    pkg = find_package(args.package, args.cache)
    d = inspect_dict(pkg, guards=not args.no_guards)
    if args.json:
        _print_json(d)
        return EXIT_OK if pkg.env is not None else EXIT_PROBLEMS
    p = print
    p(f"package    {pkg.key}")
    p(f"file       {pkg.path or '(store without files)'}  ({fmt_size(pkg.size)})")
    if pkg.env is None:
        p(f"UNREADABLE {pkg.error}")
        return EXIT_PROBLEMS
    p(f"function   {d['function']}")
    p(f"backend    {d['backend']}   entries {d['entries']}   frames {len(d['frames'])}   "
      f"devices {','.join(d['devices']) or '-'}")
    p(f"created    {fmt_time(d['created'])}   saved {fmt_time(d['saved'])}   "
      f"last used {fmt_time(d['last_used'])}")
    p(f"signature  {pkg.signature}")
    if not pkg.trusted:
        p(f"UNTRUSTED  {pkg.untrusted_reason}")
    p("")
    p(f"frames ({len(d['frames'])}):")
    for fr in d["frames"]:
        label = _ROLE_LABEL.get(fr["role"], fr["role"])
        p(f"  {fr['module']}:{fr['qualname']}  [{label}]")
        if fr["global_name"]:
            p(f"    installed as global {fr['global_name']}")
        if fr["skipped"] and not fr["entries"]:
            p("    skipped: nothing to compile here; it runs eagerly")
        for e in fr["entries"]:
            n_guards = len(e.get("guards", []))
            p(f"    entry {e['index']}: guards {str(e['guards_blob'])[:12]} "
              f"({n_guards + len(e.get('shape_guards', []))} guards, "
              f"{len(e['identity_checks'])} identity checks)")
            if "guards_error" in e:
                p(f"      guards: {e['guards_error']}")
            for g in e.get("guards", []):
                name = g["name"] or "(global state)"
                p(f"      guard    {name}: {g['type']}" + (f" {g['detail']}" if g["detail"] else ""))
            for s in e.get("shape_guards", []):
                p(f"      guard    shape: {s}")
            for c in e["identity_checks"]:
                p(f"      identity {c.get('source')}: {c.get('guard_type')} -> "
                  f"{c.get('fingerprint')}")
            for b in e["backends"]:
                p(f"      calls    {b['id']} ({b['kind']}, {fmt_size(b['size'])})")
            for alias, mod in sorted(e["imports"].items()):
                p(f"      imports  {mod} as {alias}")
    p("")
    p(f"backend artifacts ({len(d['artifacts'])}):")
    for a in d["artifacts"]:
        p(f"  {a['id']}  {a['kind']}  {a['parts']}  {fmt_size(a['size'])}")
    p("")
    p(f"inlined sources ({len(d['sources'])}):")
    for s in d["sources"]:
        p(f"  {s['module']}:{s['qualname']}  lines {s['first_line']}-{(s['last_line'] or 1) - 1}"
          f"  sha256 {str(s['sha256'])[:12]}")
    if d["bypasses"]:
        p("")
        p("entries not stored:")
        for b in d["bypasses"]:
            p(f"  {b}")
    p("")
    p("key factors:")
    for k, v in sorted(d["factors"].items()):
        p(f"  {k:<17} {v}")
    p("")
    p("written on:")
    for k, v in sorted(d["system"].items()):
        p(f"  {k:<17} {v}")
    return EXIT_OK


# ======================================================================== verify


def verify_pkg(pkg: Pkg) -> dict[str, Any]:
    problems: list[str] = []
    notes: list[str] = []
    status = "ok"
    if pkg.env is None:
        status, problems = "corrupt", [pkg.error or "does not decode"]
    elif not pkg.signature_ok:
        status, problems = "bad-signature", [pkg.signature]
    elif pkg.trust_problem:
        status, problems = "untrusted", [pkg.trust_problem]
    else:
        if pkg.flags & 1 and _signing_key() is None:
            notes.append("signature not verified (PRECOMPILE_SIGNING_KEY not set)")
        compat = compat_problems(pkg)
        if compat:
            status, problems = "incompatible", compat
        else:
            changed, unchecked = source_changes(pkg.env.manifest.get("sources", []))
            if changed:
                status, problems = "stale", changed
            notes.extend(f"not checked: {u}" for u in unchecked)
    return {"key": pkg.key, "path": pkg.path, "function": pkg.function or None,
            "status": status, "ok": status == "ok", "problems": problems, "notes": notes}


def _verify_targets(ref: str | None) -> tuple[str, list[Pkg]]:
    if ref is not None and os.path.isfile(ref):
        return ref, [load_file(ref)]
    if ref is None or _looks_like_store(ref):
        store = open_store(ref)
        return store.url, list(iter_store(store))
    return ref, [find_package(ref, None)]


def cmd_verify(args: argparse.Namespace) -> int:
    _add_cwd_to_path()
    where, pkgs = _verify_targets(args.target)
    results = [verify_pkg(p) for p in pkgs]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        _print_json(results)
        return EXIT_PROBLEMS if bad else EXIT_OK
    for r in results:
        first = r["problems"][0].splitlines()[0] if r["problems"] else ""
        more = f" (+{len(r['problems']) - 1} more)" if len(r["problems"]) > 1 else ""
        what = r["function"] or "?"
        line = f"{r['status'].upper():<13} {r['key']}  {what}"
        if first:
            line += f": {first}{more}"
        print(line)
        if args.verbose:
            for prob in r["problems"]:
                for ln in prob.splitlines()[1:]:
                    print(f"    {ln}")
            for n in r["notes"]:
                print(f"    note: {n}")
    if not results:
        print(f"no packages in {where}")
    else:
        print(f"{len(results) - len(bad)} ok, {len(bad)} with problems"
              + ("" if args.verbose or not bad else "  (-v for details)"))
    return EXIT_PROBLEMS if bad else EXIT_OK


# ======================================================================= explain


def _add_cwd_to_path() -> None:
    """Find the user's modules the way ``python -m`` would: from the current directory."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def resolve_ref(ref: str) -> tuple[Any, Any]:
    """``module:qualname`` (or ``module.qualname``) -> (object, precompile impl or None)."""
    _add_cwd_to_path()
    if ":" in ref:
        mod_name, _, qualname = ref.partition(":")
        candidates = [(mod_name, qualname)]
    else:
        parts = ref.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    last_error: Exception | None = None
    for mod_name, qualname in candidates:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # keep --json output clean
                module = importlib.import_module(mod_name)
        except ImportError as e:
            last_error = e
            continue
        except Exception as e:
            raise CliError(f"importing {mod_name} failed: {type(e).__name__}: {e}") from e
        obj: Any = module
        for part in qualname.split("."):
            if part == "<locals>":
                raise CliError(f"{ref}: functions defined inside other functions cannot be "
                               "looked up; name the outer function's module-level object")
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise CliError(f"{mod_name} has no attribute path {qualname!r}") from None
        return unwrap_target(obj)
    raise CliError(f"cannot import a module for {ref!r}: {last_error}. Use module:qualname "
                   "and run from the project directory (or set PYTHONPATH)")


def unwrap_target(obj: Any) -> tuple[Any, Any]:
    """What precompile keys on for ``obj``: the impl behind a ``precompile.cached`` wrapper,
    the function behind ``torch.compile``, ``functools.wraps`` layers, an nn.Module's
    ``forward``. Returns (target, impl or None)."""
    import torch

    from precompile import _torch

    impl = None
    for _ in range(20):
        pc = getattr(obj, "_precompile", None)
        if pc is not None and hasattr(pc, "target") and hasattr(pc, "backend_desc"):
            impl, obj = pc, pc.target
            continue
        parts = _torch.unwrap_compiled(obj)
        if parts is not None:
            obj = parts.original
            continue
        break
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        obj = obj.forward
    return obj, impl


def _main_code(obj: Any) -> tuple[Any, str]:
    from precompile import api

    try:
        return api._main_code(obj)
    except TypeError as e:
        raise CliError(str(e)) from e


def _identity_failures(pkg: Pkg) -> tuple[int, list[str]]:
    """(main-frame entries whose identity checks all hold, failures) against live globals."""
    from precompile import identity

    manifest = pkg.env.manifest
    ok_main, failures = 0, []
    for fd in manifest.get("frames", []):
        mod = sys.modules.get(fd.get("module", ""))
        if mod is None:
            continue
        for i, ed in enumerate(fd.get("entries", []), 1):
            entry_ok = True
            for c in ed.get("identity", []):
                try:
                    holds, detail = identity.check_before_call(c["source"], c["fingerprint"],
                                                               mod.__dict__)
                except Exception:  # noqa: BLE001, S112 - a check we cannot evaluate is no verdict
                    continue
                if holds is False:
                    entry_ok = False
                    failures.append(f"{fd.get('qualname')} entry {i}: {c['source']} is no longer "
                                    f"the object it was compiled for ({detail})")
            if entry_ok and fd.get("role") == "main":
                ok_main += 1
    return ok_main, failures


def explain_pkg(pkg: Pkg, code: Any, module: str, impl: Any,
                label: str | None = None) -> dict[str, Any]:
    from precompile import keys

    stored = pkg.factors
    device = stored.get("device", "none")
    device_types = [] if device in ("", "none") else device.split(",")
    backend = impl.backend_desc if impl is not None else stored.get("backend", "")
    now = keys.key_factors(code, module, backend,
                           dynamic=impl.dynamic if impl is not None else None,
                           fullgraph=impl.fullgraph if impl is not None else False,
                           device_types=device_types, label=label)
    if impl is None:  # call-site options only a precompile wrapper knows: take the stored ones
        for name in ("backend", "dynamic", "fullgraph"):
            now[name] = stored.get(name, now[name])
    for name in ("module_tree", "closure"):  # depend on live objects only the program has
        if name in stored:
            now[name] = stored[name]
    reasons = []
    if not pkg.trusted:
        reasons.append(f"the library will not load it: {pkg.untrusted_reason}")
    factor_reasons = keys.explain_factor_change(stored, now)
    reasons.extend(factor_reasons)
    changed, unchecked = source_changes(pkg.env.manifest.get("sources", []))
    # Identity checks are resolved (never evaluated: see guard_path.py) for trusted ones only.
    ok_main, id_failures = _identity_failures(pkg) if pkg.trusted else (0, [])
    main_entries = sum(len(f.get("entries", [])) for f in pkg.env.manifest.get("frames", [])
                       if f.get("role") == "main")
    if main_entries and not ok_main and not changed and not factor_reasons:
        reasons.append("no entry of the function still applies: " + "; ".join(id_failures))
    would_hit = not reasons and not changed and main_entries > 0
    if not main_entries and not reasons and not changed:
        reasons.append("the package holds no entry for the function itself")
    return {"key": pkg.key, "path": pkg.path, "saved": pkg.meta.get("saved"),
            "entries": pkg.meta.get("entries"), "would_hit": would_hit,
            "expected_key": keys.package_key(now), "reasons": reasons,
            "source_changes": changed, "unchecked_sources": unchecked,
            "identity_failures": id_failures,
            "options_known": impl is not None}


def cmd_explain(args: argparse.Namespace) -> int:
    from precompile import keys

    target, impl = resolve_ref(args.ref)
    from precompile import api

    code, module = _main_code(target)
    label = api._function_label(target)
    function = label or f"{module}:{code.co_qualname}"
    if args.cache:
        store = open_store(args.cache)
    elif impl is not None and getattr(impl, "store", None) is not None:
        store = impl.store  # the decorator's own cache_dir=/store=
    else:
        store = open_store(None)
    pkgs = list(iter_store(store))
    unreadable = [p for p in pkgs if p.env is None]
    mine = [p for p in pkgs if p.env is not None and p.function == function]
    results = [explain_pkg(p, code, module, impl, label) for p in mine]
    results.sort(key=lambda r: (not r["would_hit"], len(r["reasons"]) + len(r["source_changes"]),
                                -(r["saved"] or 0)))
    hit = bool(results) and results[0]["would_hit"]
    doc = {"function": function, "code_fingerprint": keys.code_fingerprint(code),
           "cache": store.url, "would_hit": hit, "packages": results,
           "unreadable_packages": [p.key for p in unreadable]}
    if args.json:
        _print_json(doc)
        return EXIT_OK if hit else EXIT_PROBLEMS
    print(f"{function}  (cache {store.url})")
    if not results:
        print(f"would MISS: no package for {function} in the cache ({len(pkgs)} packages "
              "looked at); the first call compiles and stores one")
        if unreadable:
            print(f"  {len(unreadable)} packages could not be read: "
                  "see `precompile verify`")
        return EXIT_PROBLEMS
    if hit:
        best = results[0]
        print(f"would HIT: package {best['key']} ({best['entries']} entries, saved "
              f"{fmt_time(best['saved'])})")
        if not best["options_known"]:
            print("  (backend/dynamic/fullgraph compared as stored: the object named is not a "
                  "precompile.cached wrapper)")
        _print_notes(best)
        return EXIT_OK
    print(f"would MISS: {len(results)} stored package(s) for {function}, none applies")
    for r in results:
        print(f"  package {r['key']} (saved {fmt_time(r['saved'])}):")
        for reason in r["reasons"] + r["source_changes"]:
            first, *rest = reason.splitlines()
            print(f"    - {first}")
            for ln in rest:
                print(f"      {ln}")
        _print_notes(r, indent="    ")
    return EXIT_PROBLEMS


def _print_notes(r: dict[str, Any], indent: str = "  ") -> None:
    if r["would_hit"]:
        for f in r["identity_failures"]:
            print(f"{indent}note: entry will not install: {f}")
    for u in r["unchecked_sources"]:
        print(f"{indent}note: not checked: {u}")


# ========================================================================= prune


def _mtime(pkg: Pkg) -> float | None:
    if pkg.path:
        with contextlib.suppress(OSError):
            return os.stat(pkg.path).st_mtime
        return None
    return pkg.modified


def _stale_reason(pkg: Pkg) -> str | None:
    if pkg.env is None:
        return f"corrupt: {pkg.error}"
    if not pkg.signature_ok:
        return pkg.signature
    compat = compat_problems(pkg)
    return "; ".join(compat) if compat else None


def cmd_prune(args: argparse.Namespace) -> int:
    from precompile.errors import StoreError

    if args.max_size is None and args.older_than is None and not args.stale:
        raise CliError("say what to prune: --max-size SIZE, --older-than AGE and/or --stale")
    store = open_store(args.cache)
    now = time.time()
    # Only --stale needs the packages' bytes; sizes and times come from stat().
    pkgs = {p.key: p for p in iter_store(store, read=args.stale)}
    plan: dict[str, str] = {}  # key -> why it goes
    if args.stale:
        for p in pkgs.values():
            reason = _stale_reason(p)
            if reason:
                plan[p.key] = f"stale: {reason}"
    if args.older_than is not None:
        for p in pkgs.values():
            used = p.last_used or p.modified
            if used is not None and now - used > args.older_than and p.key not in plan:
                plan[p.key] = f"last used {fmt_age(used, now)}"
    if args.max_size is not None:
        total = sum(p.size or 0 for k, p in pkgs.items() if k not in plan)
        for p in sorted(pkgs.values(), key=lambda p: p.last_used or p.modified or 0):
            if total <= args.max_size:
                break
            if p.key in plan:
                continue
            plan[p.key] = f"over --max-size (least recently used, {fmt_age(p.last_used, now)})"
            if args.force or not _is_recent(p, now):
                total -= p.size or 0  # a recent one stays and still counts towards the total
    removed, kept = [], []
    for key, why in plan.items():
        p = pkgs[key]
        item = {"key": key, "path": p.path, "size": p.size, "reason": why}
        if not args.force and _is_recent(p, time.time()):
            kept.append({**item, "kept_because": f"written {fmt_age(_mtime(p))}: less than "
                                                 f"{int(RECENT_SECONDS)}s ago (use --force)"})
            continue
        if args.dry_run:
            removed.append(item)
            continue
        try:
            outcome = _delete_locked(store, p, stale=why.startswith("stale:"), force=args.force)
        except StoreError as e:
            kept.append({**item, "kept_because": f"could not delete: {e}"})
            continue
        if outcome is None:
            removed.append(item)
        else:
            kept.append({**item, "kept_because": outcome})
    if not args.dry_run and hasattr(store, "clean_temp_files"):
        with contextlib.suppress(Exception):
            store.clean_temp_files()
    freed = sum(r["size"] or 0 for r in removed)
    remaining = sum(p.size or 0 for p in pkgs.values()) - freed
    if args.json:
        _print_json({"removed": removed, "kept": kept, "freed": freed, "remaining": remaining,
                     "dry_run": bool(args.dry_run)})
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    for r in removed:
        print(f"{verb} {r['key']} ({fmt_size(r['size'])}): {r['reason']}")
    for k in kept:
        print(f"kept    {k['key']}: {k['kept_because']}")
    print(f"{verb} {len(removed)} packages, {fmt_size(freed)}; {fmt_size(remaining)} "
          f"{'would be ' if args.dry_run else ''}left in {store.url}")
    return EXIT_OK


def _is_recent(pkg: Pkg, now: float) -> bool:
    m = _mtime(pkg)
    return m is not None and now - m < RECENT_SECONDS


def _delete_locked(store: Any, pkg: Pkg, *, stale: bool, force: bool) -> str | None:
    """Delete under the store's lock, re-checking what justified it (another process may
    have rewritten the package since it was read). Returns why it was kept, or None."""
    with store.lock(pkg.key, timeout=10.0):
        fresh = load_from_store(store, pkg.key, read=stale)
        if fresh is None:
            return "already gone"
        if not force:
            if _is_recent(fresh, time.time()):
                return f"rewritten {fmt_age(_mtime(fresh))} by another process"
            changed = (fresh.data != pkg.data if stale else
                       (fresh.size, fresh.modified) != (pkg.size, pkg.modified))
            if changed:
                return "rewritten by another process since it was read"
        if stale and _stale_reason(fresh) is None:
            return "another process replaced it with a good package"
        store.delete(pkg.key)
    return None


# ========================================================================= stats


def read_stats_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise CliError(f"no stats file at {path}: nothing has written one yet (run pytest with "
                       f"-p precompile.pytest_plugin and {STATS_FILE_ENV} set)") from None
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read stats file {path}: {e}") from e
    if isinstance(doc, dict) and isinstance(doc.get("stats"), dict):
        return doc
    if isinstance(doc, dict) and "hits" in doc:  # a bare precompile.stats() dump
        return {"version": STATS_FILE_VERSION, "source": "precompile.stats()", "stats": doc}
    raise CliError(f"{path} is not a precompile stats file")


def cmd_stats(args: argparse.Namespace) -> int:
    from precompile import settings

    path = args.file or settings.text(settings.STATS_FILE)
    if not path:
        doc = {"error": "no stats file", "fields": STATS_FIELDS}
        if args.json:
            _print_json(doc)
            return EXIT_OK
        print("precompile counts hits and misses per process: call precompile.stats() in your "
              "program,\nor let a run write them to a file and read it here:\n\n"
              f"  {STATS_FILE_ENV}=stats.json pytest -p precompile.pytest_plugin ...\n"
              f"  precompile stats --file stats.json   (or with {STATS_FILE_ENV} set)\n\n"
              "A program can write one itself: json.dump(precompile.stats(), open(path, 'w')).\n"
              "\nprecompile.stats() fields:")
        for name, what in STATS_FIELDS.items():
            print(f"  {name:<14} {what}")
        return EXIT_OK
    doc = read_stats_file(path)
    if args.json:
        _print_json(doc)
        return EXIT_OK
    when = fmt_time(doc.get("written"))
    print(f"{path}  (from {doc.get('source', '?')}, written {when})")
    for line in stats_summary_lines(doc["stats"]):
        print(line)
    secs = doc["stats"].get("load_seconds")
    if isinstance(secs, (int, float)):
        print(f"  load time {secs:.3f}s")
    return EXIT_OK


# ========================================================================== main


def cmd_export(args: argparse.Namespace) -> int:
    """Write every package of a cache into one archive (a tar of .pcpkg files)."""
    import io
    import tarfile

    store = open_store(args.cache)
    count = 0
    tmp = f"{args.file}.tmp-{os.getpid()}"
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for key in store_keys(store):
                data = store.get(key)
                if data is None:
                    continue
                info = tarfile.TarInfo(f"{key}.pcpkg")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(data))
                count += 1
        os.replace(tmp, args.file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    result = {"file": args.file, "packages": count}
    if args.json:
        _print_json(result)
    else:
        print(f"exported {count} packages to {args.file}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Put an archive's packages into a cache, all or nothing (precompile/archive.py): every
    package is verified first; one already in the cache is replaced only by a newer one."""
    from precompile import archive

    store = open_store(args.cache)
    try:
        with archive.staging_dir() as staging:
            staged, skipped = archive.stage(args.file, staging, signing_key=_signing_key(),
                                            max_bytes=args.max_package_size)
            imported, not_newer = archive.commit(store, staged, staging)
    except archive.ArchiveError as e:
        raise CliError(str(e)) from e
    except OSError as e:  # the staging directory itself (disk full, no /tmp)
        raise CliError(f"cannot stage the archive: {e}; nothing was imported") from e
    skipped += not_newer
    result = {"file": args.file, "imported": imported, "skipped": skipped}
    if args.json:
        _print_json(result)
    else:
        print(f"imported {imported} packages into {store.url}")
        for line in skipped:
            print(f"  skipped {line}")
    return EXIT_OK if imported or not skipped else EXIT_PROBLEMS


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

    p = add("ls", "list the packages in a cache")
    p.add_argument("cache", nargs="?", metavar="CACHE")
    p.set_defaults(func=cmd_ls)

    p = add("inspect", "show one package: frames, guards, resume functions, artifacts, keys")
    p.add_argument("package", metavar="PACKAGE", help="key (or unique prefix) or .pcpkg path")
    p.add_argument("--cache", metavar="CACHE", help="where to look the key up")
    p.add_argument("--no-guards", action="store_true",
                   help="do not unpickle guard state (faster; shows counts only)")
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
    p.set_defaults(func=cmd_import)

    p = add("stats", "show the counters a run wrote to $PRECOMPILE_STATS_FILE")
    p.add_argument("--file", metavar="FILE", help=f"stats file (default ${STATS_FILE_ENV})")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"precompile {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `precompile ls | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
