"""The errors stores raise, defined at the bottom layer so stores import nothing above them.

``PackageError`` is the root of every error precompile raises on purpose (a store failing is
one way a package cannot be read or written); ``precompile.errors`` re-exports these three
and derives the rest from ``PackageError``, so ``except PackageError`` still catches a store
that failed.
"""
from __future__ import annotations

import errno


class PackageError(Exception):
    """Base class: a package could not be written, read, verified or installed."""


class StoreError(PackageError):
    """A cache store could not be read or written (permissions, full disk, server down)."""


class ReadOnlyStoreError(StoreError):
    """A store can be read but not written (a read-only filesystem, a directory without
    write permission): a baked cache under a writable overlay is meant to be one."""


# A directory this process may read but not write: a read-only filesystem, no write
# permission, or (for root) an immutable directory.
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def read_only_error(what: str, e: OSError) -> ReadOnlyStoreError:
    """``what`` failed because the cache directory is read-only, with what to do."""
    return ReadOnlyStoreError(
        f"{what}: {e.strerror}: the cache directory is read-only. To use a read-only (baked) "
        "cache, list a writable directory in front of it, which takes the writes: "
        "store=[overlay_dir, baked_dir] or PRECOMPILE_CACHE_URL=overlay_dir,baked_dir")


class LockTimeout(StoreError):
    """Another process holds a store lock past the wait (the store itself is fine)."""
