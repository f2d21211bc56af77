"""A package to and from the msgpack manifest of ``format.py``, and nothing else.

Both directions are pure: no files read, nothing registered, no process state touched. What
a save needs from outside (the freshest artifacts, kernel files) the recorder gathers first;
what a load makes of a package (registering artifacts, installing code) is ``install.py``'s.
"""
from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

from .artifacts import BackendArtifact
from ..errors import FormatError
from ..format.envelope import sha256_hex
from .keys import SourceRange
from .model import (ROLE_MAIN, ROLE_RESUME, ROLES, ConstantCall, FrameRecord, GuardedEntry,
                    IdentityCheck, Package, StateInit)

_MAX_BYPASSES = 50  # the most recent reasons an entry was not stored, kept for `inspect`


def to_manifest(pkg: Package, share_kernels: bool = False
                ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, blobs) for format.encode. Entries whose artifacts are missing are left
    out, so what is written always installs. With ``share_kernels`` the kernels are named
    by digest only: the writer stores their bytes once in the store (``shared_blobs``)."""
    blobs: dict[str, bytes] = {}
    used: set[str] = set()
    frames = [_frame_dict(f, pkg, blobs, used) for f in pkg.frames]
    arts = _artifact_dicts(pkg, sorted(used), blobs)
    manifest = {
        "key": pkg.key,
        "compile_seconds": round(pkg.compile_seconds, 3),
        "kernels": _kernel_dicts(pkg, blobs, share_kernels),
        "unbundled_kernels": sorted(pkg.unbundled),
        "function": pkg.factors.get("function", ""),
        "frames": frames,
        "artifacts": arts,
        "sources": [r.to_dict() for r in pkg.sources.values()],
        "devices": sorted(pkg.device_types),
        "bypasses": list(pkg.bypasses[-_MAX_BYPASSES:]),
    }
    return manifest, blobs


def _artifact_dicts(pkg: Package, backend_ids: list[str],
                    blobs: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The artifacts the stored entries run, their bytes added to ``blobs``."""
    arts = {}
    for backend_id in backend_ids:
        art = pkg.artifacts[backend_id]
        blobs[art.sha256] = art.data
        arts[backend_id] = {"kind": art.kind, "blob": art.sha256, "has_backward": art.has_backward}
    return arts


def _kernel_dicts(pkg: Package, blobs: dict[str, bytes],
                  share_kernels: bool) -> list[dict[str, str]]:
    """Every kernel by path and digest: bundled ones' bytes added to ``blobs`` (unless
    shared through the store), then those already only referenced."""
    kernels = []
    for rel in sorted(pkg.kernel_blobs):
        data = pkg.kernel_blobs[rel]
        if not share_kernels:
            blobs[sha256_hex(data)] = data
        kernels.append({"path": rel, "blob": sha256_hex(data)})
    for rel in sorted(set(pkg.kernel_refs) - set(pkg.kernel_blobs)):
        kernels.append({"path": rel, "blob": pkg.kernel_refs[rel]})
    return kernels


def _frame_dict(f: FrameRecord, pkg: Package, blobs: dict[str, bytes],
                used: set[str]) -> dict[str, Any]:
    """A frame with the entries whose artifacts all exist (their guards added to
    ``blobs``, their backend ids to ``used``): an entry without its artifacts could never
    install."""
    entries = []
    for e in f.entries:
        if all(b in pkg.artifacts for b in e.backend_ids):
            blobs[e.guards_sha] = pkg.guard_blobs[e.guards_sha]
            used.update(e.backend_ids)
            entries.append(_entry_dict(e))
    return {
        "role": f.role, "module": f.module, "qualname": f.qualname,
        "fingerprint": f.fingerprint,
        "code": f.code if f.role == ROLE_RESUME else None,
        "global_name": f.global_name, "skipped": f.skipped, "entries": entries,
    }


def _entry_dict(e: GuardedEntry) -> dict[str, Any]:
    return {
        "guards": e.guards_sha,
        "code": e.dynamo_code,
        "backends": e.backend_ids,
        "imports": e.import_sources,
        "identity": [c.to_dict() for c in e.identity_checks],
        "guard_tree": e.guard_tree,
        "inference_mode": e.inference_mode,
        "state_inits": [i.to_dict() for i in e.state_inits],
        "constant_calls": [c.to_dict() for c in e.constant_calls],
    }


def from_manifest(main_code: types.CodeType, module: str, factors: dict[str, str],
                  manifest: dict[str, Any], blobs: dict[str, bytes]) -> Package:
    """The package a manifest describes. Its frames are bound to this process's code
    objects by the installer; until then they are only data.

    The envelope was checksummed, but a manifest can still be malformed (a bug, or a
    tampered file with a recomputed checksum): any shape error is a FormatError.
    """
    try:
        return _from_manifest(main_code, module, factors, manifest, blobs)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"package manifest is malformed ({type(e).__name__}: {e})") from None


def _from_manifest(main_code: types.CodeType, module: str, factors: dict[str, str],
                   manifest: dict[str, Any], blobs: dict[str, bytes]) -> Package:
    pkg = Package(main_code, module, _expect(manifest["key"], str), dict(factors))
    for rng in manifest.get("sources", []):
        r = _source_range(rng)
        pkg.sources[(r.module, r.qualname, r.first_line)] = r
    pkg.device_types = set(_expect_each(manifest.get("devices", []), str))
    pkg.compile_seconds = float(_expect(manifest.get("compile_seconds", 0.0), (int, float)))
    pkg.frames = [_frame(fd, main_code, blobs, pkg.guard_blobs) for fd in manifest["frames"]]
    for kd in manifest.get("kernels", []):
        _add_kernel(pkg, kd, blobs)
    pkg.unbundled = set(_expect_each(manifest.get("unbundled_kernels", []), str))
    for backend_id, ad in manifest["artifacts"].items():
        pkg.artifacts[_expect(backend_id, str)] = BackendArtifact(
            backend_id, _expect(ad["kind"], str), _expect(blobs[ad["blob"]], bytes),
            bool(ad["has_backward"]))
    return pkg


def _add_kernel(pkg: Package, kd: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """A kernel's bytes from this package, or its digest when the store holds it once
    (``shared_blobs``). Its path stays inside the cache dir it is written to."""
    rel = _expect(kd["path"], str)
    if os.path.isabs(rel) or ".." in rel.split(os.sep):
        raise ValueError(f"kernel path {rel!r} escapes the cache dir")
    digest = _expect(kd["blob"], str)
    if digest in blobs:
        pkg.kernel_blobs[rel] = _expect(blobs[digest], bytes)
    elif _is_digest(digest):
        pkg.kernel_refs[rel] = digest
    else:
        raise ValueError(f"kernel {rel!r} names no blob")


def _is_digest(text: str) -> bool:
    """A sha256 as ``sha256_hex`` spells it: 64 lowercase hex digits."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _source_range(d: dict[str, Any]) -> SourceRange:
    r = SourceRange.from_dict(d)
    _expect_each((r.module, r.qualname, r.sha256, r.text), str)
    _expect_each((r.first_line, r.last_line), int)
    return r


def _frame(fd: dict[str, Any], main_code: types.CodeType, blobs: dict[str, bytes],
           guard_blobs: dict[str, bytes]) -> FrameRecord:
    role = _expect(fd["role"], str)
    if role not in ROLES:
        raise ValueError(f"unknown frame role {role!r}")
    code = _frame_code(fd, role, main_code)
    frame = FrameRecord(role, _expect(fd["module"], str), _expect(fd["qualname"], str),
                        _expect(fd["fingerprint"], str), code,
                        fd.get("global_name"), skipped=bool(fd.get("skipped")))
    if role == ROLE_RESUME:
        _expect(frame.global_name, str)
    for ed in fd["entries"]:
        guard_blobs[ed["guards"]] = _expect(blobs[ed["guards"]], bytes)
        frame.entries.append(_entry(ed))
    return frame


def _frame_code(fd: dict[str, Any], role: str, main_code: types.CodeType) -> types.CodeType:
    """Only a resume frame stores its code (Dynamo generated it, no process has it); the
    main frame is this call's code, and a user frame's is found again by name when it is
    installed (``main_code`` stands in until then)."""
    if role == ROLE_MAIN:
        return main_code
    return _expect(fd["code"] or main_code, types.CodeType)


def _entry(ed: dict[str, Any]) -> GuardedEntry:
    return GuardedEntry(
        ed["guards"], _expect(ed["code"], types.CodeType),
        _expect_each(ed["backends"], str),
        {_expect(k, str): _expect(v, str) for k, v in ed["imports"].items()},
        [IdentityCheck(_expect(c["source"], str), _expect(c["guard_type"], str),
                       _expect(c["fingerprint"], str)) for c in ed["identity"]],
        # written before guard parity: empty, so the installer refuses the entry
        _expect_each(ed.get("guard_tree", []), str),
        _expect(ed.get("inference_mode", False), bool),
        [_state_init(d) for d in ed.get("state_inits", [])],
        [ConstantCall.from_dict(d) for d in ed.get("constant_calls", [])])


def _state_init(d: dict[str, Any]) -> StateInit:
    calls = _expect_each(_expect(d["calls"], list), list)
    for call in calls:
        for arg in call:
            _state_init_arg(arg)
    return StateInit(_expect(d["source"], str), _expect(d["kind"], str), calls)


# The shapes of an ``_init_group`` argument (``_torch.optimizer_state.encode_args``), by
# its first item: ["list"], ["group", index], ["const", scalar].
_STATE_INIT_ARGS: dict[str, Callable[[list[Any]], bool]] = {
    "list": lambda arg: len(arg) == 1,
    "group": lambda arg: len(arg) == 2 and type(arg[1]) is int,
    "const": lambda arg: len(arg) == 2 and isinstance(arg[1], (type(None), bool, int, float, str)),
}


def _state_init_arg(arg: Any) -> None:
    """One ``_init_group`` argument of a known shape, or TypeError/ValueError."""
    _expect(arg, list)
    well_formed = _STATE_INIT_ARGS.get(arg[0]) if arg and type(arg[0]) is str else None
    if well_formed is None or not well_formed(arg):
        raise ValueError(f"malformed optimizer state argument {arg!r}")


def _expect(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind):
        name = getattr(kind, "__name__", None) or " or ".join(k.__name__ for k in kind)
        raise TypeError(f"expected {name}, found {type(value).__name__}")
    return value


def _expect_each(items: Any, kind: type) -> list[Any]:
    """``items`` as a list, every one of them a ``kind`` (else the TypeError of the first)."""
    return [_expect(item, kind) for item in items]
