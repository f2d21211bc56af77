"""LocalDirBackend: the default store, a directory of package files.

Layout: ``<root>/<key>.pcpkg`` plus ``<root>/.locks/<key>.lock``. Writes go to a temp file
in the same directory and are renamed into place, so readers never see a partial file and a
crash mid-write leaves the previous package intact. ``filelock`` serializes read-modify-write
(merging entries) between processes. Directories precompile creates are owner-only (0700):
packages hold code that will be executed.

Trust: packages hold code that will run, so a root or ``.locks`` directory another user
owns or anyone can write is refused, for locks as for reads (a lock in such a store would
let its owner stall every process), and no symbolic link under the root is followed.

Reads refresh a file's access time, which is what ``max_bytes`` eviction (least recently
used first) and ``precompile ls`` report as "last used".
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat as stat_mode
import tempfile
import time
from collections.abc import Iterator

import filelock

from precompile import settings
from precompile.errors import LockTimeout, StoreError

from .base import CacheBackend, Stat, check_key

log = logging.getLogger("precompile")

SUFFIX = ".pcpkg"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600


def write_atomically(directory: str, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part:
    a temp file in ``directory`` (same filesystem as ``path``), fsync'd, then renamed over
    ``path``. Raises OSError; a crash leaves at most a ``.tmp-*`` file (see
    ``LocalDirBackend.clean_temp_files``)."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = ""
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class LocalDirBackend(CacheBackend):
    """Packages as files in one directory (see the module docstring)."""

    cheap_listing = True

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None,
                 trust_shared: bool | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self.url = self.root
        self.max_bytes = max_bytes
        if trust_shared is None:
            trust_shared = settings.or_default(
                lambda: settings.flag(settings.TRUST_SHARED_CACHE), False, strict=False)
        self.trust_shared = trust_shared
        self._root_checked = False

    # -------------------------------------------------------------- trust

    def _check_trusted(self, st: os.stat_result, what: str) -> None:
        """Packages hold code that will run: refuse ones others could have written."""
        if self.trust_shared or not hasattr(os, "getuid"):
            return
        problem = None
        if st.st_uid != os.getuid():
            problem = f"is owned by another user (uid {st.st_uid})"
        elif st.st_mode & 0o002:
            problem = "is world-writable"
        if problem:
            raise StoreError(f"refusing cache {what} {problem}: anyone who can write it can run "
                             "code in your process. Fix its ownership/permissions, or opt in with "
                             "PRECOMPILE_TRUST_SHARED_CACHE=1 (LocalDirBackend(trust_shared=True))")

    def _check_root(self) -> None:
        if self._root_checked:
            return
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return
        self._check_trusted(st, f"directory {self.root}")
        self._root_checked = True

    def _locks_dir(self) -> str:
        """``<root>/.locks``, created if needed, after the same checks as a read: a lock
        file is created and opened there, so a planted symlink must not send it elsewhere."""
        self._ensure_root()
        self._check_root()
        locks = os.path.join(self.root, ".locks")
        try:
            st = os.lstat(locks)
        except OSError as e:
            raise StoreError(f"cannot use {locks}: {e.strerror}") from e
        if not stat_mode.S_ISDIR(st.st_mode):
            raise StoreError(f"refusing cache lock directory {locks}: it is not a directory "
                             "(a symbolic link?). Remove it; precompile recreates it")
        self._check_trusted(st, f"lock directory {locks}")
        return locks

    # ---------------------------------------------------------------- paths

    def path_for(self, key: str) -> str:
        check_key(key)
        return os.path.join(self.root, key + SUFFIX)

    def _ensure_root(self) -> None:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.makedirs(os.path.join(self.root, ".locks"), mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create cache directory {self.root}: {e.strerror}. "
                             "Point PRECOMPILE_CACHE_DIR (or cache_dir=) at a writable "
                             "directory") from e

    # ------------------------------------------------------------ interface

    def get(self, key: str) -> bytes | None:
        path = self.path_for(key)
        self._check_root()
        try:
            with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as fh:
                self._check_trusted(os.fstat(fh.fileno()), f"file {path}")
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreError(f"refusing {path}: it is a symbolic link, and precompile "
                                 "follows none inside its cache. Remove it") from e
            raise StoreError(f"cannot read {path}: {e.strerror}") from e
        with contextlib.suppress(OSError):
            st = os.stat(path)
            os.utime(path, (time.time(), st.st_mtime))
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self.path_for(key)
        self._ensure_root()
        self._check_root()
        try:
            write_atomically(self.root, path, data)
        except OSError as e:
            hint = " (disk full)" if e.errno == errno.ENOSPC else ""
            raise StoreError(f"cannot write {path}: {e.strerror}{hint}. The program goes on "
                             "without saving; free space or fix permissions") from e
        if self.max_bytes is not None:
            try:
                self.evict(self.max_bytes, keep={key})
            except StoreError as e:  # the package is written; only the upkeep failed
                log.warning("precompile: cannot evict old packages from %s: %s", self.root, e)

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path_for(key))
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StoreError(f"cannot delete {self.path_for(key)}: {e.strerror}") from e

    def list(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return iter(())
        except OSError as e:
            raise StoreError(f"cannot list {self.root}: {e.strerror}") from e
        return iter([n[: -len(SUFFIX)] for n in names
                     if n.endswith(SUFFIX) and not n.startswith(".")])

    def stat(self, key: str) -> Stat | None:
        path = self.path_for(key)
        try:
            st = os.lstat(path)  # a symlink is described, not followed (a loop would raise)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror}") from e
        return Stat(key, st.st_size, created=st.st_mtime, last_used=max(st.st_atime, st.st_mtime),
                    path=path)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        """LockTimeout when another process holds it past ``timeout``; StoreError when the
        store cannot lock at all (untrusted, read-only, unwritable), so callers stop
        coordinating through it rather than wait."""
        check_key(key)
        lock_path = os.path.join(self._locks_dir(), key + ".lock")
        lock = filelock.FileLock(lock_path, timeout=timeout)
        try:
            lock.acquire()
        except filelock.Timeout as e:
            raise LockTimeout(f"timed out after {timeout:g}s waiting for {lock_path}; another "
                              "process holds it. Delete the lock file if that process is "
                              "gone") from e
        except OSError as e:
            hint = (" (read-only filesystem)" if e.errno == errno.EROFS
                    else " (disk full)" if e.errno == errno.ENOSPC else "")
            raise StoreError(f"cannot lock {lock_path}: {e.strerror}{hint}. Point "
                             "PRECOMPILE_CACHE_DIR at a writable directory") from e
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------ upkeep

    def evict(self, max_bytes: int, keep: set[str] | None = None) -> list[str]:
        """Delete least recently used packages until the total is at most ``max_bytes``."""
        keep = keep or set()
        stats = [s for s in (self.stat(k) for k in self.list()) if s is not None]
        total = sum(s.size for s in stats)
        removed = []
        for s in sorted(stats, key=lambda s: s.last_used or 0):
            if total <= max_bytes:
                break
            if s.key in keep:
                continue
            if self.delete(s.key):
                total -= s.size
                removed.append(s.key)
        self.clean_temp_files()
        return removed

    def clean_temp_files(self, older_than: float = _STALE_TMP_SECONDS) -> int:
        """Remove temp files left by writers that died mid-write."""
        n = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for name in os.listdir(self.root):
                if name.startswith(_TMP_PREFIX):
                    path = os.path.join(self.root, name)
                    with contextlib.suppress(OSError):
                        if now - os.stat(path).st_mtime > older_than:
                            os.unlink(path)
                            n += 1
        return n
