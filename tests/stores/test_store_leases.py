"""A lease planted in a writable Redis namespace is not waited on.

A cold first call waits for the process that holds the key's compile lease, and only for a
live lease from a trusted writer: any other value (garbage, no expiry, an expiry past its
validity, an old lease replayed, a lease signed with another key) is not a lease, so no
cold first call waits the whole ``PRECOMPILE_WAIT_TIMEOUT`` on it. Against the real
redis-server (a fresh process meeting a planted lease: read/test_single_flight.py).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

pytest.importorskip("redis")

from cache_backends.errors import LockTimeout  # noqa: E402
from redis_server import RedisServer, redis_server  # noqa: E402,F401

KEY = "f-0123456789abcdef"
WAIT = 5.0  # what a cold first call would wait on a lease it trusts


def _store(server: RedisServer, ns: str, lease_key: bytes | None = None, **kw: object):
    from cache_backends import RedisBackend

    if lease_key is not None:
        kw["lease_key"] = lease_key
    return RedisBackend(server.url, namespace=ns, **kw)  # type: ignore[arg-type]


def _lease(name: str, *, key: bytes | None = None, lease_ms: int = 30_000,
           age_ms: int = 0) -> bytes:
    import dataclasses

    from cache_backends.redis_lease import Lease

    lease = Lease.issue(name, Lease.new_token(), lease_ms, None)
    lease = dataclasses.replace(lease, issued_ms=lease.issued_ms - age_ms)
    if key is not None:
        lease = dataclasses.replace(lease, mac=lease.signature(name, key))
    return lease.to_bytes()


# What someone with write access to the namespace (and no signing key) plants.
PLANTED: dict[str, Callable[[object, str], None]] = {
    "garbage, no expiry": lambda c, n: c.set(n, b"\x1b]0;owned\x07 held"),
    "garbage, one minute": lambda c, n: c.set(n, b"x" * 100, px=60_000),
    "lease, no expiry": lambda c, n: c.set(n, _lease(n)),
    "lease, expiry past its validity": lambda c, n: c.set(n, _lease(n, lease_ms=1000),
                                                          px=60_000),
    "lease claiming an hour": lambda c, n: c.set(n, _lease(n, lease_ms=3_600_000),
                                                 px=3_600_000),
    "old lease replayed": lambda c, n: c.set(n, _lease(n, age_ms=600_000), px=30_000),
    "lease dated in the future": lambda c, n: c.set(n, _lease(n, age_ms=-600_000), px=30_000),
}


@pytest.mark.parametrize("plant", PLANTED.values(), ids=list(PLANTED))
def test_a_planted_lease_is_not_waited_on(redis_server: RedisServer,
                                          plant: Callable[[object, str], None]) -> None:
    from precompile.read.single_flight import LEASE_SUFFIX, wait_or_lead

    st = _store(redis_server, f"t-{uuid.uuid4().hex[:12]}")
    name = f"{st.namespace}:v1:lock:{KEY}{LEASE_SUFFIX}"
    plant(st.client, name)
    t0 = time.monotonic()
    data, lease = wait_or_lead(st, KEY, wait_timeout=WAIT)
    took = time.monotonic() - t0
    assert data is None and lease is not None and lease.held, "not the leader"
    assert took < 2.0, f"waited {took:.1f}s on a planted lease"
    assert st.client.get(name).startswith(b"pcl1|")  # ours now
    lease.release()
    assert st.client.get(name) is None


def _hold(st: object, key: str, seconds: float, started: threading.Event) -> threading.Thread:
    def run() -> None:
        with st.lock(key):  # type: ignore[attr-defined]
            started.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread


def test_a_live_lease_is_waited_on_and_renewed(redis_server: RedisServer) -> None:
    """The lease of a process that is compiling (renewed past its validity) still holds."""
    ns = f"t-{uuid.uuid4().hex[:12]}"
    holder = _store(redis_server, ns, lock_lease=0.5)
    other = _store(redis_server, ns)
    thread = _hold(holder, KEY, 1.5, threading.Event())
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        with other.lock(KEY, timeout=1.0):
            pass
    assert time.monotonic() - t0 >= 0.9
    thread.join()


def test_with_a_signing_key_only_leases_signed_with_it_count(redis_server: RedisServer,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    mine, theirs = b"fleet key", b"another key"
    holder = _store(redis_server, ns, lease_key=mine)
    same_key = _store(redis_server, ns, lease_key=mine)
    other_key = _store(redis_server, ns, lease_key=theirs)
    unsigned = _store(redis_server, ns)

    thread = _hold(holder, KEY, 2.0, threading.Event())
    with pytest.raises(LockTimeout):
        with same_key.lock(KEY, timeout=0.3):
            pass
    with pytest.raises(LockTimeout):  # without a key, any well-formed live lease counts
        with unsigned.lock(KEY, timeout=0.3):
            pass
    thread.join()

    # A live lease signed with another key, and a genuine one replayed long after it ran out.
    name = f"{ns}:v1:lock:{KEY}"
    for value in (_lease(name, key=theirs), _lease(name, key=mine, age_ms=600_000)):
        holder.client.set(name, value, px=30_000)
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="precompile"), same_key.lock(KEY, timeout=5):
            assert time.monotonic() - t0 < 2.0
    assert any("took over the lock" in r.getMessage() for r in caplog.records)
    with pytest.raises(LockTimeout):  # ...and its own lease counts for the other key's
        holder.client.set(name, _lease(name, key=theirs), px=30_000)
        with other_key.lock(KEY, timeout=0.3):
            pass


def test_a_lease_longer_than_the_cap_is_refused() -> None:
    from cache_backends import RedisBackend

    with pytest.raises(ValueError, match="lock_lease must be at most"):
        RedisBackend("redis://127.0.0.1:1/0", lock_lease=3600)
