"""The one small interface every store implements.

A store maps string keys to byte strings. ``put`` is atomic: a reader sees the old value or
the new one, never a part. ``lock`` guards read-modify-write sequences (merging entries into
a stored package) across processes where the store can; elsewhere the last writer wins,
which loses nothing that the next compile would not add back.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterator

from .errors import StoreError

MAX_KEY_LENGTH = 200  # with ".pcpkg" or ".compile.lock", well inside a 255-byte file name


def check_key(key: str) -> None:
    """One key rule for every store (and ``precompile import``), so a key that works in one
    works in all: non-empty, at most MAX_KEY_LENGTH characters, printable (no NUL or other
    control character, which would cut a C string or a terminal line), no path separator,
    no leading dot (those name temp and lock files)."""
    if not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()
            and "/" not in key and "\\" not in key and not key.startswith(".")):
        raise StoreError(f"invalid cache key {key!r}: keys are 1-{MAX_KEY_LENGTH} printable "
                         "characters without path separators or a leading dot")


@dataclasses.dataclass(frozen=True)
class Stat:
    """Facts about one stored value (times are UNIX seconds; None where unknown)."""

    key: str
    size: int
    created: float | None = None
    last_used: float | None = None
    path: str | None = None  # the file that holds it, for stores with files


class CacheBackend(abc.ABC):
    """Bytes by key. Implementations raise ``errors.StoreError`` on failure."""

    #: Human-readable location, for messages (``/home/u/.cache/precompile``, ``memory://``).
    url: str = ""
    #: Whether ``list`` plus a few ``get`` calls are cheap enough to run on every cache miss
    #: (to explain it). False for network stores.
    cheap_listing: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value, or None if absent. A hit counts as a use (for LRU eviction)."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store atomically, replacing any previous value."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove; True if something was removed."""

    @abc.abstractmethod
    def list(self) -> Iterator[str]:
        """Every key currently stored."""

    @abc.abstractmethod
    def stat(self, key: str) -> Stat | None:
        """Size and times of one key, or None if absent."""

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        """Exclusive section for read-modify-write of ``key`` (no-op by default)."""
        yield

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
