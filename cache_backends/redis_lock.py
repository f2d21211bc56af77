"""The lock behind RedisBackend.lock: a redis key held under a lease.

Taking it is ``SET NX PX`` with a random token; a thread renews the lease while the lock is
held, and release is a Lua compare-and-delete, so a process never frees a lock another
process took after its own lease ran out. A process that dies holding the lock blocks the
others for at most one lease; one that waits past its timeout gets :class:`LockTimeout`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator

from .errors import LockTimeout

from .redis_client import SharedClient

log = logging.getLogger("precompile")

# Extend the lease only if we still hold the lock; delete it only if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclasses.dataclass
class LeaseLock:
    """One taking of the lock ``name`` (the redis key) that guards package ``key``.
    ``lease``: seconds the lock outlives a holder that died; ``url`` names the server in
    messages."""

    shared: SharedClient
    name: str
    key: str
    url: str
    lease: float
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def _lease_ms(self) -> int:
        return max(100, int(self.lease * 1000))

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
        return bool(self.shared.client.set(self.name, self.token, nx=True, px=self._lease_ms))

    def _keep(self, stop: threading.Event) -> None:
        """Renew the lease every third of it while the section runs."""
        renew = self.shared.client.register_script(_RENEW)
        while not stop.wait(self.lease / 3):
            try:
                with self.shared.bounded():
                    renewed = renew(keys=[self.name], args=[self.token, self._lease_ms])
                if not renewed:
                    log.warning("precompile: lost the redis lock on %s in %s (lease of %gs ran "
                                "out); another process may write at the same time",
                                self.key, self.url, self.lease)
                    return
            except Exception as e:  # noqa: BLE001
                log.debug("precompile: cannot renew redis lock on %s: %s", self.key, e)

    def _release(self) -> None:
        try:
            with self.shared.bounded():
                self.shared.client.register_script(_RELEASE)(keys=[self.name],
                                                             args=[self.token])
        except Exception as e:  # noqa: BLE001
            # The section itself is done; the lease frees the lock on its own.
            log.warning("precompile: cannot release the redis lock on %s in %s (%s); it "
                        "expires within %gs", self.key, self.url, e, self.lease)
