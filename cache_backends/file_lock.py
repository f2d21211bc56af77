"""The lock file behind ``LocalDirBackend.lock``: opened without following a symlink and
without truncating, whatever is installed.

``filelock`` opened lock files with ``O_TRUNC`` and followed symbolic links in releases
inside this project's old range (3.12): a symlink planted at ``.locks/K.lock`` truncated its
target. Here the file is opened ``O_RDWR | O_CREAT | O_NOFOLLOW`` (never ``O_TRUNC``), must be
a regular file, and is locked with ``flock``; the lock is held by the open file, so it is
released when the process dies. A process waits by polling, up to its timeout. Where
there is no ``flock`` (Windows) ``filelock`` (a dependency of torch) does the locking.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator

from .errors import READ_ONLY_ERRNOS, LockTimeout, StoreError, read_only_error

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_POLL_S = 0.01
_POLL_MAX_S = 0.1


def _open_lock_file(path: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"refusing lock file {path}: it is a symbolic link. Remove it; "
                             "precompile recreates it") from e
        if e.errno in READ_ONLY_ERRNOS:
            raise read_only_error(f"cannot lock {path}", e) from e
        hint = " (disk full)" if e.errno == errno.ENOSPC else ""
        raise StoreError(f"cannot lock {path}: {e.strerror}{hint}. Point PRECOMPILE_CACHE_DIR "
                         "at a writable directory") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"refusing lock file {path}: it is not a regular file. Remove it; "
                         "precompile recreates it")
    return fd


@contextlib.contextmanager
def file_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block; LockTimeout after
    ``timeout`` seconds of waiting, StoreError when the file cannot be used as a lock."""
    if fcntl is None:
        with _filelock(path, timeout):
            yield
        return
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = _POLL_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"timed out after {timeout:g}s waiting for {path}; "
                                      "another process holds it") from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, _POLL_MAX_S)
            except OSError as e:
                raise StoreError(f"cannot lock {path}: {e.strerror}") from e
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _filelock(path: str, timeout: float) -> Iterator[None]:
    import filelock

    lock = filelock.FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout as e:
        raise LockTimeout(f"timed out after {timeout:g}s waiting for {path}; another process "
                          "holds it") from e
    except OSError as e:
        raise StoreError(f"cannot lock {path}: {e.strerror}") from e
    try:
        yield
    finally:
        lock.release()
