"""MemoryBackend: a dict in this process, for tests and single-process use."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from .errors import LockTimeout

from .base import CacheBackend, Stat, check_key


class MemoryBackend(CacheBackend):
    url = "memory://"
    cheap_listing = True

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float, float]] = {}
        self._mutex = threading.RLock()
        self._locks: dict[str, threading.RLock] = {}

    def get(self, key: str) -> bytes | None:
        with self._mutex:
            item = self._data.get(key)
            if item is None:
                return None
            self._data[key] = (item[0], item[1], time.time())
            return item[0]

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        now = time.time()
        with self._mutex:
            self._data[key] = (bytes(data), now, now)

    def delete(self, key: str) -> bool:
        with self._mutex:
            return self._data.pop(key, None) is not None

    def list(self) -> Iterator[str]:
        with self._mutex:
            return iter(sorted(self._data))

    def stat(self, key: str) -> Stat | None:
        with self._mutex:
            item = self._data.get(key)
        if item is None:
            return None
        return Stat(key, len(item[0]), created=item[1], last_used=item[2])

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        with self._mutex:
            lk = self._locks.setdefault(key, threading.RLock())
        if not lk.acquire(timeout=max(timeout, 0.0)):
            raise LockTimeout(f"timed out after {timeout:g}s waiting for the lock on {key} in "
                              "memory://; another thread of this process holds it")
        try:
            yield
        finally:
            lk.release()
