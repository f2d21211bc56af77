"""FsspecBackend: packages as objects under any fsspec URL (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``az://``, ``sftp://``, ``file://``, ``memory://``...).

Layout: ``<url>/<key>.pcpkg``, the same names LocalDirBackend uses, so a directory can be
synced to a bucket and back.

A URL fsspec maps to the local filesystem (``local://``, ``file://``) is served by
:class:`LocalDirBackend` itself, so it has the same atomic writes, trust checks and file
locks (``LockTimeout`` when contended) as a plain directory: one local implementation.

Atomic writes: object stores (S3, GCS, Azure, fsspec's memory filesystem) replace a whole
object in one PUT, and readers get the old object or the new one; there ``put`` writes the
object directly. On other filesystems (sftp, ...) it writes a temp file and moves it into
place (a rename where the filesystem has one).

``lock`` is the base no-op away from the local filesystem: the last writer wins, which loses
nothing that the next compile would not add back.

Every call is bounded (``objectstore_budget.py``): a read stops one byte past
``max_package_bytes`` whatever the server sends, and a call that runs past ``call_timeout``
seconds (default 60) is a StoreError, however slowly the server trickles its reply.

Credentials and endpoints come from the filesystem's usual sources (``AWS_*`` variables,
``AWS_ENDPOINT_URL``, ``~/.aws``, gcloud's application default credentials...) or as keyword
arguments (``FsspecBackend("s3://b/p", endpoint_url=..., key=..., secret=...)``).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import posixpath
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from . import objectstore_budget as budget
from .base import CacheBackend, Stat, check_key
from .errors import StoreError
from .local import SUFFIX, TMP_PREFIX, LocalDirBackend
from .safe_read import MAX_PACKAGE_BYTES
from .urls import redact

T = TypeVar("T")

#: Protocols whose PUT replaces a whole object atomically.
OBJECT_STORE_PROTOCOLS = frozenset({
    "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "memory",
})

#: Package to install for a protocol whose fsspec implementation lives elsewhere.
_INSTALL_HINTS = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "abfss": "adlfs", "adl": "adlfs", "sftp": "paramiko", "ssh": "paramiko", "oci": "ocifs",
}


def _timestamp(info: dict[str, Any]) -> float | None:
    """A modification time in UNIX seconds from an fsspec ``info`` dict, whatever its form."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "mtime_ns", "created",
                 "ctime", "time_created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.timezone.utc)
            return value.timestamp()
        if isinstance(value, (int, float)):
            return value / 1e9 if name == "mtime_ns" else float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _without_trailing_slash(url: str) -> str:
    """``s3://b/p/`` and ``s3://b/p`` name one store; a bare ``scheme://`` stays as it is."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rstrip("/") if sep and rest.strip("/") else url


def _filesystem_class(url: str, protocol: str) -> type:
    """fsspec's class for ``protocol``. Its package missing is a StoreError that names what
    to install (open_store turns it into an UnavailableBackend); a protocol fsspec does not
    know is a ValueError, a mistake in the URL."""
    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as e:
        pkg = _INSTALL_HINTS.get(protocol)
        how = f"pip install {pkg}" if pkg else "install the package named above"
        raise StoreError(f"cannot open {redact(url)}: {e}. The {protocol}:// filesystem needs "
                         f"it: {how}") from e
    except ValueError as e:
        raise ValueError(f"unsupported cache URL {redact(url)!r}: fsspec does not know the "
                         f"protocol {protocol!r}") from e


def _bounded_waits(protocol: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """``storage_options`` with bounded waits on an S3 endpoint that does not answer
    (botocore's default is 60s per attempt, several attempts); the caller's settings win."""
    if protocol in ("s3", "s3a"):
        config = dict(storage_options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", 5)
        config.setdefault("read_timeout", 30)
        config.setdefault("retries", {"max_attempts": 2, "mode": "standard"})
        storage_options["config_kwargs"] = config
    return storage_options


def _write_by_rename(fs: Any, root: str, path: str, data: bytes, deadline: float) -> None:
    """Write ``data`` to ``path`` on a filesystem whose writes are not atomic (sftp...): a
    temp file under ``root``, then a move into place (a rename where the filesystem has
    one), so readers do not see a part. The local filesystem never comes here: it is served
    by LocalDirBackend and ``write_atomically``."""
    tmp = f"{root}/{TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        budget.call(fs, deadline, "pipe_file", tmp, data)
        budget.call(fs, deadline, "mv", tmp, path)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(Exception):
                fs.rm_file(tmp)


class FsspecBackend(CacheBackend):
    """Packages under an fsspec URL. ``storage_options`` go to the filesystem's constructor.

    The filesystem is made on first use, so constructing the store does no I/O; an fsspec
    implementation that is not installed (s3fs, gcsfs...) is reported here, though.
    """

    def __init__(self, url: str, *, trust_shared: bool = False,
                 max_package_bytes: int = MAX_PACKAGE_BYTES, call_timeout: float = 60.0,
                 **storage_options: Any) -> None:
        """``trust_shared`` goes to the local store a local URL is served by;
        ``max_package_bytes`` is the largest object ``get`` reads; ``call_timeout`` the
        seconds any one call may take, whatever the server does."""
        if not isinstance(url, str) or not url:
            raise ValueError(f"FsspecBackend needs a URL such as s3://bucket/prefix, not "
                             f"{redact(url)!r}")
        if not (isinstance(call_timeout, (int, float)) and 0 < call_timeout < float("inf")):
            raise ValueError(f"call_timeout must be a positive number of seconds, not "
                             f"{call_timeout!r}")
        self._address = _without_trailing_slash(url)
        self.url = redact(self._address)  # what messages show: never a password
        self.call_timeout = float(call_timeout)
        self.protocol = protocol_of(url)
        self.storage_options = _bounded_waits(self.protocol, dict(storage_options))
        cls = _filesystem_class(url, self.protocol)
        self.max_package_bytes = max_package_bytes
        self._local = (LocalDirBackend(cls._strip_protocol(url), trust_shared=trust_shared,
                                       max_package_bytes=max_package_bytes)
                       if issubclass(cls, LocalFileSystem) else None)
        self._atomic_put = self.protocol in OBJECT_STORE_PROTOCOLS
        self._fs: Any = None
        self._root = ""
        self._made_root = False
        self._mutex = threading.Lock()

    # ------------------------------------------------------------ plumbing

    def _filesystem(self) -> tuple[Any, str]:
        with self._mutex:
            if self._fs is None:
                fs, root = fsspec.core.url_to_fs(self._address, **self.storage_options)
                self._fs, self._root = fs, root.rstrip("/") or root
            return self._fs, self._root

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self._filesystem()[1]}/{key}{SUFFIX}"

    def _run(self, what: str, fn: Callable[[float], T]) -> T:
        """``fn(deadline)``, the deadline ``call_timeout`` from now; every failure but 'not
        found' comes out as StoreError, with a hint."""
        try:
            return fn(time.monotonic() + self.call_timeout)
        except budget.CallTimeout as e:
            raise StoreError(f"cannot {what} {self.url}: no answer within {self.call_timeout:g}s "
                             f"({e}). Is the endpoint up and reachable from here? "
                             "(call_timeout= sets the bound)") from e
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001 - filesystems raise anything (botocore, aiohttp)
            hint = ""
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                hint = " (disk full)"
            elif isinstance(e, PermissionError):
                hint = " (permission denied: check credentials and access rights)"
            raise StoreError(
                f"cannot {what} {self.url}: {type(e).__name__}: {e}{hint}. Check the URL, the "
                "credentials and that the bucket or directory exists and can be reached") from e

    # ------------------------------------------------------------ interface

    def get(self, key: str) -> bytes | None:
        if self._local is not None:
            return self._local.get(key)

        def read(deadline: float) -> bytes | None:
            fs, _ = self._filesystem()
            try:  # one byte over the cap is enough to refuse it
                data = budget.read(fs, self._path(key), self.max_package_bytes, deadline)
            except FileNotFoundError:
                return None
            if len(data) > self.max_package_bytes:
                raise StoreError(f"refusing {key} in {self.url}: it is larger than "
                                 f"{self.max_package_bytes} bytes, the most a package may be")
            return data

        return self._run("read from", read)

    def put(self, key: str, data: bytes) -> None:
        if self._local is not None:
            return self._local.put(key, data)
        data = bytes(data)

        def write(deadline: float) -> None:
            fs, root = self._filesystem()
            path = self._path(key)
            if self._atomic_put:
                budget.call(fs, deadline, "pipe_file", path, data)
                return
            if not self._made_root:
                budget.call(fs, deadline, "makedirs", root, exist_ok=True)
                self._made_root = True
            _write_by_rename(fs, root, path, data, deadline)

        self._run("write to", write)

    def delete(self, key: str) -> bool:
        if self._local is not None:
            return self._local.delete(key)

        def remove(deadline: float) -> bool:
            fs, _ = self._filesystem()
            path = self._path(key)
            fs.invalidate_cache(path)
            # Object stores delete missing keys without complaint: ask first.
            if not budget.call(fs, deadline, "exists", path):
                return False
            try:
                budget.call(fs, deadline, "rm_file", path)
            except FileNotFoundError:
                return False
            fs.invalidate_cache(path)
            return True

        return self._run("delete from", remove)

    def list(self) -> Iterator[str]:
        if self._local is not None:
            return self._local.list()

        def names(deadline: float) -> list[str]:
            fs, root = self._filesystem()
            fs.invalidate_cache(root)  # other processes write too: no stale listing
            try:
                entries = budget.call(fs, deadline, "ls", root, detail=False)
            except FileNotFoundError:
                return []
            out = set()
            for entry in entries:
                name = posixpath.basename(str(entry).rstrip("/"))
                if name.endswith(SUFFIX) and not name.startswith("."):
                    out.add(name[: -len(SUFFIX)])
            return sorted(out)

        return iter(self._run("list", names))

    def stat(self, key: str) -> Stat | None:
        if self._local is not None:
            return self._local.stat(key)

        def info(deadline: float) -> Stat | None:
            fs, _ = self._filesystem()
            path = self._path(key)
            fs.invalidate_cache(path)
            try:
                inf = budget.call(fs, deadline, "info", path)
            except FileNotFoundError:
                return None
            if inf.get("type") == "directory":
                return None
            return Stat(key, int(inf.get("size") or 0), created=_timestamp(inf), last_used=None)

        return self._run("read from", info)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        if self._local is not None:
            with self._local.lock(key, timeout):
                yield
            return
        check_key(key)
        yield
