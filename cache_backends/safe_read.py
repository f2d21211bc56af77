"""The one way package bytes come off a local disk: every check before a byte is read.

A package file may be anything a hostile user of the machine could plant under its name:
a FIFO (an open that blocks forever), a symbolic link to ``/dev/zero`` (a read that never
ends), a file they own in a directory anyone can write, or simply a huge file. So
``read_file``:

1. opens with ``O_NOFOLLOW`` (a symlink is refused, never followed) and ``O_NONBLOCK`` (a
   FIFO or device cannot block the open), and ``O_NOATIME`` when asked and allowed;
2. ``fstat``s what it opened: it must be a regular file, of at most ``max_bytes``;
3. applies the owner/permission check (``writable_by_others``) to that same open file, so
   what is checked is what is read;
4. reads at most ``max_bytes + 1`` bytes, so a file that grows meanwhile is refused too.

``LocalDirBackend`` (get, peek), ``precompile.load(path)``, the CLI and ``precompile
import`` all read through here.
"""
from __future__ import annotations

import errno
import os
import stat

from .errors import StoreError

MAX_PACKAGE_BYTES = 1 << 30  # 1 GiB: far above real packages, far below a machine's RAM
_CHUNK = 1 << 20


def writable_by_others(st: os.stat_result) -> str | None:
    """Why a cache file or directory with this stat could have been written by another user
    (owned by someone else, or group/world-writable), or None."""
    if not hasattr(os, "getuid"):
        return None
    if st.st_uid != os.getuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o002:
        return "is world-writable"
    if st.st_mode & 0o020:
        return "is group-writable"
    return None


def read_file(path: str, *, max_bytes: int = MAX_PACKAGE_BYTES, check_owner: bool = True,
              keep_atime: bool = False) -> tuple[bytes, str | None]:
    """(bytes, why another user could have written them, or None) of the regular file at
    ``path`` (see the module docstring). ``check_owner=False`` skips the owner check (a
    store that trusts shared files). ``keep_atime`` reads without refreshing the access
    time where the OS allows (looking at a package is not using it).

    Raises FileNotFoundError when there is no such file, and StoreError for anything that
    is not a plain readable file of at most ``max_bytes``."""
    fd = _open(path, keep_atime)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"refusing {path}: it is not a regular file (a FIFO, device or "
                             "directory under a package's name). Remove it")
        if st.st_size > max_bytes:
            raise StoreError(_too_big(path, max_bytes))
        problem = writable_by_others(st) if check_owner else None
        data = _read_at_most(fd, max_bytes + 1, st.st_size)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise StoreError(_too_big(path, max_bytes))
    return data, problem


def _open(path: str, keep_atime: bool) -> int:
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        if keep_atime and hasattr(os, "O_NOATIME"):
            try:
                return os.open(path, flags | os.O_NOATIME)
            except PermissionError:  # O_NOATIME needs ownership: fall back to a plain open
                pass
        return os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"refusing {path}: it is a symbolic link, and precompile "
                             "follows none to a package. Remove it") from e
        raise StoreError(f"cannot read {path}: {e.strerror}") from e


def _read_at_most(fd: int, limit: int, expected: int) -> bytes:
    """Up to ``limit`` bytes. The file's size (``expected``) plus one byte is asked for at
    once, so a file that does not grow is read into one buffer, never joined from chunks
    (which would hold it twice)."""
    chunks: list[bytes] = []
    left = limit
    want = expected + 1
    while left > 0:
        try:
            chunk = os.read(fd, min(want, left))
        except BlockingIOError:  # O_NONBLOCK on something that is not a file after all
            break
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        want = _CHUNK
    return b"".join(chunks)  # one chunk: CPython returns it as is, no copy


def _too_big(path: str, max_bytes: int) -> str:
    return (f"refusing {path}: it is larger than {max_bytes} bytes, the most a package may "
            "be. It is not a package precompile wrote; remove it")
