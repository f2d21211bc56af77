"""Importing a cache archive (``precompile import``): all of it, or none of it.

An archive comes from elsewhere (a CI cache, a colleague), so it is read as untrusted input:

* it is streamed once (``archive_reader``: linear in what it reads, gzip, bzip2 and xz
  alike), and bounded before anything is staged: at most ``max_members`` members, each
  package at most ``max_package_bytes``, every decompressed byte (packages or not, tar
  headers included) at most ``max_total_bytes`` and at most ``MAX_EXPANSION`` times the
  archive's own size (a 145-byte .tar.bz2 expanding to gigabytes is refused after reading
  16 MiB), and reading and verifying it at most ``max_seconds``;
* each package is checked while it streams to a private staging file (its declared length,
  its checksum and, with a signing key, its signature), so a bad member is refused without
  ever being held in memory or decoded; only then is it decoded once, to learn the key it
  was written for (``keys.package_key`` of its factors: the member's name does not count)
  and when it was saved;
* every package is verified *before* the cache is touched: a corrupt member or a truncated
  archive imports nothing;
* a package replaces the cache's copy only if that copy, verified the same way, is older;
* while packages go into the cache, any failure (disk full, lock timeout, a bug, ^C) puts
  back what was there before, so the cache is never left half-imported.
* shared kernels (``blob-<sha256>`` members, see ``shared_blobs``) are verified like any
  read of one (their key is the sha256 of their content) and go into the cache before
  packages;

Errors are :class:`ArchiveError`, whose message says what to do; the CLI exits 2 on them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from cache_backends.base import check_key
from cache_backends.blobs import is_blob_key
from cache_backends.safe_read import read_file

from . import read_path
from ..format.archive_reader import (ArchiveLimitError, BoundedTarInfo, CountingReader,
                                     check_deadline, open_archive)
from ..format.archive_stream import PackageStream
from ..errors import PackageError
from .shared_blobs import stored_blob_key

DEFAULT_MAX_PACKAGE_BYTES = 1 << 30  # 1 GiB: far above real packages, far below a machine's RAM
DEFAULT_MAX_TOTAL_BYTES = 16 << 30  # all packages of one archive together
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_SECONDS = 900.0
MAX_EXPANSION = 100  # decompressed bytes per archive byte; real package archives expand 2-10x
_EXPANSION_FLOOR = 16 << 20  # so tiny archives are never refused for their tar padding
_CHUNK = 1 << 20
_SUFFIX = ".pcpkg"


class ArchiveError(PackageError):
    """An archive cannot be imported as a whole (unreadable, truncated, too large, or
    holding a bad package); nothing was imported."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one archive may cost (see the module docstring)."""

    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_seconds: float = DEFAULT_MAX_SECONDS


@dataclasses.dataclass
class Staged:
    """One verified package, waiting in the staging directory to go into the cache."""

    key: str
    member: str
    path: str
    saved: float


@dataclasses.dataclass
class _Budget:
    """Members left for the rest of the archive, and when reading it must be done (bytes
    are counted as they are read: ``archive_reader``)."""

    members_left: int
    deadline: float

    def take_member(self, limit: int) -> None:
        """Count one more member: ArchiveError past ``limit`` of them, ArchiveLimitError
        once the time is up."""
        check_deadline(self.deadline)
        self.members_left -= 1
        if self.members_left < 0:
            raise ArchiveError(f"archive has more than {limit} members; nothing was "
                               "imported. Raise --max-packages if it is genuine")


def stage(archive: str, staging: str, *, signing_key: bytes | None,
          limits: Limits = Limits()) -> tuple[list[Staged], list[str]]:
    """Verify every package of ``archive`` into ``staging``. Returns (packages, skipped
    members that are not packages). Raises ArchiveError if any package is bad or the
    archive is over a limit."""
    staged: dict[str, Staged] = {}
    skipped: list[str] = []
    try:
        with open(archive, "rb") as raw:
            source, budget = _bounded(raw, limits)
            with tarfile.open(fileobj=source, mode="r|",  # one pass, no seeking
                              tarinfo=BoundedTarInfo) as tar:
                for n, member in enumerate(tar):
                    item = _take(tar, member, n, staging, signing_key, limits, budget)
                    if item is None:
                        skipped.append(f"{member.name}: not a package")
                    else:
                        _keep_newest(staged, item)
    except ArchiveLimitError as e:
        raise ArchiveError(str(e)) from None
    except ArchiveError:
        raise
    except Exception as e:  # noqa: BLE001 - tarfile, zlib, lzma, bz2 raise many things
        raise ArchiveError(f"cannot read archive {archive}: {type(e).__name__}: {e}. It is "
                           "truncated or not a tar archive; nothing was imported. Export it "
                           "again (precompile export)") from None
    # shared kernels first: a package goes in only after the kernels it names
    return sorted(staged.values(), key=lambda item: not is_blob_key(item.key)), skipped


def _bounded(raw: BinaryIO, limits: Limits) -> tuple[CountingReader, _Budget]:
    """The archive decompressed, refused past what it may expand to (``MAX_EXPANSION``
    times its own size, at least ``_EXPANSION_FLOOR``, at most ``max_total_bytes``), and
    the budget its members and time are counted against."""
    size = os.fstat(raw.fileno()).st_size
    cap = min(limits.max_total_bytes, max(size * MAX_EXPANSION, _EXPANSION_FLOOR))
    budget = _Budget(limits.max_members, time.monotonic() + limits.max_seconds)
    source = open_archive(raw, cap, budget.deadline,
                          f"{limits.max_total_bytes} bytes or {MAX_EXPANSION} times its own size")
    return source, budget


def _keep_newest(staged: dict[str, Staged], item: Staged) -> None:
    """Of two members under one key, the later save is imported."""
    if item.key not in staged or staged[item.key].saved < item.saved:
        staged[item.key] = item


def _take(tar: tarfile.TarFile, member: tarfile.TarInfo, n: int, staging: str,
          signing_key: bytes | None, limits: Limits, budget: _Budget) -> Staged | None:
    """Stage one member if it is a package (None if it is not one); within the budget."""
    budget.take_member(limits.max_members)
    if not _is_package_member(member):
        return None
    if member.size > limits.max_package_bytes:
        raise ArchiveError(f"archive member {member.name} is {member.size} bytes, over the "
                           f"{limits.max_package_bytes}-byte cap; nothing was imported. Raise "
                           "--max-package-size if the package is genuine")
    path = os.path.join(staging, f"{n}{_SUFFIX}")  # the member's index: unique
    try:
        _stream(tar, member, path, signing_key)
        return _verified(member, path, signing_key, limits.max_package_bytes)
    except PackageError as e:
        raise ArchiveError(f"archive member {member.name} is not a usable package ({e}); "
                           "nothing was imported. Export the cache again, or remove that "
                           "member") from None


def _is_package_member(member: tarfile.TarInfo) -> bool:
    """A regular file named like a package (not a hidden one: editors' and macOS's
    ``._`` companions are)."""
    name = os.path.basename(member.name)
    return member.isfile() and name.endswith(_SUFFIX) and not name.startswith(".")


def _stream(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str,
            signing_key: bytes | None) -> None:
    """Copy the member to ``path`` in chunks, checking length, checksum and signature on
    the way (PackageError when one fails)."""
    src = tar.extractfile(member)
    if src is None:
        raise ArchiveError(f"archive member {member.name} has no data; nothing was imported")
    check = PackageStream(member.size, signing_key)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with src, os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            check.feed(chunk)
            out.write(chunk)
    check.finish()


def _verified(member: tarfile.TarInfo, path: str, signing_key: bytes | None,
              max_bytes: int) -> Staged:
    """Decode the staged package once: the key it was written for, and when it was saved."""
    data, _ = read_file(path, max_bytes=max_bytes, check_owner=False)
    env = read_path.open_package(data, signing_key=signing_key, key=None)
    key = stored_blob_key(env)  # a shared kernel: its key is its content's sha256
    if key is None:
        key = read_path.bound_key(env.meta)
    check_key(key)
    return Staged(key, member.name, path, read_path.meta_time(env.meta, "saved"))


def _cache_is_newer(current: bytes | None, item: Staged, signing_key: bytes | None) -> bool:
    """Whether the cache's copy of ``item`` was saved no earlier, counted only if it passes
    the same checks as the archive's packages (a forged copy with saved=1e308 must not keep
    a genuine one out)."""
    if current is None:
        return False
    try:
        env = read_path.open_package(current, signing_key=signing_key, key=item.key)
    except PackageError:
        return False  # a corrupt or forged copy: anything genuine replaces it
    return read_path.meta_time(env.meta, "saved") >= item.saved


def commit(store: Any, staged: list[Staged], staging: str, *,
           signing_key: bytes | None) -> tuple[int, list[str]]:
    """Put staged packages into ``store`` (one already there is replaced only by a newer
    one). Returns (imported, skipped). On any failure, restores what it replaced and raises
    ArchiveError (KeyboardInterrupt and friends are re-raised after the restore)."""
    done: list[tuple[str, str | None]] = []  # (key, staged copy of what was there, or None)
    skipped: list[str] = []
    try:
        for n, item in enumerate(staged):
            with store.lock(item.key):
                current = store.get(item.key)
                if _cache_is_newer(current, item, signing_key):
                    skipped.append(f"{item.member}: the cache has a newer or equal copy")
                    continue
                previous = _keep_copy(current, os.path.join(staging, f"previous-{n}{_SUFFIX}"))
                with open(item.path, "rb") as fh:
                    store.put(item.key, fh.read())
                done.append((item.key, previous))
    except BaseException as e:
        _roll_back(store, done)
        if not isinstance(e, Exception):
            raise
        raise ArchiveError(f"importing into {getattr(store, 'url', store)} failed ({e!r}); "
                           f"the {len(done)} package(s) already written were taken back, so "
                           "the cache is as it was. Fix the cause and import again") from None
    return len(done), skipped


def _keep_copy(current: bytes | None, path: str) -> str | None:
    """Save what the store held under a key about to be replaced, for ``_roll_back``;
    None when it held nothing (a roll back then deletes the key)."""
    if current is None:
        return None
    with open(path, "xb") as fh:
        fh.write(current)
    return path


def _roll_back(store: Any, done: list[tuple[str, str | None]]) -> None:
    for key, previous in reversed(done):
        with contextlib.suppress(Exception):  # best effort: the original error is reported
            if previous is None:
                store.delete(key)
            else:
                with open(previous, "rb") as fh:
                    store.put(key, fh.read())


@contextlib.contextmanager
def staging_dir(near: str | None = None) -> Iterator[str]:
    """A private (0700) temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="precompile-import-", dir=near) as d:
        os.chmod(d, 0o700)
        yield d
