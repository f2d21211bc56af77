"""Single flight: when many processes miss the same key at once, one compiles it.

The first to take the key's *compile lease* (a lock in the store, ``<key>.compile``) is the
leader: it compiles, saves right after its first call and releases the lease. The others
poll the store until the package appears (and load it) or the lease frees up without one
(the leader died: the next one takes over), for at most ``wait_timeout`` seconds.
"""
from __future__ import annotations

import contextlib
import os
import time
import weakref

from cache_backends import CacheBackend

from ..counters import STATS, warn_once
from ..errors import LockTimeout, StoreError
from .loading import fetch


LEASE_SUFFIX = ".compile"  # the lock a leader holds while it compiles a key
_HELD: weakref.WeakSet[Lease] = weakref.WeakSet()
_PARENT_LEASES: list[contextlib.ExitStack] = []  # kept open, never released, in a child


class Lease:
    """The compile lease on one key, held from taking it to the end of the first call."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack: contextlib.ExitStack | None = stack
        _HELD.add(self)

    @property
    def held(self) -> bool:
        return self._stack is not None

    def release(self) -> None:
        """Let the processes waiting for this key in (they compile or load what was saved)."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            stack.close()
        except Exception as e:  # noqa: BLE001 - the store's lock frees itself (lease, exit)
            warn_once(f"unlock:{type(e).__name__}", f"cannot release the compile lease ({e!r})")

    def _abandon(self) -> None:
        """In a forked child: the lock is the parent's. Never close it here (that would
        unlock the parent's lock file); the child just stops holding it."""
        if self._stack is not None:
            _PARENT_LEASES.append(self._stack)
            self._stack = None


def _after_fork_in_child() -> None:
    for lease in list(_HELD):
        lease._abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)


def wait_or_lead(store: CacheBackend, key: str,
                 wait_timeout: float) -> tuple[bytes | None, Lease | None]:
    """No package yet. Become the one process that compiles it or wait for whoever holds
    the lease to save it.

    Returns (package, None) if it appeared while waiting; (None, lease) for the leader;
    (None, None) to compile without leading (waiting timed out, or the store cannot
    coordinate).
    """
    t0 = time.monotonic()
    deadline = t0 + wait_timeout
    delay = 0.02
    try:
        while True:
            try:
                stack = _free_lease(store, key)
            except StoreError as e:
                warn_once(f"store:{store.url}", f"cannot coordinate compiles through the "
                          f"cache ({e}); every process compiles for itself")
                return None, None
            if stack is not None:
                return _lead(store, key, Lease(stack))
            if time.monotonic() >= deadline:
                STATS.note_miss(f"{key}: waited {wait_timeout:g}s for another process to "
                                "compile it; compiling here")
                return None, None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            data = fetch(store, key)
            if data is not None:
                STATS.followed += 1
                return data, None
    finally:
        STATS.waited_s += time.monotonic() - t0


def _free_lease(store: CacheBackend, key: str) -> contextlib.ExitStack | None:
    """The key's compile lease, taken if no process holds it (None if one does); raises
    StoreError when the store cannot lock at all."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.lock(key + LEASE_SUFFIX, timeout=0))
    except LockTimeout:
        return None
    return stack


def _lead(store: CacheBackend, key: str, lease: Lease) -> tuple[bytes | None, Lease | None]:
    """Holding the lease: the previous leader may have saved just before releasing it."""
    try:
        data = fetch(store, key)
    except BaseException:
        lease.release()
        raise
    if data is not None:
        lease.release()
        STATS.followed += 1
        return data, None
    STATS.led += 1
    return None, lease
