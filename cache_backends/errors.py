"""The errors stores raise, defined at the bottom layer so stores import nothing above them.

``PackageError`` is the root of every error precompile raises on purpose (a store failing is
one way a package cannot be read or written); ``precompile.errors`` re-exports these three
and derives the rest from ``PackageError``, so ``except PackageError`` still catches a store
that failed.
"""
from __future__ import annotations


class PackageError(Exception):
    """Base class: a package could not be written, read, verified or installed."""


class StoreError(PackageError):
    """A cache store could not be read or written (permissions, full disk, server down)."""


class LockTimeout(StoreError):
    """Another process holds a store lock past the wait (the store itself is fine)."""
