"""A real redis-server for tests: started on 127.0.0.1 on a free port, stopped afterwards.

``redis_server`` (a session fixture) gives a running :class:`RedisServer`. Without the
``redis-server`` binary or the ``redis`` client the tests that use it FAIL, so a CI machine
that lost its install step is noticed; ``PRECOMPILE_SKIP_REDIS=1`` turns that into a skip
(``make test`` installs redis-server when it is missing).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

SKIP_ENV = "PRECOMPILE_SKIP_REDIS"
_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server",
               "/opt/homebrew/bin/redis-server")


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process this test run started (and only that one is stopped)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="precompile-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, port: int | None = None) -> RedisServer:
        """Start on ``port`` (a restart), else on a free port."""
        last = ""
        for _ in range(1 if port else 5):  # the free port may be taken before redis binds
            self.port = port or free_port()
            with open(os.path.join(self.dir, "redis.log"), "wb") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--protected-mode", "yes", "--save", "", "--appendonly", "no",
                     "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ping():
                    return self
                time.sleep(0.02)
            last = self.log_tail()
            self.stop()
        raise RuntimeError(f"redis-server did not start on 127.0.0.1: {last}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as fh:
                return fh.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if os.environ.get(SKIP_ENV, "").strip() in ("1", "true", "yes"):
        pytest.skip(f"{reason} ({SKIP_ENV}=1)")
    pytest.fail(f"{reason}. Install it (`apt-get install redis-server`, `pip install redis`; "
                f"`make test` does both) or set {SKIP_ENV}=1 to skip the Redis tests",
                pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the redis client package is not installed")
    binary = find_redis_server()
    if binary is None:
        _unavailable("redis-server is not installed")
    server = RedisServer(binary).start()
    try:
        yield server
    finally:
        server.close()
