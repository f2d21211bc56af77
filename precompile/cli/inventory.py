"""The one place the CLI reads packages: each is read once, then decoded and judged by the
library (``precompile.read.verdict``).

A package is *trusted* only if the library would load it: its store's owner/permission
checks pass (local directories are read with ``peek``, which applies them without
refreshing "last used", through the library's safe reader: no symlink, FIFO or device, a
size cap), the signing policy in force accepts it, and it was written for the key it is
stored under (``read_path.check_bound``). A ``.pcpkg`` file outside the configured cache
is trusted only when the command is asked to (``inspect --trust``), and then as
``precompile.load`` would trust it. Commands may unpickle or resolve anything only in
trusted packages; the others are still listed, marked UNTRUSTED with the reason.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _library as lib
from .common import CliError

if TYPE_CHECKING:  # the library loads on first use: `precompile stats` and --help skip torch
    from precompile.read.verdict import StoredPackage as Pkg

# ------------------------------------------------------------------- reading


def load_file(path: str, store: Any, *, trust: bool) -> Pkg:
    """A ``.pcpkg`` named on the command line. In ``store``'s directory it is that store's
    package (its checks, its key). Elsewhere it is trusted only with ``trust``, and then as
    ``precompile.load`` trusts a file: the owner/permission checks of a cache directory
    applied to it and its directory, and no key binding (it is under no key)."""
    # The directory resolved, the file itself not: a symlink there is refused, not followed.
    real = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                        os.path.basename(path))
    key = os.path.basename(path).removesuffix(".pcpkg")
    local = _local_store_for(store, os.path.dirname(real)) if path.endswith(".pcpkg") else None
    data, problem, st = _read_file(path, real, key, local)
    if local is None and not trust:
        problem = (f"{path} is outside the configured cache ({store.url}); its pickles are not "
                   "loaded unless you ask: pass --trust if you trust whoever wrote it")
    pkg = lib.verdict.StoredPackage(key, os.path.abspath(path), len(data), st.st_mtime,
                                    max(st.st_atime, st.st_mtime), data, trust_problem=problem)
    return lib.verdict.decode(pkg, bound=local is not None)


def _read_file(path: str, real: str, key: str,
               local: Any) -> tuple[bytes, str | None, os.stat_result]:
    """(bytes, why the checks refuse them, stat) of a package file: through its store's
    ``peek`` when it is in one (that store's checks), else the library's safe reader."""
    with _reading(path):
        if local is not None:
            data, problem = local.peek(key)
        else:
            data, problem = lib.peek_file(real, trust_shared=lib.trust_shared())
        return data, problem, os.lstat(real)


@contextlib.contextmanager
def _reading(path: str | None) -> Iterator[None]:
    """A read of ``path`` whose failure ends the command: the OS's reason, or the store's
    message (which names the fix)."""
    try:
        yield
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    except lib.errors.StoreError as e:
        raise CliError(str(e)) from e


def _local_store_for(store: Any, directory: str) -> Any:
    """The local directory store (``store`` itself, one of its tiers, or the one an fsspec
    ``file://`` URL is served by) whose root is ``directory``, or None."""
    for candidate in [store, *getattr(store, "tiers", [])]:
        local = getattr(candidate, "_local", None) or candidate
        if isinstance(local, lib.LocalDirBackend) and os.path.realpath(local.root) == directory:
            return local
    return None


def load_from_store(store: Any, key: str, *, read: bool = True) -> Pkg | None:
    """A package from a store (decoded when ``read``; only its stat otherwise), or None if
    it vanished meanwhile (another process pruned it)."""
    st = _stat(store, key)
    if not read and st is not None:
        return _stored(key, st)
    return _read_stored(store, key, st, decode=read)


def _read_stored(store: Any, key: str, st: Any, *, decode: bool) -> Pkg | None:
    """The package's bytes as the store holds them (decoded with ``decode``; without a
    stat, read only for their size), a package marked unreadable when the safe reader
    refuses the file, or None if it vanished."""
    try:
        fetched = _fetch(store, key, getattr(st, "path", None))
    except Unreadable as e:  # a FIFO, a symlink, a file over the cap: listed, never read
        return _stored(key, st, error=str(e), signature_ok=False,
                       signature="unknown (package not read)")
    if fetched is None:
        return None
    data, problem = fetched
    pkg = _stored(key, st, data=data, trust_problem=problem)
    pkg.size = len(data) if st is None else pkg.size
    return lib.verdict.decode(pkg) if decode else pkg


def _stored(key: str, st: Any, **fields: Any) -> Pkg:
    """A package as its store's stat describes it (nothing known without one)."""
    if st is None:
        return lib.verdict.StoredPackage(key, None, None, None, None, **fields)
    return lib.verdict.StoredPackage(key, getattr(st, "path", None), st.size, st.created,
                                     st.last_used, **fields)


def _stat(store: Any, key: str) -> Any:
    try:
        return store.stat(key)
    except (lib.errors.StoreError, OSError):
        return None


def fetch_raw(store: Any, key: str) -> tuple[bytes, str | None] | None:
    """A stored value's bytes as the CLI reads them (see ``_fetch``), or None if gone."""
    return _fetch(store, key, key)


class Unreadable(Exception):
    """A local package file the safe reader refuses to read (see ``load_from_store``)."""


def _fetch(store: Any, key: str, path: str | None) -> tuple[bytes, str | None] | None:
    """(bytes, why the store's checks refuse them) or None when the package is gone. A
    local directory is peeked (its checks, without touching "last used"); other stores
    apply their own checks in ``get``, or raise."""
    with _reading(path):
        if hasattr(store, "peek"):
            return _peek(store, key)
        data = store.get(key)
    return None if data is None else (data, None)


def _peek(store: Any, key: str) -> tuple[bytes, str | None] | None:
    """A local directory's package, read with its checks, "last used" left alone; None
    when it is gone, Unreadable when the safe reader refuses the file."""
    try:
        return store.peek(key)
    except FileNotFoundError:
        return None
    except lib.errors.StoreError as e:
        raise Unreadable(str(e)) from e


def open_store(spec: str | None) -> Any:
    """The cache named on the command line, or the library's default one."""
    key = lib.settings.signing_key()
    try:
        return lib.default_store(cache_dir=spec, signing_key=key)
    except (lib.errors.StoreError, ValueError) as e:
        raise CliError(f"cannot open cache {spec or '(default)'}: {e}") from e


def store_keys(store: Any, *, blobs: bool = False) -> list[str]:
    """The packages' keys (or with ``blobs``, the shared kernels' keys) in ``store``."""
    try:
        return [k for k in store.list() if lib.blobs.is_blob_key(k) == blobs]
    except lib.errors.StoreError as e:
        raise CliError(str(e)) from e


def iter_store(store: Any, *, read: bool = True) -> Iterator[Pkg]:
    """Every package still in ``store`` (decoded when ``read``)."""
    for key in store_keys(store):
        pkg = load_from_store(store, key, read=read)
        if pkg is not None:
            yield pkg


def iter_exportable(store: Any, skipped: list[str]) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of every package that ``precompile import`` would accept (it verifies
    under the signing key in force and was written for the key it is stored under), then
    each shared kernel they name, verified the same way, once. Anything else (a planted
    or damaged file, a kernel name that is not a sha256) is left out with a line in
    ``skipped``: one bad file never makes the whole archive refused, and a name read from
    a package is never used as a path."""
    signing_key = lib.settings.signing_key()
    kernels: dict[str, str] = {}  # kernel key -> the first package naming it
    yield from _exportable_packages(store, signing_key, kernels, skipped)
    yield from _exportable_kernels(store, signing_key, sorted(kernels), skipped)


def _exportable_packages(store: Any, signing_key: bytes | None, kernels: dict[str, str],
                         skipped: list[str]) -> Iterator[tuple[str, bytes]]:
    """The packages that verify as a load would read them, noting in ``kernels`` the
    shared kernels each names."""
    for key in store_keys(store):
        data = _verified_get(store, key, skipped, lambda data, key=key: (
            lib.read_path.open_package(data, signing_key=signing_key, key=key)))
        if data is not None:
            _note_kernels(key, data, kernels, skipped)
            yield key, data


def _exportable_kernels(store: Any, signing_key: bytes | None, kernels: list[str],
                        skipped: list[str]) -> Iterator[tuple[str, bytes]]:
    """The shared kernels ``kernels`` whose bytes match the digest their key names."""
    for kernel in kernels:
        digest = lib.blobs.digest_of(kernel)
        data = _verified_get(store, kernel, skipped, lambda data, d=digest: (
            lib.shared_blobs.decode_blob(data, d, signing_key)))
        if data is not None:
            yield kernel, data


def _note_kernels(key: str, data: bytes, kernels: dict[str, str], skipped: list[str]) -> None:
    """Remember each shared kernel the package ``key`` names, with the first package that
    names it; a name that is not a sha256 is reported in ``skipped``, never used."""
    for kernel in sorted(lib.shared_blobs.references(data)):
        if lib.blobs.is_blob_key(kernel):
            kernels.setdefault(kernel, key)
        else:
            skipped.append(f"{key}: names a shared kernel {kernel!r} that is not a "
                           "sha256; the package is exported, the name is not")


def _verified_get(store: Any, key: str, skipped: list[str],
                  verify: Any) -> bytes | None:
    """The stored bytes of ``key`` if ``verify(bytes)`` accepts them; else None, with the
    reason appended to ``skipped``."""
    errors = lib.errors
    try:
        data = store.get(key)
        if data is None:
            return None
        verify(data)
    except (errors.PackageError, errors.StoreError) as e:
        skipped.append(f"{key}: {e}; not exported")
        return None
    return data


def looks_like_store(ref: str) -> bool:
    return "://" in ref or os.path.isdir(ref)


def find_package(ref: str, cache: str | None, *, trust: bool = False) -> Pkg:
    """PACKAGE: a ``.pcpkg`` path (see ``load_file`` for ``trust``), a key in the cache, a
    unique prefix of one, or the ``module:qualname`` of the function when one package
    holds it."""
    store = open_store(cache)
    if os.path.isfile(ref):
        return load_file(ref, store, trust=trust)
    matches = _matching_keys(ref, store_keys(store))
    if not matches and ":" in ref:
        return _package_of_function(store, ref)
    _expect_one(ref, matches, store.url)
    return _load_named(store, matches[0])


def _matching_keys(ref: str, keys: list[str]) -> list[str]:
    """The key ``ref`` names exactly, else the keys it is a prefix of."""
    name = os.path.basename(ref.removesuffix(".pcpkg"))
    return [name] if name in keys else [k for k in keys if k.startswith(name)]


def _package_of_function(store: Any, function: str) -> Pkg:
    """The one package in ``store`` that holds ``function`` (``module:qualname``); every
    package is read to find it, since keys carry only the function's short name."""
    found = [p for p in iter_store(store) if p.function == function]
    _expect_one(function, [p.key for p in found], store.url)
    return found[0]


def _load_named(store: Any, key: str) -> Pkg:
    """The package under a key just listed; an error when another process deleted it
    meanwhile (a prune), rather than a package that is not there."""
    pkg = load_from_store(store, key)
    if pkg is None:
        raise CliError(f"package {key} disappeared from {store.url} while reading it")
    return pkg


def _expect_one(ref: str, matches: list[str], url: str) -> None:
    if not matches:
        raise CliError(f"no package {ref!r}: not a file, and {url} holds no such key "
                       "(see `precompile ls`)")
    if len(matches) > 1:
        raise CliError(f"{ref!r} matches {len(matches)} packages in {url}: "
                       + ", ".join(matches[:10]) + ("..." if len(matches) > 10 else ""))
