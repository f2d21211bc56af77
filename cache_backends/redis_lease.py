"""A lock's lease as it is stored in redis, and whether another process's lease is one to
wait for.

A lease is one short line: ``pcl1|<mac>|<token>|<issued ms>|<validity ms>|<host:pid>``.
The writer renews it (a new issue time, a new signature) every third of its validity, and
redis expires it (``PX``) when the writer stops. With a lease key (precompile passes its
signing key) ``<mac>`` is an HMAC-SHA256 over the lock's name and the other fields, so
only a holder of the key writes a lease others wait for; without one it is ``-``.

:func:`judge` is the reply parser for a value found under a lock's name: anything that is
not such a lease (too long, malformed, unsigned or wrongly signed under a key, no expiry or
one past its validity, a validity longer than :data:`MAX_LEASE_MS`, issued longer ago
than its validity or in the future, beyond :data:`CLOCK_SLACK_MS` of clock difference
between machines) is a reason not to wait; a live lease from a trusted writer is None.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import socket
import time
import uuid
from typing import Any

VERSION = "pcl1"
MAX_LEASE_MS = 300_000  # the longest validity a lease may claim (RedisBackend's lock_lease)
CLOCK_SLACK_MS = 30_000  # how far two machines' clocks may disagree
MAX_VALUE_BYTES = 512
_UNSIGNED = "-"
# The line of the module docstring: mac (``-`` unsigned), token, issue time, validity, writer
# (the rest of the line, which its writer chose).
_LEASE = re.compile(re.escape(VERSION) + r"\|([^|]*)\|([A-Za-z0-9]+)\|([0-9]+)\|([0-9]+)\|(.*)",
                    re.DOTALL)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _writer() -> str:
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-._")[:64]
    return f"{host or 'host'}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class Lease:
    """One issue of a lease (see the module docstring)."""

    mac: str
    token: str
    issued_ms: int
    lease_ms: int
    writer: str

    @staticmethod
    def new_token() -> str:
        return uuid.uuid4().hex

    @classmethod
    def issue(cls, name: str, token: str, lease_ms: int, key: bytes | None) -> Lease:
        """A lease on lock ``name`` issued now, signed with ``key`` when there is one."""
        unsigned = cls(_UNSIGNED, token, _now_ms(), lease_ms, _writer())
        return dataclasses.replace(unsigned, mac=unsigned.signature(name, key)) if key else unsigned

    def signature(self, name: str, key: bytes) -> str:
        signed = "\0".join(("precompile-lease", VERSION, name, self.token, str(self.issued_ms),
                            str(self.lease_ms), self.writer))
        return hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()

    def to_bytes(self) -> bytes:
        return "|".join((VERSION, self.mac, self.token, str(self.issued_ms), str(self.lease_ms),
                         self.writer)).encode("ascii")

    @classmethod
    def parse(cls, raw: bytes) -> Lease:
        """The lease ``raw`` holds; ValueError when it is not one."""
        if len(raw) > MAX_VALUE_BYTES:
            raise ValueError(f"{len(raw)} bytes long")
        found = _LEASE.fullmatch(raw.decode("ascii"))
        if found is None:
            raise ValueError("not in precompile's lease format")
        mac, token, issued, lease_ms, writer = found.groups()
        return cls(mac, token, int(issued), int(lease_ms), writer)


def judge(raw: Any, pttl: Any, name: str, key: bytes | None) -> str | None:
    """Why the value ``raw`` under lock ``name``, expiring in ``pttl`` ms (redis: -1 for
    never), is not a lease to wait for; None when it is a live lease from a trusted
    writer."""
    if not isinstance(raw, bytes):
        return "its value is not a lease precompile writes"
    try:
        lease = Lease.parse(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return f"its value is not a lease precompile writes ({e})"
    why = _doubt(lease, pttl, name, key)
    return None if why is None else f"{why} (writer {lease.writer!r})"  # repr: its writer chose it


def _doubt(lease: Lease, pttl: Any, name: str, key: bytes | None) -> str | None:
    """Why a well-formed ``lease`` is not one to wait for: its signature, its claimed
    validity, redis's expiry or its issue time; None when it is live and trusted."""
    if key is not None and not hmac.compare_digest(lease.mac, lease.signature(name, key)):
        return "its lease is not signed with this store's key"
    if lease.lease_ms > MAX_LEASE_MS:
        return f"its lease claims {lease.lease_ms / 1000:g}s, longer than any lease"
    if not isinstance(pttl, int) or pttl < 0:
        return "it never expires"
    if pttl > lease.lease_ms:
        return f"it expires in {pttl / 1000:g}s, past its lease of {lease.lease_ms / 1000:g}s"
    age = _now_ms() - lease.issued_ms
    if age > lease.lease_ms + CLOCK_SLACK_MS:
        return f"its lease was issued {age / 1000:g}s ago and was not renewed since"
    if age < -CLOCK_SLACK_MS:
        return f"its lease is dated {-age / 1000:g}s in the future"
    return None
