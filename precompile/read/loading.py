"""Loading: fetch -> decode (``read_path``: checksum, signature, key binding) -> verify ->
check sources, giving a Package or a Miss.

Nothing here changes the process: a loaded package is data until ``install.py`` puts it to
work, and every way a stored package can be unusable (corrupt, unsigned, written for
another torch, GPU or source) is a :class:`Miss` with its reason, never an exception the
user's call sees (strict mode raises the Miss's error at the caller).
"""
from __future__ import annotations

import dataclasses
import types

from cache_backends import CacheBackend

from ..format import envelope as format
from ..package import keys
from . import read_path
from ..counters import warn_once
from ..errors import FormatError, IncompatibleError, PackageError, SourceChangedError, StoreError
from ..package.manifest import from_manifest
from ..package.model import Package
from .shared_blobs import fetch_kernels
from .verdict import system_problems


@dataclasses.dataclass(frozen=True)
class Miss:
    """No usable package, and why; ``error`` when a stored package was unusable."""

    reason: str
    error: PackageError | None = None


def fetch(store: CacheBackend, key: str) -> bytes | None:
    """The stored bytes under ``key``; None when absent or when the store cannot be read
    (one warning per store: the program goes on compiling)."""
    try:
        return store.get(key)
    except StoreError as e:
        warn_once(f"store:{store.url}", f"cannot read the cache ({e}); compiling normally")
        return None


def load(found: bytes | format.Envelope, main_code: types.CodeType, module: str,
         factors: dict[str, str], key: str, signing_key: bytes | None,
         store: CacheBackend | None = None) -> Package | Miss:
    """Decode (unless already decoded: a package file given to ``precompile.load``) and
    verify what was found under ``key`` (the package must have been written for ``key``),
    then fetch and verify the shared kernels it names from ``store``."""
    env = found
    if not isinstance(env, format.Envelope):
        try:
            env = read_path.open_package(found, signing_key=signing_key, key=key)
        except PackageError as e:
            return Miss(f"stored package {key} is unusable ({e}); compiling and replacing it", e)
    try:
        pkg = verify(env, main_code, module, factors)
        fetch_kernels(pkg, store, signing_key)
    except PackageError as e:
        return Miss(str(e), e)
    return pkg


def verify(env: format.Envelope, main_code: types.CodeType, module: str,
           current: dict[str, str]) -> Package:
    """Everything checked before a decoded package is used: python, torch, platform and GPU
    match this process (``current`` holds its key factors), the function's code is unchanged,
    the manifest is well formed, and no source it inlined has changed. Raises
    IncompatibleError, SourceChangedError or FormatError."""
    stored = env.meta.get("factors", {})
    if not isinstance(stored, dict):
        raise FormatError("package metadata has no key factors")
    _check_system(stored, current, env.meta.get("gpus") or {})
    if stored.get("code") != current.get("code"):
        raise SourceChangedError(f"the source of {stored.get('function', 'the function')} "
                                 "changed since the package was written")
    pkg = from_manifest(main_code, module, stored, env.manifest, env.blobs)
    _check_sources(list(pkg.sources.values()))
    pkg.created = read_path.meta_time(env.meta, "created")
    pkg.cpu_isa = env.meta.get("cpu_isa")
    return pkg


def _check_system(stored: dict[str, str], current: dict[str, str],
                  gpus: dict[str, dict[str, object]]) -> None:
    problems = system_problems(stored, gpus, current)
    if problems:
        raise IncompatibleError(problems[0])


def _check_sources(ranges: list[keys.SourceRange]) -> None:
    """Raise SourceChangedError (naming files, lines and a diff) if any source a package
    was compiled from has changed."""
    changes = keys.changed_sources(ranges)
    if changes:
        raise SourceChangedError("source changed since the package was written: "
                                 + "\n".join(changes), changes)
