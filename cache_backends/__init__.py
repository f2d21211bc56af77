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

# RedisBackend and FsspecBackend load on first use (optional dependencies), so they are
# importable by name but left out of ``import *``.
__all__ = ["CacheBackend", "LocalDirBackend", "MemoryBackend", "Stat", "TieredBackend",
           "UnavailableBackend", "open_store"]

_MEMORY_STORES: dict[str, CacheBackend] = {}


def open_store(spec: Any) -> CacheBackend:
    """A store from a path, URL, store object, or a list of those (tiers, fastest first)."""
    if isinstance(spec, CacheBackend):
        return spec
    if isinstance(spec, (list, tuple)):
        return _open_tiers(spec)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"cannot make a cache store from {spec!r}; pass a directory path, "
                         "a URL (file://, memory://, redis://, s3://, gs://...), a list of "
                         "those, or a CacheBackend")
    scheme, sep, _ = spec.partition("://")
    if not sep:
        return LocalDirBackend(spec)
    return _OPENERS.get(scheme.lower(), _open_fsspec)(spec)


def _open_tiers(specs: list[Any] | tuple[Any, ...]) -> CacheBackend:
    if not specs:
        raise ValueError("cannot make a cache store from an empty list; list the tiers, "
                         "fastest first, e.g. ['~/.cache/precompile', 'redis://host:6379/0']")
    if len(specs) == 1:
        return open_store(specs[0])
    return TieredBackend(list(specs))


def _open_memory(url: str) -> CacheBackend:
    return _MEMORY_STORES.setdefault(url, MemoryBackend())


def _open_file(url: str) -> CacheBackend:
    return LocalDirBackend(url[len("file://"):])


def _open_redis_socket(url: str) -> CacheBackend:
    """``redis+unix:///path`` (the spelling that names the store) is redis-py's ``unix://``."""
    return _open_redis("unix://" + url[len("redis+unix://"):])


def _open_redis(url: str) -> CacheBackend:
    try:
        from .redis import RedisBackend as cls
    except ImportError as e:
        shown = url.split("?")[0].split("@")[-1]
        return UnavailableBackend(shown, f"cannot use {shown}: the redis client is not installed "
                                         f"({e}). Install it: pip install 'precompile[redis]'")
    return cls(url)


def _open_fsspec(url: str) -> CacheBackend:
    from precompile.errors import StoreError

    try:
        from .objectstore import FsspecBackend as cls
    except ImportError as e:
        return UnavailableBackend(url, f"cannot use {url}: fsspec is not installed ({e}). "
                                       "Install it with the filesystem for the URL, e.g. pip "
                                       "install 'precompile[s3]' (s3://) or 'precompile[gcs]' "
                                       "(gs://)")
    try:
        return cls(url)
    except StoreError as e:  # the filesystem's own package (s3fs, gcsfs...) is missing
        return UnavailableBackend(url, str(e))


#: URL schemes with a store of their own; any other ``scheme://`` goes to fsspec.
_OPENERS: dict[str, Callable[[str], CacheBackend]] = {
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


# Imported last, on purpose: these modules import precompile.errors, whose package imports
# precompile.api, which imports ``open_store`` from here; it must exist by then.
from .local import LocalDirBackend  # noqa: E402
from .memory import MemoryBackend  # noqa: E402
from .tiered import TieredBackend  # noqa: E402
from .unavailable import UnavailableBackend  # noqa: E402
