"""LocalDirBackend: the default store, a directory of package files.

Layout: ``<root>/<key>.pcpkg`` plus ``<root>/.locks/<key>.lock``. Writes go to a temp file
in the same directory and are renamed into place, so readers never see a partial file and a
crash mid-write leaves the previous package intact. A lock file (``file_lock.py``: never a
followed symlink, never truncated) serializes read-modify-write (merging entries) between
processes. Directories precompile creates are owner-only (0700):
packages hold code that will be executed.

Trust: packages hold code that will run, so a root or ``.locks`` directory another user
owns or anyone can write is refused, for locks as for reads (a lock in such a store would
let its owner stall every process), and no symbolic link under the root is followed. A
package file is read through ``safe_read.read_file`` (a regular file, owner-checked on the
open file, size-capped). The store's trust settings come through its constructor
(``trust_shared``, ``max_package_bytes``); it reads no environment variable.

Reads refresh a file's access time, which is what ``max_bytes`` eviction (least recently
used first) and ``precompile ls`` report as "last used".
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import BinaryIO

from .base import CacheBackend, Stat, check_key
from .blobs import is_blob_key, is_young, plan_shared_eviction
from .errors import READ_ONLY_ERRNOS, StoreError, read_only_error
from .file_lock import file_lock
from .safe_read import MAX_PACKAGE_BYTES, read_file, writable_by_others

log = logging.getLogger("precompile")

SUFFIX = ".pcpkg"
TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600


def write_atomically(directory: str, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part
    (``atomic_output``)."""
    with atomic_output(path, mode, directory) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_output(path: str, mode: int = 0o600, directory: str | None = None,
                  ) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an error: a temp file
    in ``directory`` (default: ``path``'s; it must be on the same filesystem), fsync'd, then
    renamed over ``path``, so readers see the old file or the new one, never a part. An error
    in the block leaves ``path`` as it was. Raises OSError; a crash leaves at most a
    ``.tmp-*`` file (see ``LocalDirBackend.clean_temp_files``)."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX,
                               dir=directory or os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)  # the file written, not whatever the name is now
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = ""
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _refusal(what: str, problem: str) -> str:
    return (f"refusing {what}: it {problem}, and anyone who can write it can run code in your "
            "process. Fix its ownership/permissions (chmod go-w, owner-only parents), or opt in "
            "with PRECOMPILE_TRUST_SHARED_CACHE=1 (LocalDirBackend(trust_shared=True))")


def directory_problem(root: str) -> str | None:
    """Why another user could have put files in cache directory ``root``, or None.

    The directory itself must be the user's and not group/world-writable. Its parents
    matter too: whoever can write a parent can rename the cache directory away and put their
    own in its place. A parent is fine when it is owned by the user or root and either not
    writable by others or sticky (like /tmp: there only an entry's owner can rename it). A
    symlink on the way counts as an entry of its directory, so it must be the user's or
    root's. A directory that does not exist yet has no problem (precompile creates it 0700).
    """
    if not hasattr(os, "getuid"):
        return None
    real = os.path.realpath(root)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be checked ({e.strerror})"
    problem = writable_by_others(st)
    return problem or _parents_problem(real) or _symlinks_problem(os.path.abspath(root))


def _parents_problem(real: str) -> str | None:
    child, parent = real, os.path.dirname(real)
    while parent != child:
        try:
            st = os.stat(parent)
        except OSError as e:
            return f"has a parent {parent} that cannot be checked ({e.strerror})"
        if st.st_uid not in (os.getuid(), 0):
            return (f"has a parent {parent} owned by another user (uid {st.st_uid}), "
                    "who can replace it")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return (f"has a parent {parent} that others can write (mode "
                    f"{stat.S_IMODE(st.st_mode):o}, not sticky), so they can replace {child}")
        child, parent = parent, os.path.dirname(parent)
    return None


def _symlinks_problem(path: str) -> str | None:
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:i])  # never empty: ``path`` is absolute
        try:
            st = os.lstat(prefix)
        except OSError:
            return None  # resolved above; a race is not ours to report
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.getuid(), 0):
            return f"is reached through a symlink {prefix} owned by another user (uid {st.st_uid})"
    return None


def peek_file(path: str, store: LocalDirBackend | None = None, *,
              trust_shared: bool = False) -> tuple[bytes, str | None]:
    """A package file's bytes, read without refreshing its access time where the OS allows
    (the store uses atime as "last used", and looking at a package is not using it), and why
    the library would refuse it: the checks ``LocalDirBackend.get`` applies, against
    ``store`` or else the file's own directory (trusted as a store with ``trust_shared``
    would be). Raises FileNotFoundError, and StoreError for what is no package file at all
    (a FIFO, a symlink, a file over the size cap)."""
    if store is None:
        store = LocalDirBackend(os.path.dirname(os.path.abspath(path)), trust_shared=trust_shared)
    data, problem = read_file(path, max_bytes=store.max_package_bytes,
                              check_owner=not store.trust_shared, keep_atime=True)
    if problem:
        return data, f"package file {path} {problem}"
    dir_problem = store.untrusted_reason()
    return data, (f"cache directory {store.root} {dir_problem}" if dir_problem else None)


def plan_eviction(stats: Sequence[Stat], max_bytes: int,
                  keep: Collection[str] = ()) -> list[Stat]:
    """Which packages to delete so the rest total at most ``max_bytes``: least recently
    used first, never one in ``keep`` (the package just written): the policy of
    ``blobs.plan_shared_eviction`` for a store without shared kernels. Pure, so the policy
    can be read and tested apart from the files."""
    return plan_shared_eviction(stats, {}, max_bytes, keep)


class LocalDirBackend(CacheBackend):
    """Packages as files in one directory (see the module docstring)."""

    cheap_listing = True

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None,
                 trust_shared: bool = False, *,
                 max_package_bytes: int = MAX_PACKAGE_BYTES,
                 blob_references: Callable[[bytes], set[str]] | None = None) -> None:
        """``max_bytes``: evict least recently used packages above this total.
        ``trust_shared``: accept a directory and files other users could write
        (precompile passes ``PRECOMPILE_TRUST_SHARED_CACHE``). ``max_package_bytes``: the
        largest file ``get`` reads. ``blob_references``: the blob keys a stored package
        names (``precompile.read.shared_blobs.references``); without it eviction never deletes a
        shared kernel, since it cannot tell which ones are still named."""
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        self.url = self.root
        self.max_bytes = max_bytes
        self.trust_shared = bool(trust_shared)
        self.max_package_bytes = max_package_bytes
        self.blob_references = blob_references
        self._root_checked = False

    # -------------------------------------------------------------- trust

    def untrusted_reason(self) -> str | None:
        """Why packages in this directory must not be loaded (see ``directory_problem``),
        or None. Always None with ``trust_shared``."""
        if self.trust_shared:
            return None
        return directory_problem(self.root)

    def _check_trusted(self, st: os.stat_result, what: str) -> None:
        """Packages hold code that will run: refuse ones others could have written."""
        problem = None if self.trust_shared else writable_by_others(st)
        if problem:
            raise StoreError(_refusal(f"cache {what}", problem))

    def _check_root(self) -> None:
        if self._root_checked:
            return
        if not os.path.exists(self.root):
            return
        problem = self.untrusted_reason()
        if problem:
            raise StoreError(_refusal(f"cache directory {self.root}", problem))
        self._root_checked = True

    def peek(self, key: str) -> tuple[bytes, str | None] | None:
        """A package's bytes for looking at (``precompile ls/inspect/verify``), without
        refreshing its "last used" time, plus why the library would refuse it (None if it
        would not). Raises FileNotFoundError if there is no such package, StoreError for
        what is no package file (see ``peek_file``)."""
        return peek_file(self.path_for(key), self)

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
        if not stat.S_ISDIR(st.st_mode):
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
            if e.errno in READ_ONLY_ERRNOS:
                raise read_only_error(
                    f"cannot create {os.path.join(self.root, '.locks')}", e) from e
            raise StoreError(f"cannot create cache directory {self.root}: {e.strerror}. "
                             "Point PRECOMPILE_CACHE_DIR (or cache_dir=) at a writable "
                             "directory") from e

    # ------------------------------------------------------------ interface

    def get(self, key: str) -> bytes | None:
        path = self.path_for(key)
        self._check_root()
        try:
            data, problem = read_file(path, max_bytes=self.max_package_bytes,
                                      check_owner=not self.trust_shared)
        except FileNotFoundError:
            return None
        if problem:
            raise StoreError(_refusal(f"cache file {path}", problem))
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
            if e.errno in READ_ONLY_ERRNOS:
                raise read_only_error(f"cannot write {path}", e) from e
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
        with file_lock(os.path.join(self._locks_dir(), key + ".lock"), timeout):
            yield

    # ------------------------------------------------------------ upkeep

    def evict(self, max_bytes: int, keep: set[str] | None = None) -> list[str]:
        """Delete least recently used packages until the total is at most ``max_bytes``
        (see ``plan_eviction``; with shared kernels ``blobs.plan_shared_eviction``, which
        deletes a kernel only once no package left names it); returns the keys deleted.
        Also clears stale temp files."""
        stats = [s for s in map(self.stat, self.list()) if s is not None]
        plan = self._eviction_plan(stats, max_bytes, set(keep or ()))
        removed = [s.key for s in plan if self.delete(s.key)]
        self.clean_temp_files()
        return removed

    def _eviction_plan(self, stats: list[Stat], max_bytes: int, keep: set[str]) -> list[Stat]:
        """What ``evict`` deletes. Shared kernels follow the retention rule of ``blobs``
        (none at all while this store cannot read which package names which)."""
        blobs = [s for s in stats if is_blob_key(s.key)]
        if not blobs or sum(s.size for s in stats) <= max_bytes:
            return plan_eviction(stats, max_bytes, keep)
        now = time.time()
        keep |= {s.key for s in blobs
                 if self.blob_references is None or is_young(s.created, now)}
        return plan_shared_eviction(stats, self._blob_references(stats), max_bytes, keep)

    def _blob_references(self, stats: Sequence[Stat]) -> dict[str, set[str]]:
        """The blob keys each package names (read without refreshing its "last used")."""
        refs: dict[str, set[str]] = {}
        if self.blob_references is None:
            return refs
        for s in stats:
            if not is_blob_key(s.key):
                with contextlib.suppress(OSError):
                    refs[s.key] = self.blob_references(peek_file(self.path_for(s.key), self)[0])
        return refs

    def clean_temp_files(self, older_than: float = _STALE_TMP_SECONDS) -> int:
        """Remove temp files left by writers that died mid-write."""
        n = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for name in os.listdir(self.root):
                if name.startswith(TMP_PREFIX):
                    path = os.path.join(self.root, name)
                    with contextlib.suppress(OSError):
                        if now - os.stat(path).st_mtime > older_than:
                            os.unlink(path)
                            n += 1
        return n
