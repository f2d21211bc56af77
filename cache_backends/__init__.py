"""Stores for precompile packages: one module per store, one small interface (``base.py``).
The redis store's shared connection and lease lock are modules of their own
(``redis_client.py``, ``redis_lock.py``).

``open_store(spec)`` turns what users write into a store:

===============================================  ==========================================
spec                                              store
===============================================  ==========================================
a ``CacheBackend``                                itself
a directory path, ``file:///path``                ``LocalDirBackend`` (the default store)
``memory://``, ``memory://name``                  ``MemoryBackend``, one per name per process
``redis://host:port/db``, ``rediss://``,         ``RedisBackend`` (``?namespace=...&ttl=S``
``redis+unix:///path/to/redis.sock``              set its namespace and TTL)
``s3://bucket/prefix``, ``gs://``, ``az://``...   ``FsspecBackend`` (any fsspec protocol)
a list or tuple of the above                      ``TieredBackend``, first tier first
===============================================  ==========================================

Stores import nothing from precompile: what they trust comes through their constructors.
``open_store(spec, trust_shared=..., accept=...)`` passes ``trust_shared`` (accept local
directories and files other users could write) to every local store it opens, and
``accept(key, data) -> bool`` to a tiered store (it writes a later tier's hit back into the
earlier tiers only when ``accept`` verifies it; without one, nothing is written back), and
``lease_key`` to every Redis store (it signs the leases of its locks and only leases signed
with it are waited for: ``redis_lease.py``; precompile passes its signing key).

The Redis and fsspec stores need their client packages (``pip install 'precompile[redis]'``,
``'precompile[s3]'``, ``'precompile[gcs]'``); they are imported only when such a store is
opened. Where one is missing, open_store gives an ``UnavailableBackend`` whose every call
raises StoreError naming the package, so the program warns and runs without the cache.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .base import CacheBackend, Stat
from .errors import StoreError
from .local import LocalDirBackend
from .memory import MemoryBackend
from .tiered import TieredBackend
from .unavailable import UnavailableBackend
from .urls import redact

# RedisBackend and FsspecBackend load on first use (optional dependencies), so they are
# importable by name but left out of ``import *``.
__all__ = ["CacheBackend", "LocalDirBackend", "MemoryBackend", "Stat", "TieredBackend",
           "UnavailableBackend", "open_store"]

_MEMORY_STORES: dict[str, CacheBackend] = {}


Accept = Callable[[str, bytes], bool]


def open_store(spec: Any, *, trust_shared: bool = False, accept: Accept | None = None,
               lease_key: bytes | None = None) -> CacheBackend:
    """A store from a path, URL, store object, or a list of those (tiers, fastest first).
    ``trust_shared``, ``accept`` and ``lease_key``: see the module docstring (a store
    object is returned as it is, with its own settings)."""
    if isinstance(spec, CacheBackend):
        return spec
    if isinstance(spec, (list, tuple)):
        return _open_tiers(spec, trust_shared, accept, lease_key)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"cannot make a cache store from {spec!r}; pass a directory path, "
                         "a URL (file://, memory://, redis://, s3://, gs://...), a list of "
                         "those, or a CacheBackend")
    scheme, sep, _ = spec.partition("://")
    if not sep:
        return LocalDirBackend(spec, trust_shared=trust_shared)
    return _OPENERS.get(scheme.lower(), _open_fsspec)(spec, trust_shared, lease_key)


def _open_tiers(specs: list[Any] | tuple[Any, ...], trust_shared: bool,
                accept: Accept | None, lease_key: bytes | None) -> CacheBackend:
    if not specs:
        raise ValueError("cannot make a cache store from an empty list; list the tiers, "
                         "fastest first, e.g. ['~/.cache/precompile', 'redis://host:6379/0']")
    if len(specs) == 1:
        return open_store(specs[0], trust_shared=trust_shared, lease_key=lease_key)
    return TieredBackend([open_store(s, trust_shared=trust_shared, lease_key=lease_key)
                          for s in specs], accept=accept)


def _open_memory(url: str, trust_shared: bool, lease_key: bytes | None) -> CacheBackend:
    return _MEMORY_STORES.setdefault(url, MemoryBackend())


def _open_file(url: str, trust_shared: bool, lease_key: bytes | None) -> CacheBackend:
    return LocalDirBackend(url[len("file://"):], trust_shared=trust_shared)


def _open_redis_socket(url: str, trust_shared: bool, lease_key: bytes | None) -> CacheBackend:
    """``redis+unix:///path`` (the spelling that names the store) is redis-py's ``unix://``."""
    return _open_redis("unix://" + url[len("redis+unix://"):], trust_shared, lease_key)


def _open_redis(url: str, trust_shared: bool, lease_key: bytes | None) -> CacheBackend:
    try:
        from .redis import RedisBackend as cls
    except ImportError as e:
        shown = redact(url)
        return UnavailableBackend(shown, f"cannot use {shown}: the redis client is not installed "
                                         f"({e}). Install it: pip install 'precompile[redis]'")
    return cls(url, lease_key=lease_key)


def _open_fsspec(url: str, trust_shared: bool, lease_key: bytes | None) -> CacheBackend:
    try:
        from .objectstore import FsspecBackend as cls
    except ImportError as e:
        shown = redact(url)
        return UnavailableBackend(shown, f"cannot use {shown}: fsspec is not installed ({e}). "
                                       "Install it with the filesystem for the URL, e.g. pip "
                                       "install 'precompile[s3]' (s3://) or 'precompile[gcs]' "
                                       "(gs://)")
    try:
        return cls(url, trust_shared=trust_shared)
    except StoreError as e:  # the filesystem's own package (s3fs, gcsfs...) is missing
        return UnavailableBackend(redact(url), str(e))


#: URL schemes with a store of their own; any other ``scheme://`` goes to fsspec.
_OPENERS: dict[str, Callable[[str, bool, bytes | None], CacheBackend]] = {
    "memory": _open_memory,
    "file": _open_file,
    "redis": _open_redis,
    "rediss": _open_redis,
    "redis+unix": _open_redis_socket,
}


def __getattr__(name: str) -> Any:
    # Stores with optional dependencies load on first mention.
    if name == "RedisBackend":
        from .redis import RedisBackend
        return RedisBackend
    if name == "FsspecBackend":
        from .objectstore import FsspecBackend
        return FsspecBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

