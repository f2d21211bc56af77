"""The one read path for package bytes, library and CLI alike: trust first, decode after.

Every package byte precompile reads goes through the same steps, in this order:

1. the bytes come off a store or a file through ``cache_backends.safe_read`` (no symlink
   followed, a regular file only, owner/permission checks on the open file, a size cap) or
   through a store's ``get`` (which applies those checks, or its own reply caps);
2. ``format.decode``: length, checksum and, when a signing key is set, the signature, all
   before one byte of the body is decoded;
3. the key binding: a package read under a store key must have been written for that key
   (``keys.package_key(meta["factors"]) == key``). A signature proves who wrote a package,
   not what it was written for; without the binding, a package signed for ``eager,
   dynamic=True`` could be served under the key of ``inductor, dynamic=False``.

Only then may anything be unpickled, imported or installed (``loading``, ``install``,
``precompile inspect``). ``load_file`` is ``precompile.load(path)``'s read: the owner and
permission checks a cache directory gets apply to a package file named by path too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cache_backends.local import peek_file

from ..format import envelope as format
from ..package import keys
from ..errors import FormatError, IntegrityError, PackageError, StoreError


def bound_key(meta: dict[str, object]) -> str:
    """The store key a package was written for (from its key factors); FormatError when it
    has none."""
    factors = meta.get("factors")
    if not _is_factors(factors):
        raise FormatError("package metadata has no key factors, so no key it was written for")
    return keys.package_key(factors)


def meta_time(meta: dict[str, Any], name: str) -> float:
    """A time a package's metadata records (``created``, ``saved``), 0.0 when it has none.
    ``format`` bounds stored times; an integer too large for a float still counts as none."""
    value = meta.get(name, 0)
    try:
        return float(value) if isinstance(value, (int, float)) else 0.0
    except OverflowError:
        return 0.0


def check_bound(env: format.Envelope, key: str) -> None:
    """Raise IntegrityError unless ``env`` was written for store key ``key``."""
    try:
        bound: str | None = bound_key(env.meta)
    except FormatError:
        bound = None
    if bound != key:
        raise IntegrityError(
            f"package stored under key {key} was written for "
            f"{'key ' + bound if bound else 'no key'}: it was renamed or copied there, and "
            "a package is only used under the key it was written for. Delete it")


def _is_factors(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in value.items())


def open_package(data: bytes, *, signing_key: bytes | None,
                 key: str | None) -> format.Envelope:
    """Steps 2 and 3 of the module docstring: checksum, signature, decode, key binding
    (``key`` None: a package file that is under no store key). Raises PackageError."""
    env = format.decode(data, signing_key=signing_key)
    if key is not None:
        check_bound(env, key)
    return env


def verifier(signing_key: bytes | None) -> Callable[[str, bytes], bool]:
    """``accept(key, data)`` for a tiered store: whether a later tier's hit may be written
    back into the earlier tiers (it passes ``open_package``)."""
    def accept(key: str, data: bytes) -> bool:
        try:
            open_package(data, signing_key=signing_key, key=key)
        except PackageError:
            return False
        return True

    return accept


def load_file(path: str, *, signing_key: bytes | None,
              trust_shared: bool) -> format.Envelope:
    """A package file named by path (``precompile.load``): read through the safe reader,
    refused (StoreError) when another user could have written it or its directory, as a
    cache would be, then checksummed and signature-checked."""
    try:
        data, problem = peek_file(path, trust_shared=trust_shared)
    except OSError as e:
        raise StoreError(f"cannot read package file {path}: {e.strerror}") from e
    if problem:
        raise StoreError(f"not loading {path}: {problem}, and whoever can write there can "
                         "run code in your process. Fix its ownership/permissions "
                         "(chmod go-w, owner-only parents), or opt in with "
                         "PRECOMPILE_TRUST_SHARED_CACHE=1")
    return open_package(data, signing_key=signing_key, key=None)
