"""``ls``, ``inspect`` and ``verify``: what a cache holds, and whether this machine can use it.

Each command builds the document ``--json`` prints; ``text`` renders the same document for
people, so the two outputs never disagree.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from . import _library as lib
from . import text
from .common import EXIT_OK, EXIT_PROBLEMS, user_module_dirs
from .inventory import find_package, iter_store, load_file, looks_like_store, open_store

if TYPE_CHECKING:
    from precompile.read.verdict import StoredPackage as Pkg

# ------------------------------------------------------------------------- ls


def summary(pkg: Pkg) -> dict[str, Any]:
    """One package in a line of ``ls`` (and the head of ``inspect``)."""
    module, _, qualname = pkg.function.partition(":")
    return {
        "key": pkg.key, "path": pkg.path, "function": pkg.function or None,
        "module": module or None, "qualname": qualname or None,
        "entries": pkg.meta.get("entries"),
        "frames": len(pkg.manifest.get("frames", [])) if pkg.env is not None else None,
        "backend": pkg.meta.get("backend_name"), "size": pkg.size, "created": pkg.created,
        "saved": pkg.meta.get("saved"), "last_used": pkg.last_used,
        "torch": pkg.factors.get("torch"), "python": pkg.factors.get("python"),
        "signed": pkg.signed, "ok": pkg.env is not None, "error": pkg.error,
        "trusted": pkg.trusted, "untrusted_reason": pkg.untrusted_reason,
    }


def cmd_ls(args: argparse.Namespace) -> int:
    store = open_store(args.cache)
    rows = sorted((summary(p) for p in iter_store(store)),
                  key=lambda r: (r["function"] or "~", -(r["saved"] or 0)))
    text.show(rows, args.json, lambda: text.print_ls(rows, store.url))
    return EXIT_OK


# -------------------------------------------------------------------- inspect


def readable_guards(blob: bytes) -> dict[str, Any]:
    """Dynamo's pickled GuardsState as a list of readable guards. Only called on packages
    that passed ``format.decode`` (every byte checksummed) and the signing policy."""
    with contextlib.redirect_stdout(sys.stderr):
        state = lib.unpickle_guards_state(blob)  # verified package, see docstring
    og = state.output_graph
    sizes = _input_sizes(og)
    guards = [_guard_dict(g, sizes) for g in getattr(og, "guards", None) or []]
    guards.sort(key=lambda d: (d["name"] == "", d["name"], d["type"]))
    shape = []
    with contextlib.suppress(Exception):
        shape = [str(e) for e in state.shape_code_parts.verbose_code_parts.exprs]
    return {"guards": guards, "shape_guards": shape}


def _input_sizes(og: Any) -> dict[str, Any]:
    """Source name -> the sizes and strides Dynamo recorded for that input tensor (shown
    with its TENSOR_MATCH guard); a source without a readable name is left out."""
    sizes = {}
    for src, ss in (getattr(og, "input_source_to_sizes_strides", None) or {}).items():
        with contextlib.suppress(Exception):
            sizes[_source_label(src)] = ss
    return sizes


def _source_label(src: Any) -> str:
    name = getattr(src, "name", None)
    return str(name() if callable(name) else name)


def _guard_dict(guard: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    kind = guard.create_fn_name()
    return {"name": guard.name or "", "type": kind,
            "types": sorted(set(guard.guard_types or [])) or [kind],
            "detail": _tensor_detail(guard.name, kind, sizes)}


def _tensor_detail(name: str, kind: str, sizes: dict[str, Any]) -> str:
    """What a TENSOR_MATCH guard pins beyond its name: the sizes and strides recorded for
    its input ("" for other guards, and for inputs without a recorded size)."""
    if name not in sizes or "TENSOR_MATCH" not in kind:
        return ""
    ss = sizes[name]
    return f"size={tuple(ss.get('size', ()))} stride={tuple(ss.get('stride', ()))}"


def _code_info(code: Any) -> dict[str, Any] | None:
    if code is None:
        return None
    return {"name": getattr(code, "co_qualname", None), "file": getattr(code, "co_filename", None),
            "line": getattr(code, "co_firstlineno", None),
            "bytecode_bytes": len(getattr(code, "co_code", b""))}


def _entry_dict(pkg: Pkg, index: int, ed: dict[str, Any], guards: bool) -> dict[str, Any]:
    artifacts, blobs = pkg.manifest["artifacts"], pkg.env.blobs
    entry: dict[str, Any] = {
        "index": index,
        "guards_blob": ed.get("guards"),
        "identity_checks": ed.get("identity", []),
        # every leaf guard the entry checks when installed, read without unpickling
        "guard_tree": [str(item)[17:] for item in ed.get("guard_tree", [])],
        "backends": [{"id": b, "kind": artifacts.get(b, {}).get("kind"),
                      "size": len(blobs.get(artifacts.get(b, {}).get("blob"), b""))}
                     for b in ed.get("backends", [])],
        "imports": ed.get("imports", {}),
        "constant_calls": ed.get("constant_calls", []),
        "code": _code_info(ed.get("code")),
    }
    if guards:
        entry.update(_guards_of(pkg, blobs.get(ed.get("guards"))))
    return entry


def _guards_of(pkg: Pkg, blob: bytes | None) -> dict[str, Any]:
    """The entry's readable guards, or why they are not shown. Only a trusted package's
    guard state is ever unpickled."""
    if blob is None:
        return {"guards_error": "guard blob missing from the package"}
    if not pkg.trusted:
        return {"guards_error": "not unpickled: the library would not load this package "
                                f"({pkg.untrusted_reason})"}
    try:
        return readable_guards(blob)
    except Exception as e:  # noqa: BLE001 - any unpickling trouble: say so, go on
        return {"guards_error": f"unreadable ({type(e).__name__}: {e})"}


def _frame_dict(pkg: Pkg, fd: dict[str, Any], guards: bool) -> dict[str, Any]:
    return {
        "role": fd.get("role"), "module": fd.get("module"), "qualname": fd.get("qualname"),
        "fingerprint": fd.get("fingerprint"), "global_name": fd.get("global_name"),
        "skipped": bool(fd.get("skipped")), "code": _code_info(fd.get("code")),
        "entries": [_entry_dict(pkg, i, ed, guards)
                    for i, ed in enumerate(fd.get("entries", []), 1)],
    }


def _artifact_dict(bid: str, ad: dict[str, Any], blobs: dict[str, bytes]) -> dict[str, Any]:
    return {"id": bid, "kind": ad.get("kind"), "blob": ad.get("blob"),
            "size": len(blobs.get(ad.get("blob"), b"")),
            "has_backward": bool(ad.get("has_backward")),
            "parts": "forward+backward" if ad.get("has_backward") else "forward only"}


def inspect_dict(pkg: Pkg, *, guards: bool = True) -> dict[str, Any]:
    """Everything in one package: frames, entries, guards, artifacts, sources, factors."""
    out = summary(pkg)
    out["signature"] = {"signed": pkg.signed, "status": pkg.signature, "ok": pkg.signature_ok}
    out["trust"] = {"trusted": pkg.trusted, "reason": pkg.untrusted_reason}
    if pkg.env is not None:
        out.update(_contents(pkg, guards))
    return out


def _contents(pkg: Pkg, guards: bool) -> dict[str, Any]:
    """What a decoded package holds, from its manifest and metadata (nothing is unpickled
    but the guard state of a trusted package, with ``guards``). Decoding validated the
    manifest's shape (``verdict.decode``): its artifacts are a map."""
    manifest, blobs = pkg.manifest, pkg.env.blobs
    fields = ("module", "qualname", "first_line", "last_line", "sha256")
    return {
        "frames": [_frame_dict(pkg, fd, guards) for fd in manifest.get("frames", [])],
        "artifacts": [_artifact_dict(bid, ad, blobs)
                      for bid, ad in sorted(manifest["artifacts"].items())],
        "sources": [{k: s.get(k) for k in fields} for s in manifest.get("sources", [])],
        "devices": manifest.get("devices", []), "bypasses": manifest.get("bypasses", []),
        "factors": pkg.meta.get("factors", {}), "system": pkg.meta.get("system", {}),
        "format": {"flags": pkg.flags},
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    pkg = find_package(args.package, args.cache, trust=args.trust)
    doc = inspect_dict(pkg, guards=not args.no_guards)
    text.show(doc, args.json, lambda: text.print_inspect(doc))
    return EXIT_OK if pkg.env is not None else EXIT_PROBLEMS


# --------------------------------------------------------------------- verify


def verify_pkg(pkg: Pkg) -> dict[str, Any]:
    """Whether this machine's library would load ``pkg``, and if not, why not (the
    library's verdict)."""
    verdict = lib.verdict.judge(pkg, user_module_dirs())
    return {"key": pkg.key, "path": pkg.path, "function": pkg.function or None,
            "status": verdict.status, "ok": verdict.ok, "problems": verdict.problems,
            "notes": verdict.notes}


def _verify_targets(ref: str | None) -> tuple[str, list[Pkg]]:
    if ref is not None and os.path.isfile(ref):  # judged as precompile.load would judge it
        return ref, [load_file(ref, open_store(None), trust=True)]
    if ref is None or looks_like_store(ref):
        store = open_store(ref)
        return store.url, list(iter_store(store))
    return ref, [find_package(ref, None)]


def cmd_verify(args: argparse.Namespace) -> int:
    where, pkgs = _verify_targets(args.target)
    results = [verify_pkg(p) for p in pkgs]
    text.show(results, args.json,
              lambda: text.print_verify(results, where, verbose=args.verbose))
    return EXIT_PROBLEMS if any(not r["ok"] for r in results) else EXIT_OK
