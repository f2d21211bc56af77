"""Stores for precompile packages: one module per store, one small interface (``base.py``).

``open_store(spec)`` turns what users write (a path, ``file://``, ``memory://``, a store
object) into a store.
"""
from __future__ import annotations

import os
from typing import Any

from .base import CacheBackend, Stat
from .local import LocalDirBackend
from .memory import MemoryBackend

__all__ = ["CacheBackend", "LocalDirBackend", "MemoryBackend", "Stat", "open_store"]

_MEMORY_STORES: dict[str, MemoryBackend] = {}


def open_store(spec: Any) -> CacheBackend:
    """A store from a path, URL or store object."""
    if isinstance(spec, CacheBackend):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"cannot make a cache store from {spec!r}; pass a directory path, "
                         "a URL (file://, memory://) or a CacheBackend")
    if spec.startswith("memory://"):
        return _MEMORY_STORES.setdefault(spec, MemoryBackend())
    if spec.startswith("file://"):
        return LocalDirBackend(spec[len("file://"):])
    if "://" in spec:
        raise ValueError(f"unsupported cache URL {spec!r}: this version supports directory "
                         "paths, file:// and memory://")
    return LocalDirBackend(spec)
