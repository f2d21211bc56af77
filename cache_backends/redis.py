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

The connection (one client per URL, bounded waits, a "down" timer, failures as StoreError)
is ``redis_client.py``; the lease lock is ``redis_lock.py``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import StoreError

from .base import CacheBackend, Stat, check_key
from .redis_client import CallLimits, callers_client, describe_client, shared_client
from .redis_lease import MAX_LEASE_MS
from .redis_lock import LeaseLock
from .safe_read import MAX_PACKAGE_BYTES
from .urls import redact

log = logging.getLogger("precompile")

LAYOUT_VERSION = "v1"
_PROTOCOL_SLACK = 1 << 20  # reply framing, metadata and key names around one package
T = TypeVar("T")

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
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)
    ours: dict[str, Any] = {}
    rest = []
    for name, value in query:
        if name == "namespace":
            ours["namespace"] = value
        elif name == "ttl":
            ours["ttl"] = _ttl_from_query(value, url)
        else:
            rest.append((name, value))
    base = url.split("?", 1)[0]  # not urlunsplit: it turns unix:///x into unix:/x
    return (base + "?" + urllib.parse.urlencode(rest) if rest else base), ours


def _ttl_from_query(value: str, url: str) -> float | None:
    """``ttl=`` in a URL: positive seconds, or empty for none. The message names the URL
    (without its password), which is where the fix goes."""
    if not value:
        return None
    try:
        ttl = float(value)
    except ValueError:
        raise ValueError(f"ttl in {redact(url)!r} must be a number of seconds") from None
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl in {redact(url)!r} must be a positive number of "
                         f"seconds, not {value!r}")
    return ttl


class RedisBackend(CacheBackend):
    """Packages in Redis. ``url_or_client``: ``redis://[user:password@]host:port/db``,
    ``rediss://`` (TLS), ``unix:///path/to.sock``, or a ``redis.Redis`` client (used as is,
    with its own timeouts).

    ``ttl``: seconds a package lives after it was last written or read (None: forever).
    ``lock_lease``: seconds a lock outlives a process that died holding it.
    ``retry_after``: after the server could not be reached, seconds during which calls fail
    at once rather than waiting on the network again.
    ``call_timeout`` and ``max_package_bytes``: no call takes longer or receives more than a
    package of that size (plus the protocol's few bytes), whatever the server does
    (``redis_budget.py``; for a client passed in, only its own timeouts apply).
    ``lease_key``: signs this store's lock leases, and only leases signed with it are waited
    for (``redis_lease.py``); without one, any well-formed live lease is.
    """

    def __init__(self, url_or_client: str | Any, namespace: str = "precompile",
                 ttl: float | None = None, socket_timeout: float = 5, *,
                 lock_lease: float = 30.0, retry_after: float = 30.0,
                 call_timeout: float = 60.0,
                 max_package_bytes: int = MAX_PACKAGE_BYTES,
                 lease_key: bytes | None = None) -> None:
        if isinstance(url_or_client, str):
            url, opts = split_url_options(url_or_client)
            namespace = opts.get("namespace", namespace)
            ttl = opts.get("ttl", ttl)
        _check_seconds("ttl", ttl, allow_none=True)
        _check_seconds("socket_timeout", socket_timeout)
        _check_seconds("lock_lease", lock_lease)
        if lock_lease * 1000 > MAX_LEASE_MS:
            raise ValueError(f"redis store lock_lease must be at most {MAX_LEASE_MS // 1000}s "
                             f"(longer leases are taken over by other processes), not "
                             f"{lock_lease!r}")
        _check_seconds("retry_after", retry_after, allow_zero=True)
        _check_seconds("call_timeout", call_timeout)
        if not namespace or any(c in namespace for c in " \t\r\n"):
            raise ValueError(f"invalid redis namespace {namespace!r}")
        self.namespace = namespace
        self.ttl = ttl
        self.socket_timeout = socket_timeout
        self.lock_lease = lock_lease
        self.lease_key = lease_key
        self.retry_after = retry_after
        self._owns_client = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            try:
                limits = CallLimits(max_package_bytes + _PROTOCOL_SLACK, call_timeout)
                self._shared = shared_client(url, socket_timeout, retry_after, limits)
            except ValueError as e:
                raise ValueError(f"bad redis URL {redact(url_or_client)!r}: {e}. Expected "
                                 "redis://[user:password@]host:port/db or rediss://...") from e
            self.url = redact(url_or_client)
        else:
            self._shared = callers_client(url_or_client, socket_timeout, retry_after)
            self.url = describe_client(url_or_client)
        self.client = self._shared.client
        self._touch = self.client.register_script(_TOUCH)
        self._prefix = f"{self.namespace}:{LAYOUT_VERSION}:"

    # ---------------------------------------------------------------- keys

    def _k(self, kind: str, key: str) -> str:
        check_key(key)
        return f"{self._prefix}{kind}:{key}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000)) if self.ttl else 0

    # -------------------------------------------------------------- replies

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """Call the server; every failure comes out as StoreError naming this store."""
        return self._shared.call(what, fn, self.url)

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
            self._run("record a use in", lambda: self._touch(
                keys=[pkg, meta], args=[repr(time.time()), self._ttl_ms]))
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
        """LockTimeout when another process holds it past ``timeout`` (see redis_lock.py)."""
        with LeaseLock(self._shared, self._k("lock", key), key, self.url,
                       self.lock_lease, self.lease_key).held(timeout):
            yield

    def close(self) -> None:
        """Close the pool's idle connections (shared with the other stores for this URL,
        which reopen them on their next call); a client passed in is the caller's to close."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.connection_pool.disconnect()
