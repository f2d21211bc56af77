"""UnavailableBackend: the store open_store gives for a URL whose client package is missing.

open_store returns it rather than raising, so a cache URL set for a whole fleet
(``PRECOMPILE_CACHE_URL``) does not crash a program that lacks the client: every call raises
StoreError saying what to install, and precompile warns once and runs without the cache, as
for a server that is down.
"""
from __future__ import annotations

from typing import Any, NoReturn

from .errors import StoreError

from .base import CacheBackend, Stat


class UnavailableBackend(CacheBackend):
    """A store whose client package is not installed (see the module docstring)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason

    def _fail(self) -> NoReturn:
        raise StoreError(self.reason)

    def get(self, key: str) -> bytes | None:
        self._fail()

    def put(self, key: str, data: bytes) -> None:
        self._fail()

    def delete(self, key: str) -> bool:
        self._fail()

    def list(self) -> Any:
        self._fail()

    def stat(self, key: str) -> Stat | None:
        self._fail()

    def lock(self, key: str, timeout: float = 60.0) -> Any:
        self._fail()
