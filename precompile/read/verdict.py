"""Whether this machine would use a stored package: one verdict, for the library and the CLI.

The load path (``loading.verify``) stops at the first problem; ``precompile ls``, ``verify``,
``prune`` and ``explain`` want every problem, in words. Both ask the functions here, so a
package the command line calls usable is one a first call would load, and the other way
round:

* :func:`decode` reads a package's bytes as the library reads them (checksums, manifest
  shape, the signing policy in force, the key it is stored under) into a
  :class:`StoredPackage`, recording what it would conclude instead of raising;
* :func:`system_problems`: the python, torch, platform and GPUs it was compiled for, against
  this machine (no GPU here: "no GPU");
* :func:`source_problems`: sources it inlined that changed since, and those that cannot be
  checked from here;
* :func:`judge`: one :class:`Verdict` in one vocabulary (:data:`STATUSES`);
* :func:`never_loads`: why no process here would ever load it (what ``prune --stale``
  deletes; not a GPU mismatch, since a shared cache serves other machines too).
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from .. import _torch, settings
from ..errors import FormatError, PackageError
from ..format import envelope as format
from ..package import keys
from ..package.manifest import from_manifest
from . import read_path

# ok: a first call here would load it; the others say why not, the first problem deciding.
STATUSES = ("ok", "corrupt", "bad-signature", "untrusted", "incompatible", "stale")
_PLACEHOLDER_CODE = (lambda: None).__code__


@dataclasses.dataclass
class StoredPackage:
    """One stored package as read from its store or file: where it is, and whether the
    library would load it."""

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
    key_problem: str | None = None  # not written for the key it is stored under

    @property
    def meta(self) -> dict[str, Any]:
        return self.env.meta if self.env is not None else {}

    @property
    def manifest(self) -> dict[str, Any]:
        return self.env.manifest if self.env is not None else {}

    @property
    def factors(self) -> dict[str, Any]:
        f = self.meta.get("factors")
        return f if isinstance(f, dict) else {}

    @property
    def function(self) -> str:
        return str(self.meta.get("function") or self.factors.get("function") or "")

    @property
    def created(self) -> float | None:
        return read_path.meta_time(self.meta, "created") or self.modified

    @property
    def signed(self) -> bool:
        return bool(self.flags & format.FLAG_SIGNED)

    @property
    def trusted(self) -> bool:
        """Whether the library would load it: decoded, from a store it accepts, accepted by
        the signing policy in force, and stored under the key it was written for. Only then
        may its pickles be loaded."""
        return (self.env is not None and self.signature_ok and self.trust_problem is None
                and self.key_problem is None)

    @property
    def untrusted_reason(self) -> str | None:
        """Why the library would refuse it (None when trusted), in words."""
        if self.env is None:
            return f"does not decode: {self.error}"
        if not self.signature_ok:
            return self.signature
        return self.trust_problem or self.key_problem


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a first call here would load a package (``status`` "ok"), and if not, every
    problem found; ``notes`` are what could not be checked."""

    status: str  # one of STATUSES
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------- decoding


def decode(pkg: StoredPackage, *, bound: bool = True) -> StoredPackage:
    """Verify ``pkg.data`` (checksums, blob hashes, manifest shape, signature policy, and
    with ``bound`` that it was written for ``pkg.key``) and decode it, recording in ``pkg``
    what the library would conclude."""
    assert pkg.data is not None
    key = settings.signing_key()
    try:
        _, pkg.flags, _ = format.read_header(pkg.data)
        pkg.env, pkg.signature, pkg.signature_ok = _decode_signed(pkg.data, pkg.signed, key)
        _check_manifest(pkg.env)
    except PackageError as e:
        pkg.env, pkg.error = None, str(e)
        pkg.signature, pkg.signature_ok = "unknown (package does not decode)", False
        return pkg
    if bound:
        pkg.key_problem = _key_problem(pkg.env, pkg.key)
    return pkg


def _key_problem(env: Any, key: str) -> str | None:
    """Why ``env`` may not be used under store key ``key`` (not written for it), or None."""
    try:
        read_path.check_bound(env, key)
    except PackageError as e:
        return str(e)
    return None


def _decode_signed(data: bytes, signed: bool, key: bytes | None) -> tuple[Any, str, bool]:
    """(envelope, signature status, whether the signing policy accepts it). The package is
    decoded with the key first, so a good one is decoded once; only a refusal decodes it
    again without the key, to tell a bad signature from a corrupt file."""
    if key is None:
        status = ("signed (not verified: set PRECOMPILE_SIGNING_KEY to verify)" if signed
                  else "unsigned")
        return format.decode(data), status, True
    if signed:
        try:
            return format.decode(data, signing_key=key), ("signed, verified with "
                                                          "PRECOMPILE_SIGNING_KEY"), True
        except PackageError:
            env = format.decode(data)  # raises if the file itself is corrupt
            return env, "signed, but the signature does NOT match PRECOMPILE_SIGNING_KEY", False
    return format.decode(data), ("UNSIGNED, but PRECOMPILE_SIGNING_KEY is set: the library "
                                 "refuses this package"), False


def _check_manifest(env: Any) -> None:
    """Raise FormatError unless the manifest has the shape the library can install (a file
    can pass its checksum and still be malformed: a bug, or a recomputed checksum)."""
    if not isinstance(env.meta.get("factors", {}), dict):
        raise FormatError("package metadata is malformed (factors is not a map)")
    if not _is_string_list(env.manifest.get("bypasses", [])):
        raise FormatError("package manifest is malformed (bypasses is not a list of strings)")
    try:  # the library's own validation (it only builds data; nothing is installed)
        from_manifest(_PLACEHOLDER_CODE, "", {}, env.manifest, env.blobs)
    except FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else it trips on is a malformed manifest
        raise FormatError(f"package manifest is malformed ({type(e).__name__}: {e})") from None


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# ------------------------------------------------------------------- checks


def system_problems(stored: Mapping[str, Any], gpus: Mapping[str, Any],
                    current: Mapping[str, Any] | None = None) -> list[str]:
    """Why this machine cannot use a package written with key factors ``stored`` for the
    GPUs ``gpus``: its python, torch and platform (``current``, default this process's),
    and each GPU it was compiled for against the one here."""
    current = keys.system_factors() if current is None else current
    return _version_problems(stored, current) + _gpu_problems(gpus)


def _version_problems(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each of python, torch and platform that differs from what the package was written for."""
    return [f"package was written for {name} {stored.get(name)}, this process has "
            f"{current.get(name)}; it will be recompiled for this {name}"
            for name in ("python", "torch", "platform") if stored.get(name) != current.get(name)]


def _gpu_problems(gpus: Mapping[str, Any]) -> list[str]:
    """Each GPU recorded at compile time that differs from this machine's (or is absent)."""
    problems = []
    for device, recorded in gpus.items():
        here = _torch.gpu_info(device)
        if recorded and here != recorded:
            problems.append(f"package was compiled for {device} {recorded}, this machine has "
                            f"{here or 'no GPU'}; it will be recompiled here")
    return problems


def source_problems(ranges: list[Any], fallback_dirs: tuple[str, ...] = ()
                    ) -> tuple[list[str], list[str]]:
    """(changed, unchecked): stored inlined source ranges whose text differs now (worded by
    ``keys.changed_sources``), and ranges that cannot be checked here. Modules not imported
    yet are read from their files (found on sys.path, then in ``fallback_dirs``), never
    imported."""
    checkable, unchecked = [], []
    for raw in ranges:
        try:
            rng = keys.SourceRange.from_dict(raw)
        except (KeyError, TypeError):
            unchecked.append(f"malformed source record {raw!r:.80}")
            continue
        why_not = _why_unchecked(rng, fallback_dirs)
        if why_not:
            unchecked.append(why_not)
        else:
            checkable.append(rng)
    changed = keys.changed_sources(checkable, import_modules=False, fallback_dirs=fallback_dirs)
    return changed, unchecked


def _why_unchecked(rng: keys.SourceRange, fallback_dirs: tuple[str, ...]) -> str | None:
    """Why a source range cannot be compared from here, or None when it can."""
    if rng.module == "__main__":
        return (f"{rng.qualname} lines {rng.first_line}-{rng.last_line - 1} in a script run "
                "as __main__ (only the script itself can check them)")
    if rng.module not in sys.modules and keys.find_module_file(rng.module, fallback_dirs) is None:
        return (f"module {rng.module} is not on sys.path here (run from the project directory "
                "or set PYTHONPATH)")
    return None


def _pkg_system_problems(pkg: StoredPackage) -> list[str]:
    gpus = pkg.meta.get("gpus")
    return system_problems(pkg.factors, gpus if isinstance(gpus, dict) else {})


def _refusal(pkg: StoredPackage) -> Verdict | None:
    """The verdict for a package the library refuses before looking inside, or None."""
    if pkg.env is None:
        return Verdict("corrupt", [pkg.error or "does not decode"], [])
    if not pkg.signature_ok:
        return Verdict("bad-signature", [pkg.signature], [])
    problem = pkg.trust_problem or pkg.key_problem
    return Verdict("untrusted", [problem], []) if problem else None


def judge(pkg: StoredPackage, fallback_dirs: tuple[str, ...] = ()) -> Verdict:
    """Whether a first call on this machine would load ``pkg``: every check the load path
    makes that does not need the function itself, the first problem deciding the status."""
    refused = _refusal(pkg)
    if refused is not None:
        return refused
    notes = []
    if pkg.signed and settings.signing_key() is None:
        notes.append("signature not verified (PRECOMPILE_SIGNING_KEY not set)")
    incompatible = _pkg_system_problems(pkg)
    if incompatible:
        return Verdict("incompatible", incompatible, notes)
    return _source_verdict(pkg, notes, fallback_dirs)


def _source_verdict(pkg: StoredPackage, notes: list[str],
                    fallback_dirs: tuple[str, ...]) -> Verdict:
    """"stale" when a source it inlined changed, else "ok"; sources that cannot be checked
    from here are added to ``notes``."""
    changed, unchecked = source_problems(pkg.manifest.get("sources", []), fallback_dirs)
    notes.extend(f"not checked: {u}" for u in unchecked)
    return Verdict("stale" if changed else "ok", changed, notes)


def never_loads(pkg: StoredPackage) -> str | None:
    """Why no process on this machine would ever load ``pkg`` (corrupt, refused by the
    signing policy, another python/torch/platform, stored under a key it was not written
    for), or None. Not reasons: a store's own refusal (owner, permissions) and changed
    sources, which a fix undoes, and GPUs, which a shared cache's other machines have."""
    if pkg.env is None:
        return f"corrupt: {pkg.error}"
    if not pkg.signature_ok:
        return pkg.signature
    incompatible = system_problems(pkg.factors, {})
    return "; ".join(incompatible) if incompatible else pkg.key_problem
