"""RedisBackend: packages in a Redis server, shared by every machine that can reach it.

Layout (``<ns>`` is the namespace, ``precompile`` by default; ``v1`` is this layout's version,
so a later layout can live beside it on the same server)::

    <ns>:v1:pkg:<key>    the package bytes (a string)
    <ns>:v1:meta:<key>   a hash: created, last_used (UNIX seconds), size (bytes)
    <ns>:v1:lock:<key>   a lock token while some process merges into <key>

``put`` is one MULTI/EXEC transaction (SET of the whole value plus its metadata), so readers
see the old package or the new one, never a part. With ``ttl`` every package expires that
many seconds after it was last written *or read* (reads refresh it), which keeps a shared
server from filling up with packages nobody uses any more.

``lock`` is ``SET NX PX`` with a random token and a lease; a thread renews the lease while
the lock is held, and release is a Lua compare-and-delete, so a process never frees a lock
another process took after its own lease ran out. A process that dies holding the lock
blocks the others for at most one lease.

Every network wait is bounded: ``socket_timeout`` for connecting and for each reply, and
one quick retry only after a dropped connection (a restarted server), never after a
timeout. A server that cannot be reached turns into :class:`StoreError` with a message that
says what to check, and for ``retry_after`` seconds afterwards calls fail at once instead
of waiting on the network again. Every store opened from the same URL (one per compiled
function) shares one client and that one "down" timer, so a program with many compiled
functions opens one connection pool and pays the timeout once, not once per function. A
reply that is not what redis sends (a garbage reply, a value of the wrong type) is a
StoreError too, so a tiered store fails over instead of crashing.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis as _redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from precompile.errors import LockTimeout, StoreError

from .base import CacheBackend, Stat, check_key

log = logging.getLogger("precompile")

LAYOUT_VERSION = "v1"
T = TypeVar("T")

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
# A read counts as a use: record it, and with a TTL push the expiry back.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[2], 'last_used', ARGV[1])
  local ttl = tonumber(ARGV[2])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return 1
end
return 0
"""


def _no_setinfo() -> dict[str, Any]:
    """Arguments that skip the CLIENT SETINFO round trips on each new connection (each would
    wait a full socket_timeout on a server that hangs); spelled differently by version."""
    import inspect

    try:
        params = inspect.signature(_redis.connection.AbstractConnection.__init__).parameters
    except (AttributeError, TypeError, ValueError):
        return {}
    if "driver_info" in params:
        return {"driver_info": None}
    if "lib_name" in params:
        return {"lib_name": None, "lib_version": None}
    return {}


_NO_SETINFO = _no_setinfo()




def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class _Server:
    """One redis client and its "down" timer, shared by every RedisBackend that names the
    same URL with the same timeouts. redis-py's client is thread-safe and its pool opens
    fresh connections in a forked child, so one per URL serves the whole process."""

    def __init__(self, client: Any, retry_after: float) -> None:
        self.client = client
        self.retry_after = retry_after
        self.down_until = 0.0
        self.down_reason = ""
        self.renew = client.register_script(_RENEW)
        self.release = client.register_script(_RELEASE)
        self.touch = client.register_script(_TOUCH)

    def trip(self, reason: str) -> None:
        self.down_reason = f"({reason.rstrip('.')})"
        self.down_until = time.monotonic() + self.retry_after


_SERVERS: dict[tuple[str, float, float], _Server] = {}
_SERVERS_LOCK = threading.Lock()


def _reset_lock_in_child() -> None:
    global _SERVERS_LOCK
    _SERVERS_LOCK = threading.Lock()  # another thread may have held it across the fork


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _shared_server(url: str, socket_timeout: float, retry_after: float) -> _Server:
    """The one _Server for this URL and these timeouts, made on first use."""
    with _SERVERS_LOCK:
        server = _SERVERS.get((url, socket_timeout, retry_after))
        if server is None:
            client = _redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                # One quick retry for a dropped connection (a server restart, an idle
                # connection cut); none after a timeout, which would only double the wait
                # on a server that hangs. So a call waits at most ~socket_timeout.
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.05), 1,
                            supported_errors=(_redis.exceptions.ConnectionError,)),
                retry_on_error=[_redis.exceptions.ConnectionError],
                health_check_interval=30, **_NO_SETINFO)
            server = _SERVERS[(url, socket_timeout, retry_after)] = _Server(client, retry_after)
        return server


def _check_seconds(name: str, value: float | None, *, allow_zero: bool = False,
                   allow_none: bool = False) -> None:
    """Reject what would silently misbehave (``ttl=-5`` was a 1 ms TTL)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"redis store {name} must be a positive number of seconds"
                         f"{' or None' if allow_none else ''}, not {value!r}")


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def split_url_options(url: str) -> tuple[str, dict[str, Any]]:
    """Take this store's own options (``namespace``, ``ttl``) out of a redis URL's query;
    the rest of the query is left for redis-py."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours: dict[str, Any] = {}
    rest = []
    for name, value in query:
        if name == "namespace":
            ours["namespace"] = value
        elif name == "ttl":
            try:
                ours["ttl"] = float(value) if value else None
            except ValueError:
                raise ValueError(f"ttl in {_redact(url)!r} must be a number of seconds") from None
            if ours["ttl"] is not None and not (math.isfinite(ours["ttl"]) and ours["ttl"] > 0):
                raise ValueError(f"ttl in {_redact(url)!r} must be a positive number of "
                                 f"seconds, not {value!r}")
        else:
            rest.append((name, value))
    base = url.split("?", 1)[0]  # not urlunsplit: it turns unix:///x into unix:/x
    return (base + "?" + urllib.parse.urlencode(rest) if rest else base), ours


class RedisBackend(CacheBackend):
    """Packages in Redis. ``url_or_client``: ``redis://[user:password@]host:port/db``,
    ``rediss://`` (TLS), ``unix:///path/to.sock``, or a ``redis.Redis`` client (used as is,
    with its own timeouts).

    ``ttl``: seconds a package lives after it was last written or read (None: forever).
    ``lock_lease``: seconds a lock outlives a process that died holding it.
    ``retry_after``: after the server could not be reached, seconds during which calls fail
    at once rather than waiting on the network again.
    """

    def __init__(self, url_or_client: str | Any, namespace: str = "precompile",
                 ttl: float | None = None, socket_timeout: float = 5, *,
                 lock_lease: float = 30.0, retry_after: float = 30.0) -> None:
        self.namespace = namespace
        self.ttl = ttl
        if isinstance(url_or_client, str):
            url, opts = split_url_options(url_or_client)
            self.namespace = opts.get("namespace", self.namespace)
            self.ttl = opts.get("ttl", self.ttl)
        _check_seconds("ttl", self.ttl, allow_none=True)
        _check_seconds("socket_timeout", socket_timeout)
        _check_seconds("lock_lease", lock_lease)
        _check_seconds("retry_after", retry_after, allow_zero=True)
        if not self.namespace or any(c in self.namespace for c in " \t\r\n"):
            raise ValueError(f"invalid redis namespace {self.namespace!r}")
        self.socket_timeout = socket_timeout
        self.lock_lease = lock_lease
        self.retry_after = retry_after
        if isinstance(url_or_client, str):
            try:
                self._server = _shared_server(url, socket_timeout, retry_after)
                self._owns_client = True
            except ValueError as e:
                raise ValueError(f"bad redis URL {_redact(url_or_client)!r}: {e}. Expected "
                                 "redis://[user:password@]host:port/db or rediss://...") from e
            self.url = _redact(url_or_client)
        else:
            kw = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs",
                         None) or {}
            if kw.get("decode_responses"):
                raise ValueError("RedisBackend needs a client made with decode_responses=False: "
                                 "packages are bytes")
            self._server = _Server(url_or_client, retry_after)
            self._owns_client = False
            self.url = self._client_url(url_or_client)
        self.client = self._server.client
        self._prefix = f"{self.namespace}:{LAYOUT_VERSION}:"

    @staticmethod
    def _client_url(client: Any) -> str:
        kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
        if kw.get("path"):
            return f"unix://{kw['path']}?db={kw.get('db', 0)}"
        if "host" in kw:
            return f"redis://{kw['host']}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
        return repr(client)

    # ---------------------------------------------------------------- keys

    def _k(self, kind: str, key: str) -> str:
        check_key(key)
        return f"{self._prefix}{kind}:{key}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000)) if self.ttl else 0

    # -------------------------------------------------------------- errors

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """Call the server; every failure comes out as StoreError."""
        server = self._server
        if server.down_until and time.monotonic() < server.down_until:
            left = server.down_until - time.monotonic()
            raise StoreError(f"redis at {self.url} was unreachable {server.down_reason}; "
                             f"not trying again for {left:.0f}s. Is redis-server running "
                             "there, and is the URL right?")
        try:
            result = fn()
        except StoreError:
            raise
        except _redis.exceptions.AuthenticationError as e:
            server.trip(str(e))
            raise StoreError(f"redis at {self.url} refused the credentials ({e}); put the right "
                             "user:password in the URL (redis://user:password@host:port/db)") from e
        except (_redis.exceptions.ConnectionError, _redis.exceptions.TimeoutError,
                OSError) as e:
            server.trip(str(e))
            raise StoreError(
                f"cannot {what} redis at {self.url}: {str(e).rstrip('.')}. Is redis-server "
                "running and reachable from here? Check the URL (redis://host:port/db, "
                f"rediss:// for TLS), firewalls, and socket_timeout (now {self.socket_timeout}s)"
            ) from e
        except _redis.exceptions.RedisError as e:
            raise StoreError(f"redis at {self.url} failed to {what}: {e}") from e
        except Exception as e:  # noqa: BLE001 - redis-py parsing a non-redis reply raises anything
            raise StoreError(f"redis at {self.url} sent a reply precompile cannot use while "
                             f"trying to {what} it ({type(e).__name__}: {e}). Is the URL that "
                             "of a redis server?") from e
        server.down_until = 0.0
        return result

    def _expect(self, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
        """``value`` if it is of the type redis sends for ``what``; else StoreError."""
        if not isinstance(value, kind):
            raise StoreError(f"redis at {self.url} answered {type(value).__name__} for {what}, "
                             "not what redis sends; is the URL that of a redis server, and is "
                             "the namespace used by precompile alone?")
        return value

    # ------------------------------------------------------------ interface

    def get(self, key: str) -> bytes | None:
        pkg, meta = self._k("pkg", key), self._k("meta", key)
        data = self._run("read from", lambda: self.client.get(pkg))
        if data is None:
            return None
        self._expect(data, bytes, f"the package {key}")
        # Recording the use is best effort: a read-only replica or a hiccup only costs recency.
        try:
            self._server.touch(keys=[pkg, meta], args=[repr(time.time()), self._ttl_ms])
        except Exception as e:  # noqa: BLE001
            log.debug("precompile: cannot record use of %s in %s: %s", key, self.url, e)
        return data

    def put(self, key: str, data: bytes) -> None:
        pkg, meta = self._k("pkg", key), self._k("meta", key)
        data = bytes(data)
        now = repr(time.time())
        ttl_ms = self._ttl_ms

        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(pkg, data, px=ttl_ms or None)
            pipe.delete(meta)
            pipe.hset(meta, mapping={"created": now, "last_used": now, "size": len(data)})
            if ttl_ms:
                pipe.pexpire(meta, ttl_ms)
            pipe.execute()

        self._run("write to", write)

    def delete(self, key: str) -> bool:
        pkg, meta = self._k("pkg", key), self._k("meta", key)

        def remove() -> bool:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(pkg)
            pipe.delete(meta)
            return bool(self._expect(pipe.execute()[0], int, f"deleting {key}"))

        return self._run("delete from", remove)

    def list(self) -> Iterator[str]:
        prefix = self._prefix + "pkg:"
        match = _glob_escape(prefix) + "*"

        def scan() -> list[str]:
            out = set()
            for raw in self.client.scan_iter(match=match, count=1000):
                raw = self._expect(raw, (bytes, str), "a key name")
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                if name.startswith(prefix):
                    out.add(name[len(prefix):])
            return sorted(out)

        return iter(self._run("list", scan))

    def stat(self, key: str) -> Stat | None:
        pkg, meta = self._k("pkg", key), self._k("meta", key)

        def read() -> tuple[Any, ...]:
            pipe = self.client.pipeline(transaction=True)
            pipe.strlen(pkg)
            pipe.exists(pkg)
            pipe.hgetall(meta)
            size, exists, fields = pipe.execute()
            return (self._expect(size, int, f"the size of {key}"),
                    self._expect(exists, int, f"whether {key} exists"),
                    self._expect(fields, dict, f"the metadata of {key}"))

        size, exists, fields = self._run("read from", read)
        if not exists:
            return None
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}

        def num(name: str) -> float | None:
            try:
                return float(fields[name])
            except (KeyError, TypeError, ValueError):
                return None

        return Stat(key, int(size), created=num("created"), last_used=num("last_used"))

    def ttl_left(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None if it has no TTL or is absent."""
        ms = self._run("read from", lambda: self._expect(
            self.client.pttl(self._k("pkg", key)), int, f"the TTL of {key}"))
        return ms / 1000.0 if ms >= 0 else None

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        name = self._k("lock", key)
        token = uuid.uuid4().hex
        lease_ms = max(100, int(self.lock_lease * 1000))
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not self._run("lock in", lambda: self.client.set(name, token, nx=True,
                                                                px=lease_ms)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"timed out after {timeout:g}s waiting for the lock on {key} in redis at "
                    f"{self.url}; another process holds it. A lock whose holder died frees "
                    f"itself within {self.lock_lease:g}s")
            time.sleep(min(left, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.2)

        stop = threading.Event()

        def renew() -> None:
            # Keep the lease while the section runs longer than a third of it.
            while not stop.wait(self.lock_lease / 3):
                try:
                    if not self._server.renew(keys=[name], args=[token, lease_ms]):
                        log.warning("precompile: lost the redis lock on %s in %s (lease of "
                                    "%gs ran out); another process may write at the same time",
                                    key, self.url, self.lock_lease)
                        return
                except Exception as e:  # noqa: BLE001
                    log.debug("precompile: cannot renew redis lock on %s: %s", key, e)

        keeper = threading.Thread(target=renew, name=f"precompile-redis-lock-{key}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join(timeout=self.socket_timeout + 1)
            try:
                self._server.release(keys=[name], args=[token])
            except Exception as e:  # noqa: BLE001
                # The section itself is done; the lease frees the lock on its own.
                log.warning("precompile: cannot release the redis lock on %s in %s (%s); it "
                            "expires within %gs", key, self.url, e, self.lock_lease)

    def close(self) -> None:
        """Close the pool's idle connections (shared with the other stores for this URL,
        which reopen them on their next call); a client passed in is the caller's to close."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.connection_pool.disconnect()
