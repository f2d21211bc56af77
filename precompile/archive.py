"""Importing a cache archive (``precompile import``): all of it, or none of it.

An archive comes from elsewhere (a CI cache, a colleague), so it is read as untrusted input:

* shared kernels (``blob-<sha256>`` members, see ``shared_blobs``) are verified like any
  read of one (their key must name their content) and go into the cache before packages;
* members are streamed to a private staging directory in chunks, each capped in size, so a
  huge member cannot exhaust memory (only one package at a time is held, to verify it);
* every package is verified (checksums, signature rule, a valid key) *before* the cache is
  touched: a corrupt member or a truncated archive imports nothing;
* while packages go into the cache, a failure (disk full, lock timeout) puts back what was
  there before, so the cache is never left half-imported.

Errors are :class:`ArchiveError`, whose message says what to do; the CLI exits 2 on them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import lzma
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any

from cache_backends.blobs import BLOB_PREFIX, is_blob_key

from . import format as fmt
from .errors import PackageError
from .shared_blobs import decode_blob

DEFAULT_MAX_PACKAGE_BYTES = 1 << 30  # 1 GiB: far above real packages, far below a machine's RAM
_CHUNK = 1 << 20
_SUFFIX = ".pcpkg"
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


class ArchiveError(PackageError):
    """An archive cannot be imported as a whole (unreadable, truncated, or holding a bad
    package); nothing was imported."""


@dataclasses.dataclass
class Staged:
    """One verified package, waiting in the staging directory to go into the cache."""

    key: str
    member: str
    path: str
    saved: float


def stage(archive: str, staging: str, *, signing_key: bytes | None,
          max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES) -> tuple[list[Staged], list[str]]:
    """Verify every package of ``archive`` into ``staging``. Returns (packages, skipped
    members that are not packages). Raises ArchiveError if any package is bad."""
    staged: dict[str, Staged] = {}
    skipped: list[str] = []
    try:
        with tarfile.open(archive, "r|*") as tar:  # stream mode: one pass, no seeking
            for member in tar:
                key = _package_key(member)
                if key is None:
                    skipped.append(f"{member.name}: not a package")
                    continue
                item = _stage_member(tar, member, key, staging, len(staged), signing_key,
                                     max_bytes)
                if key not in staged or staged[key].saved < item.saved:
                    staged[key] = item
    except ArchiveError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise ArchiveError(f"cannot read archive {archive}: {type(e).__name__}: {e}. It is "
                           "truncated or not a tar archive; nothing was imported. Export it "
                           "again (precompile export)") from None
    # shared kernels first: a package goes in only after the kernels it names
    return sorted(staged.values(), key=lambda item: not is_blob_key(item.key)), skipped


def _package_key(member: tarfile.TarInfo) -> str | None:
    from cache_backends.base import check_key

    name = os.path.basename(member.name)
    if not member.isfile() or not name.endswith(_SUFFIX) or name.startswith("."):
        return None
    key = name[: -len(_SUFFIX)]
    try:
        check_key(key)
    except PackageError:
        return None
    return key


def _stage_member(tar: tarfile.TarFile, member: tarfile.TarInfo, key: str, staging: str,
                  n: int, signing_key: bytes | None, max_bytes: int) -> Staged:
    if member.size > max_bytes:
        raise ArchiveError(f"archive member {member.name} is {member.size} bytes, over the "
                           f"{max_bytes}-byte cap; nothing was imported. Raise "
                           "--max-package-size if the package is genuine")
    path = os.path.join(staging, f"{n}{_SUFFIX}")
    src = tar.extractfile(member)
    if src is None:
        raise ArchiveError(f"archive member {member.name} has no data; nothing was imported")
    with src, open(path, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            out.write(chunk)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    try:
        meta = fmt.decode(data, signing_key=signing_key).meta
        if is_blob_key(key):  # the kernel its key names, verified like any read of one
            decode_blob(data, key[len(BLOB_PREFIX):], signing_key)
    except PackageError as e:
        raise ArchiveError(f"archive member {member.name} is not a usable package ({e}); "
                           "nothing was imported. Export the cache again, or remove that "
                           "member") from None
    saved = meta.get("saved", 0)
    return Staged(key, member.name, path, float(saved) if isinstance(saved, (int, float)) else 0.0)


def _saved(data: bytes) -> float:
    try:
        saved = fmt.decode(data).meta.get("saved", 0)
    except PackageError:
        return float("-inf")  # a corrupt copy in the cache: anything replaces it
    return float(saved) if isinstance(saved, (int, float)) else 0.0


def commit(store: Any, staged: list[Staged], staging: str) -> tuple[int, list[str]]:
    """Put staged packages into ``store`` (one already there is replaced only by a newer
    one). Returns (imported, skipped). On a store failure, restores what it replaced and
    raises ArchiveError."""
    done: list[tuple[str, str | None]] = []  # (key, staged copy of what was there, or None)
    skipped: list[str] = []
    try:
        for n, item in enumerate(staged):
            with store.lock(item.key):
                current = store.get(item.key)
                if current is not None and _saved(current) >= item.saved:
                    skipped.append(f"{item.member}: the cache has a newer or equal copy")
                    continue
                previous = None
                if current is not None:
                    previous = os.path.join(staging, f"previous-{n}{_SUFFIX}")
                    with open(previous, "wb") as fh:
                        fh.write(current)
                with open(item.path, "rb") as fh:
                    store.put(item.key, fh.read())
                done.append((item.key, previous))
    except (PackageError, OSError) as e:
        _roll_back(store, done)
        raise ArchiveError(f"importing into {getattr(store, 'url', store)} failed ({e}); the "
                           f"{len(done)} package(s) already written were taken back, so the "
                           "cache is as it was. Fix the cause and import again") from None
    return len(done), skipped


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
