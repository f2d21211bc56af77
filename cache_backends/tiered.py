"""TieredBackend: several stores in order, typically fast and local first, shared after.

``TieredBackend([LocalDirBackend("~/.cache/precompile"), RedisBackend("redis://cache:6379")])``

* ``get`` asks each tier in order; a hit in a later tier is written back to the earlier ones
  (so the next process on this machine reads it locally), but only once ``accept(key,
  data)`` (given to the constructor; precompile passes its package verification: checksum,
  signature when a key is set, and the key the package is bound to) says the bytes are
  sound: a forged package in a shared remote never lands in an owner-only local cache.
  Without ``accept`` nothing is written back.
* ``put`` and ``delete`` go to every tier; ``list`` is the union; ``stat`` the first tier
  that has the key.
* ``lock`` takes every tier's lock, in tier order (the same order in every process, so two
  processes never wait on each other crosswise). A tier that is down is left out; a lock
  that another process holds past the timeout is an error, as in any single store.

A tier that fails (server down, disk full) is logged once as a warning and the others carry
on; for ``retry_after`` seconds it is then skipped, so a dead remote costs one timeout, not
one per call. Only when no tier could do what was asked does the call raise StoreError.

A tier that turns out to be read-only (``ReadOnlyStoreError``: a baked cache in an image
under a writable overlay, ``[overlay_dir, baked_dir]``) is not a failure: it keeps serving
reads, writes and locks leave it out from then on, and one warning says so ("tier 2 is
read-only: writes go to tier 1"). Tiers are numbered from 1 in messages, in list order.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .errors import LockTimeout, ReadOnlyStoreError, StoreError

from .base import CacheBackend, Stat, check_key

log = logging.getLogger("precompile")
T = TypeVar("T")
_WRITES = ("write", "write back", "delete", "lock")  # what read-only tiers sit out


class TieredBackend(CacheBackend):
    def __init__(self, tiers: Sequence[Any], retry_after: float = 30.0, *,
                 accept: Callable[[str, bytes], bool] | None = None) -> None:
        from . import open_store

        if isinstance(tiers, (str, bytes)) or not tiers:
            raise ValueError("TieredBackend needs a non-empty list of stores, fastest first")
        self.tiers: list[CacheBackend] = [open_store(t) for t in tiers]
        self.retry_after = retry_after
        self.accept = accept
        self.url = "tiered[" + ", ".join(t.url for t in self.tiers) + "]"
        self._mutex = threading.Lock()
        self._skip_until: dict[int, float] = {}
        self._warned: set[int] = set()
        self._read_only: set[int] = set()

    # ------------------------------------------------------------ failures

    def _usable(self, i: int) -> bool:
        with self._mutex:
            return time.monotonic() >= self._skip_until.get(i, 0.0)

    def _failed(self, i: int, what: str, error: Exception) -> None:
        with self._mutex:
            first = i not in self._warned
            self._warned.add(i)
            self._skip_until[i] = time.monotonic() + self.retry_after  # 0: usable at once
        tier = self.tiers[i]
        if first:
            log.warning("precompile: cache tier %d (%s) failed to %s: %s; carrying on with the "
                        "other tiers%s", i + 1, tier.url, what, error,
                        f" (trying it again every {self.retry_after:g}s)"
                        if self.retry_after > 0 else "")
        else:
            log.debug("precompile: cache tier %d (%s) failed to %s: %s", i + 1, tier.url, what,
                      error)

    def _became_read_only(self, i: int, error: ReadOnlyStoreError) -> None:
        """Leave tier ``i`` out of writes and locks from now on; say once where writes go."""
        with self._mutex:
            if i in self._read_only:
                return
            self._read_only.add(i)
            writable = [j for j in range(len(self.tiers)) if j not in self._read_only]
        where = (", ".join(f"tier {j + 1} ({self.tiers[j].url})" for j in writable)
                 if writable else "no tier: nothing compiled here will be saved")
        log.warning("precompile: cache tier %d (%s) is read-only: writes go to %s",
                    i + 1, self.tiers[i].url, where)
        log.debug("precompile: tier %d read-only because: %s", i + 1, error)

    def _tiers_for(self, what: str, errors: list[str],
                   tiers: Sequence[int] | None = None) -> Iterator[int]:
        """The tiers ``what`` may use, in order (writes and locks skip read-only ones); the
        reason each other one is left out goes to ``errors``."""
        for i in (range(len(self.tiers)) if tiers is None else tiers):
            if what in _WRITES and i in self._read_only:
                errors.append(f"{self.tiers[i].url}: read-only")
            elif not self._usable(i):
                errors.append(f"{self.tiers[i].url}: skipped after an earlier failure")
            else:
                yield i

    def _tier_failed(self, i: int, what: str, error: StoreError, errors: list[str]) -> None:
        """``what`` failed on tier ``i``: a read-only tier is left out of writes and locks
        from now on, any other failure counts against it (``_failed``)."""
        if isinstance(error, ReadOnlyStoreError):
            self._became_read_only(i, error)
        else:
            self._failed(i, what, error)
        errors.append(f"{self.tiers[i].url}: {error}")

    def _each(self, what: str, fn: Callable[[CacheBackend], T],
              tiers: Sequence[int] | None = None) -> tuple[list[tuple[int, T]], list[str]]:
        """Run ``fn`` on each usable tier; (successes, failure messages)."""
        done: list[tuple[int, T]] = []
        errors: list[str] = []
        for i in self._tiers_for(what, errors, tiers):
            try:
                done.append((i, fn(self.tiers[i])))
            except StoreError as e:
                self._tier_failed(i, what, e, errors)
        return done, errors

    def _on_some(self, what: str, fn: Callable[[CacheBackend], T]) -> list[tuple[int, T]]:
        """``_each`` for a call that must reach at least one tier: put, delete and list
        raise StoreError only when no tier could do ``what``."""
        done, errors = self._each(what, fn)
        if not done:
            raise self._all_failed(what, errors)
        return done

    def _all_failed(self, what: str, errors: list[str]) -> StoreError:
        return StoreError(f"every cache tier failed to {what}: " + "; ".join(errors))

    # ------------------------------------------------------------ interface

    def get(self, key: str) -> bytes | None:
        check_key(key)
        found = self._first("read", lambda t: t.get(key))
        if found is None:
            return None
        i, data = found
        if i and self._accepted(key, data):
            self._each("write back", lambda t, d=data: t.put(key, d), range(i))
        return data

    def _accepted(self, key: str, data: bytes) -> bool:
        """Whether a later tier's hit may be written back (see the module docstring)."""
        if self.accept is None:
            return False
        try:
            return bool(self.accept(key, data))
        except Exception as e:  # noqa: BLE001 - a verifier that fails accepts nothing
            log.debug("precompile: not writing back %s: %r", key, e)
            return False

    def _first(self, what: str, ask: Callable[[CacheBackend], T | None]) -> tuple[int, T] | None:
        """(tier index, answer) of the first tier that has an answer; None if the tiers that
        could be asked had none; StoreError if no tier could be asked."""
        answered = False
        errors: list[str] = []
        for i in self._tiers_for(what, errors):
            try:
                value = ask(self.tiers[i])
            except StoreError as e:
                self._failed(i, what, e)
                errors.append(f"{self.tiers[i].url}: {e}")
                continue
            answered = True
            if value is not None:
                return i, value
        if not answered:
            raise self._all_failed(what, errors)
        return None

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._on_some("write", lambda t: t.put(key, data))

    def delete(self, key: str) -> bool:
        check_key(key)
        done = self._on_some("delete", lambda t: t.delete(key))
        return any(removed for _, removed in done)

    def list(self) -> Iterator[str]:
        done = self._on_some("list", lambda t: set(t.list()))
        return iter(sorted(set().union(*(names for _, names in done))))

    def stat(self, key: str) -> Stat | None:
        check_key(key)
        found = self._first("stat", lambda t: t.stat(key))
        return None if found is None else found[1]

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        check_key(key)
        deadline = time.monotonic() + timeout
        errors: list[str] = []
        held = 0
        with contextlib.ExitStack() as stack:
            # A read-only tier is left out: nothing is written there, nothing to coordinate.
            for i in self._tiers_for("lock", errors):
                timeout_left = max(0.0, deadline - time.monotonic())
                try:
                    stack.enter_context(self.tiers[i].lock(key, timeout_left))
                    held += 1
                except LockTimeout:
                    raise  # another process holds it: no reason to go on without it
                except StoreError as e:
                    self._tier_failed(i, "lock", e, errors)
            if not held:
                raise self._all_failed("lock", errors)
            yield

    def close(self) -> None:
        for tier in self.tiers:
            close = getattr(tier, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
