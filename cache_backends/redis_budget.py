"""What one call to a redis server may cost: a maximum reply size and an overall deadline.

redis-py bounds each socket wait (``socket_timeout``) but not a whole call: a server that
trickles one byte a second never lets a wait time out, and a bulk reply as large as the
server cares to announce is read into memory. Every connection precompile opens wraps its
socket in :class:`BudgetedSocket`, which, while a call runs under :func:`budget`, counts
the bytes received and refuses to read past ``max_bytes`` (:class:`ReplyTooLarge`), and
shortens each wait so that no call outlives its deadline (a socket timeout, which redis-py
reports as a TimeoutError).
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis as _redis


class ReplyTooLarge(_redis.exceptions.RedisError):
    """The server sent more than the call may receive (not retried: it would only send
    the same again)."""


class _Budget:
    def __init__(self, max_bytes: int, deadline: float) -> None:
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.received = 0


_CURRENT = threading.local()


@contextlib.contextmanager
def budget(max_bytes: int, seconds: float) -> Iterator[None]:
    """Bound every redis call this thread makes inside the block (see the module
    docstring): at most ``max_bytes`` received, done within ``seconds``."""
    previous = getattr(_CURRENT, "budget", None)
    _CURRENT.budget = _Budget(max_bytes, time.monotonic() + seconds)
    try:
        yield
    finally:
        _CURRENT.budget = previous


class BudgetedSocket:
    """A connected socket whose reads and writes respect the calling thread's budget;
    everything else is the socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _within_deadline(self) -> _Budget | None:
        current: _Budget | None = getattr(_CURRENT, "budget", None)
        if current is None:  # a call outside any budget gets the socket's own timeout back
            self._sock.settimeout(self._timeout)
            return None
        left = current.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the call ran past its overall deadline")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
        return current

    def _count(self, current: _Budget | None, n: int) -> None:
        if current is None:
            return
        current.received += n
        if current.received > current.max_bytes:
            raise ReplyTooLarge(f"reply larger than {current.max_bytes} bytes")

    def recv(self, size: int, *args: Any) -> bytes:
        current = self._within_deadline()
        data = self._sock.recv(size, *args)
        self._count(current, len(data))
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, *args: Any) -> int:
        current = self._within_deadline()
        n = self._sock.recv_into(buffer, nbytes, *args)
        self._count(current, n)
        return n

    def sendall(self, data: Any, *args: Any) -> None:
        self._within_deadline()
        self._sock.sendall(data, *args)


_CLASSES: dict[type, type] = {}


def budgeted_connection_class(base: type) -> type:
    """``base`` (redis-py's TCP, TLS or unix-socket connection) with its socket budgeted."""
    if base not in _CLASSES:
        def _connect(self: Any) -> Any:
            return BudgetedSocket(base._connect(self))

        _CLASSES[base] = type(f"Budgeted{base.__name__}", (base,), {"_connect": _connect})
    return _CLASSES[base]
