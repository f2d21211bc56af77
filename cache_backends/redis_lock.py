"""The lock behind RedisBackend.lock: a redis key held under a lease that says who holds it.

Taking it is ``SET NX PX`` of a lease (``redis_lease.py``: a random token, the writer's host
and pid, when it was issued, its validity, and with a lease key an HMAC over them); a thread
renews the lease while the lock is held, and renewal and release compare the whole value,
so a process never frees a lock another process took after its own lease ran out. A
process that dies holding the lock blocks the others for at most one lease.

A key anyone else could have written is not a lock to wait on: a value that is not a lease
precompile wrote (garbage, no expiry, an expiry longer than its validity, a signature that
does not verify under this store's lease key, a lease older than its validity) is taken
over at once, with one warning, rather than waited on up to the caller's timeout. One that
is a live lease makes the caller wait, up to ``timeout`` (then :class:`LockTimeout`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

from .errors import LockTimeout
from .redis_client import SharedClient
from .redis_lease import Lease, judge

log = logging.getLogger("precompile")

# Replace the value only if it is still the one we saw (by its SHA-1, so a huge planted
# value is not sent back); PX gives the new lease its expiry. Renewal and takeover alike.
_SWAP = """
local current = redis.call('GET', KEYS[1])
if current and redis.sha1hex(current) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# Delete it only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_WARNED: set[tuple[str, str]] = set()


def _sha1(value: bytes) -> str:
    return hashlib.sha1(value).hexdigest()  # noqa: S324 - a compare-and-set tag, not security


@dataclasses.dataclass
class LeaseLock:
    """One taking of the lock ``name`` (the redis key) that guards package ``key``.
    ``lease``: seconds the lock outlives a holder that died; ``url`` names the server in
    messages; ``lease_key``: signs our leases and is required of others' (None: unsigned)."""

    shared: SharedClient
    name: str
    key: str
    url: str
    lease: float
    lease_key: bytes | None = None
    _token: str = dataclasses.field(default_factory=lambda: Lease.new_token())
    _value: bytes = b""
    _mutex: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def _lease_ms(self) -> int:
        return max(100, int(self.lease * 1000))

    def _fresh_value(self) -> bytes:
        return Lease.issue(self.name, self._token, self._lease_ms, self.lease_key).to_bytes()

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        """Hold the lock for the ``with`` block, waiting at most ``timeout`` seconds."""
        self._acquire(timeout)
        stop = threading.Event()
        keeper = threading.Thread(target=self._keep, args=(stop,), daemon=True,
                                  name=f"precompile-redis-lock-{self.key}")
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join(timeout=self.shared.socket_timeout + 1)
            self._release()

    def _acquire(self, timeout: float) -> None:
        """Retry with jittered, doubling waits (up to 0.2s) until taken or ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not self.shared.call("lock in", self._try_take, self.url):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"timed out after {timeout:g}s waiting for the lock on {self.key} in redis "
                    f"at {self.url}; another process holds it. A lock whose holder died frees "
                    f"itself within {self.lease:g}s")
            time.sleep(min(left, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.2)

    def _try_take(self) -> bool:
        client = self.shared.client
        value = self._fresh_value()
        if client.set(self.name, value, nx=True, px=self._lease_ms):
            self._value = value
            return True
        pipe = client.pipeline(transaction=True)
        pipe.get(self.name)
        pipe.pttl(self.name)
        current, pttl = pipe.execute()
        if current is None:
            return False  # freed in between: the next try takes it
        why = judge(current, pttl, self.name, self.lease_key)
        if why is None:
            return False  # a live lease: wait for it
        swap = client.register_script(_SWAP)
        if not swap(keys=[self.name], args=[_sha1(_as_bytes(current)), value, self._lease_ms]):
            return False
        self._value = value
        self._warn_takeover(why)
        return True

    def _warn_takeover(self, why: str) -> None:
        if (self.url, self.name) not in _WARNED:  # once per lock, not per try
            _WARNED.add((self.url, self.name))
            log.warning("precompile: took over the lock on %s in redis at %s instead of "
                        "waiting: %s. Something other than precompile writes this namespace; "
                        "set a signing key so that only its holders' leases count",
                        self.key, self.url, why)

    def _keep(self, stop: threading.Event) -> None:
        """Renew the lease (a fresh issue time and signature) every third of it."""
        swap = self.shared.client.register_script(_SWAP)
        while not stop.wait(self.lease / 3):
            try:
                with self._mutex, self.shared.bounded():
                    value = self._fresh_value()
                    if swap(keys=[self.name], args=[_sha1(self._value), value, self._lease_ms]):
                        self._value = value
                        continue  # renewed: again in a third of the lease
                log.warning("precompile: lost the redis lock on %s in %s (lease of %gs ran "
                            "out); another process may write at the same time",
                            self.key, self.url, self.lease)
                return
            except Exception as e:  # noqa: BLE001
                log.debug("precompile: cannot renew redis lock on %s: %s", self.key, e)

    def _release(self) -> None:
        try:
            with self._mutex, self.shared.bounded():
                self.shared.client.register_script(_RELEASE)(keys=[self.name],
                                                             args=[self._value])
        except Exception as e:  # noqa: BLE001
            # The section itself is done; the lease frees the lock on its own.
            log.warning("precompile: cannot release the redis lock on %s in %s (%s); it "
                        "expires within %gs", self.key, self.url, e, self.lease)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
