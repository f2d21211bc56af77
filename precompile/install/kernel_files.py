"""A package's C++ kernel libraries, put where Inductor looks for them.

Inductor loads a kernel library by path, from its cache directory (torch's default is under
``/tmp``), so what is at that path is what runs. Restoring therefore trusts nothing that is
already there:

* the cache directory gets the owner/permission checks of a cache store
  (``directory_problem``: yours, not group/world-writable, no parent that lets another user
  replace it; ``PRECOMPILE_TRUST_SHARED_CACHE=1`` opts out). A package with kernels is not
  installed from a directory that fails them: the call compiles normally, with the reason;
* every directory between it and a kernel must be a real directory (no symlink) that only
  you can write;
* a file already at a kernel's path is kept only if it is a regular file you own, not
  writable by others, whose sha256 is the package's blob; anything else is replaced
  atomically by the package's bytes (``write_atomically``: a temp file, ``fchmod``, fsync,
  rename), so a pre-planted library at that path is never the one loaded.
"""
from __future__ import annotations

import logging
import os
import pathlib
import stat

from cache_backends.local import directory_problem, write_atomically
from cache_backends.safe_read import read_file, writable_by_others

from .. import _torch
from ..errors import StoreError
from ..format.envelope import sha256_hex

log = logging.getLogger("precompile")


def restore_kernels(blobs: dict[str, bytes], *, trust_shared: bool) -> int:
    """Write ``blobs`` (path relative to Inductor's cache dir -> library bytes) where
    Inductor looks for them. Returns how many files were written. Raises StoreError when
    Inductor's cache directory could have been written by another user."""
    if not blobs:
        return 0
    root = os.path.abspath(_torch.inductor_cache_dir())
    _check_cache_dir(root, trust_shared)
    return sum(_restore_one(root, rel, data, trust_shared) for rel, data in blobs.items())


def _check_cache_dir(root: str, trust_shared: bool) -> None:
    """StoreError, before anything is written, unless Inductor's cache directory passes a
    cache store's owner and permission checks (or shared caches are trusted): what is in it
    is what Inductor loads."""
    problem = None if trust_shared else directory_problem(root)
    if problem:
        raise StoreError(f"not installing compiled kernels into Inductor's cache directory "
                         f"{root}: it {problem}, so another user could swap the libraries "
                         "it loads. Point TORCHINDUCTOR_CACHE_DIR at a directory only you "
                         "can write, or opt in with PRECOMPILE_TRUST_SHARED_CACHE=1")


def _restore_one(root: str, rel: str, data: bytes, trust_shared: bool) -> bool:
    """Write one kernel file unless it is already there; whether it was written. A file
    that cannot be written is left to Inductor, which rebuilds it."""
    dest = os.path.join(root, rel)
    try:
        _ensure_private_dirs(root, os.path.dirname(dest), trust_shared)
        if _holds(dest, data, trust_shared):
            return False
        write_atomically(os.path.dirname(dest), dest, data, mode=0o755)
        return True
    except (OSError, StoreError) as e:
        log.info("precompile: cannot restore kernel %s (%s); Inductor will rebuild it",
                 rel, getattr(e, "strerror", None) or e)
        return False


def _ensure_private_dirs(root: str, directory: str, trust_shared: bool) -> None:
    """Create ``directory`` (under ``root``) as needed; StoreError if a directory on the way
    is a symlink or others can write it."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = root
    for part in pathlib.PurePath(os.path.relpath(directory, root)).parts:  # none for "."
        path = os.path.join(path, part)
        _check_private_dir(path, trust_shared)


def _check_private_dir(path: str, trust_shared: bool) -> None:
    """StoreError unless ``path`` is a directory itself (not a symlink to one) that no
    other user can write (unless shared caches are trusted)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is not a directory (a symbolic link?)")
    problem = None if trust_shared else writable_by_others(st)
    if problem:
        raise StoreError(f"{path} {problem}")


def _holds(dest: str, data: bytes, trust_shared: bool) -> bool:
    """Whether ``dest`` already is this library: a regular file nobody else could have
    written, with the same bytes."""
    try:
        current, problem = read_file(dest, max_bytes=len(data), check_owner=not trust_shared)
    # none there yet; or a symlink, a FIFO, a file of another size: (re)place it
    except (FileNotFoundError, StoreError):
        return False
    return problem is None and sha256_hex(current) == sha256_hex(data)
