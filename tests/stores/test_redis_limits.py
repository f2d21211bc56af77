"""One call to a redis server is bounded as a whole, whatever the server does: a
reply larger than a package may be is refused as it arrives, and a server that trickles its
reply cannot hold a call past its deadline (each socket wait alone never times out there).
A real redis-server on loopback for the size cap; a small fake server for the trickle.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

pytest.importorskip("redis")

from cache_backends.errors import StoreError  # noqa: E402
from redis_server import RedisServer, redis_server  # noqa: E402,F401


def test_a_reply_over_the_package_cap_is_refused(redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    ns = f"t-{uuid.uuid4().hex[:12]}"
    small = RedisBackend(redis_server.url, namespace=ns, max_package_bytes=64 << 10)
    big = RedisBackend(redis_server.url, namespace=ns)
    big.put("k", b"x" * (3 << 20))  # over the cap plus its protocol slack (1 MiB)
    with pytest.raises(StoreError, match="over the .*-byte cap"):
        small.get("k")
    assert big.get("k") == b"x" * (3 << 20)
    small.put("ok", b"y" * 1000)
    assert small.get("ok") == b"y" * 1000  # the connection was replaced, not left mid-reply


class _TricklingServer:
    """Answers every command with a bulk reply sent one byte every ``pause`` seconds."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the command
                conn.sendall(b"$100\r\n")
                for _ in range(102):
                    if self.stop.wait(self.pause):
                        return
                    conn.sendall(b"z")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def test_a_trickling_server_cannot_hold_a_call_past_its_deadline() -> None:
    from cache_backends import RedisBackend

    server = _TricklingServer(pause=0.2)  # every wait is well inside socket_timeout
    try:
        st = RedisBackend(server.url, socket_timeout=2, call_timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="deadline|Timeout"):
            st.get("k")
        assert time.monotonic() - t0 < 10  # 100 bytes at 5 a second would take 20 s
    finally:
        server.close()
