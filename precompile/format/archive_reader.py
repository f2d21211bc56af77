"""An archive's decompressed bytes, read once, counted and timed: what ``precompile import``
reads the tar stream from.

tarfile's own stream mode (``mode="r|*"``) decompresses each chunk of input whole and then
copies the rest of its buffer on every read: a 145-byte .tar.bz2 that expands to a few
hundred MiB made each 10 KiB read copy hundreds of MiB, and import ran for minutes (the
square of the decompressed size). And members that are not packages were read through
without counting against any budget.

:func:`open_archive` instead picks the decompressor from the file's magic bytes (gzip,
bzip2, xz, or none) and reads it through the standard library's buffered readers, which
never decompress more than they are asked for, so each byte costs the same whatever came
before (linear in what is read, for every format). Every decompressed byte (tar headers,
members that are not packages, padding) counts against ``max_bytes``, and every read checks
the wall-clock ``deadline``; tarfile then parses it as a plain tar stream (``mode="r|"``).
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import time
from collections.abc import Callable
from typing import BinaryIO


_MAGIC: tuple[tuple[bytes, Callable[[BinaryIO], BinaryIO]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", lambda raw: bz2.BZ2File(raw, mode="rb")),
    (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, mode="rb")))
MAX_HEADER_BYTES = 1 << 20  # a pax or GNU long-name header: real ones are a few hundred bytes


class ArchiveLimitError(Exception):
    """An archive went over a limit while it was read; the message says which and how to
    raise it (``archive.stage`` turns it into an ArchiveError; not a PackageError, so it is
    never taken for one bad member)."""


class CountingReader(io.RawIOBase):
    """Decompressed bytes, refused past ``max_bytes`` in total or past ``deadline``."""

    def __init__(self, source: BinaryIO, max_bytes: int, deadline: float,
                 describe_cap: str) -> None:
        super().__init__()
        self._source = source
        self._left = max_bytes
        self._deadline = deadline
        self._describe_cap = describe_cap
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        check_deadline(self._deadline)
        data = self._source.read(min(len(buffer), self._left + 1))
        self._left -= len(data)
        self.read_bytes += len(data)
        if self._left < 0:
            raise ArchiveLimitError(f"archive expands to more than {self._describe_cap}; "
                                    "nothing was imported. Raise --max-total-size if it "
                                    "is genuine")
        buffer[:len(data)] = data
        return len(data)


def check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ArchiveLimitError("reading the archive took longer than its time limit; "
                                "nothing was imported. Raise --max-seconds if it is genuine")


def open_archive(raw: BinaryIO, max_bytes: int, deadline: float,
                 describe_cap: str) -> CountingReader:
    """``raw`` (positioned at its start) decompressed and counted."""
    head = raw.read(6)
    raw.seek(0)
    source: BinaryIO = raw
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            source = opener(raw)
            break
    return CountingReader(source, max_bytes, deadline, describe_cap)


class BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose extended header (pax, GNU long name) is at most
    ``MAX_HEADER_BYTES``: tarfile reads those into memory whole before we see the member."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if (self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                          tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
                and self.size > MAX_HEADER_BYTES):
            raise ArchiveLimitError(f"archive has an extended tar header of {self.size} bytes "
                                    f"(at most {MAX_HEADER_BYTES}); nothing was imported. It "
                                    "was not written by precompile export")
        return super()._proc_member(tarfile_)  # type: ignore[misc]
