"""The redis connection behind RedisBackend: one client per URL, its "down" timer, and the
translation of every redis failure into :class:`StoreError`.

Every network wait is bounded: ``socket_timeout`` for connecting and for each reply, and
one quick retry only after a dropped connection (a restarted server), never after a
timeout. A whole call is bounded too (``redis_budget.py``): at most ``max_reply_bytes``
received and ``call_timeout`` seconds, so neither a huge reply nor a server that trickles
bytes can hold a process (clients precompile makes; a client passed in keeps its own). A
server that cannot be reached turns into StoreError with a message that says what to check,
and for ``retry_after`` seconds afterwards calls fail at once instead of waiting on the
network again. Every store opened from the same URL (one per compiled
function) shares one client and that one timer, so a program with many compiled functions
opens one connection pool and pays the timeout once, not once per function. A reply that is
not what redis sends (a garbage reply from a non-redis service) is a StoreError too, so a
tiered store fails over instead of crashing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis as _redis
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry

from .errors import StoreError
from .redis_budget import ReplyTooLarge, budget, budgeted_connection_class

T = TypeVar("T")


def _no_setinfo() -> dict[str, Any]:
    """Arguments that skip the CLIENT SETINFO round trips on each new connection (each would
    wait a full socket_timeout on a server that hangs); spelled differently by version."""
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


def describe_client(client: Any) -> str:
    """A URL-like name for a client the caller made, for messages."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if kw.get("path"):
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    if "host" in kw:
        return f"redis://{kw['host']}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return repr(client)


class SharedClient:
    """One redis client and its "down" timer, shared by every RedisBackend that names the
    same URL with the same timeouts. redis-py's client is thread-safe and its pool opens
    fresh connections in a forked child, so one per URL serves the whole process."""

    def __init__(self, client: Any, socket_timeout: float, retry_after: float,
                 limits: CallLimits | None = None) -> None:
        self.client = client
        self.socket_timeout = socket_timeout
        self.retry_after = retry_after
        self.limits = limits
        self.down_until = 0.0
        self.down_reason = ""

    def bounded(self) -> contextlib.AbstractContextManager[None]:
        """The block's redis calls bounded by this client's limits (``redis_budget``)."""
        if self.limits is None:
            return contextlib.nullcontext()
        return budget(self.limits.max_reply_bytes, self.limits.call_timeout)

    def _trip(self, reason: str) -> None:
        self.down_reason = f"({reason.rstrip('.')})"
        self.down_until = time.monotonic() + self.retry_after

    def call(self, what: str, fn: Callable[[], T], url: str) -> T:
        """``fn()``, unless the server was found down less than ``retry_after`` ago; every
        failure comes out as StoreError naming ``url`` and what to check."""
        left = self.down_until - time.monotonic()  # 0.0 (up) is always in the past
        if left > 0:
            raise StoreError(f"redis at {url} was unreachable {self.down_reason}; "
                             f"not trying again for {left:.0f}s. Is redis-server running "
                             "there, and is the URL right?")
        try:
            with self.bounded():
                result = fn()
        except StoreError:
            raise
        except ReplyTooLarge as e:
            raise StoreError(f"redis at {url} sent a reply over the {self.limits.max_reply_bytes}"
                             f"-byte cap while trying to {what} it ({e}); no package is that "
                             "large. Is the URL that of this cache's redis server?") from e
        except _redis.exceptions.AuthenticationError as e:
            self._trip(str(e))
            raise StoreError(f"redis at {url} refused the credentials ({e}); put the right "
                             "user:password in the URL (redis://user:password@host:port/db)") from e
        except (_redis.exceptions.ConnectionError, _redis.exceptions.TimeoutError,
                OSError) as e:
            self._trip(str(e))
            raise StoreError(
                f"cannot {what} redis at {url}: {str(e).rstrip('.')}. Is redis-server "
                "running and reachable from here? Check the URL (redis://host:port/db, "
                f"rediss:// for TLS), firewalls, and socket_timeout (now {self.socket_timeout}s)"
            ) from e
        except _redis.exceptions.RedisError as e:
            raise StoreError(f"redis at {url} failed to {what}: {e}") from e
        except Exception as e:  # noqa: BLE001 - redis-py parsing a non-redis reply raises anything
            raise StoreError(f"redis at {url} sent a reply precompile cannot use while "
                             f"trying to {what} it ({type(e).__name__}: {e}). Is the URL that "
                             "of a redis server?") from e
        self.down_until = 0.0
        return result


@dataclasses.dataclass(frozen=True)
class CallLimits:
    """What one call may cost (``redis_budget.py``)."""

    max_reply_bytes: int
    call_timeout: float


_SHARED: dict[tuple[str, float, float, CallLimits], SharedClient] = {}
_SHARED_LOCK = threading.Lock()


def _reset_lock_in_child() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it across the fork


os.register_at_fork(after_in_child=_reset_lock_in_child)


def shared_client(url: str, socket_timeout: float, retry_after: float,
                  limits: CallLimits) -> SharedClient:
    """The one SharedClient for this URL, these timeouts and limits, made on first use.
    Raises ValueError for a URL redis-py cannot parse."""
    with _SHARED_LOCK:
        shared = _SHARED.get((url, socket_timeout, retry_after, limits))
        if shared is None:
            base = parse_url(url).get("connection_class", _redis.connection.Connection)
            client = _redis.Redis.from_url(
                url, connection_class=budgeted_connection_class(base),
                socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                # One quick retry for a dropped connection (a server restart, an idle
                # connection cut); none after a timeout, which would only double the wait
                # on a server that hangs. So a call waits at most ~socket_timeout.
                retry=Retry(ExponentialBackoff(cap=0.25, base=0.05), 1,
                            supported_errors=(_redis.exceptions.ConnectionError,)),
                retry_on_error=[_redis.exceptions.ConnectionError],
                health_check_interval=30, **_NO_SETINFO)
            shared = SharedClient(client, socket_timeout, retry_after, limits)
            _SHARED[(url, socket_timeout, retry_after, limits)] = shared
        return shared


def callers_client(client: Any, socket_timeout: float, retry_after: float) -> SharedClient:
    """A client the caller made, used as is (its own timeouts) with a down timer of its own.
    Packages are bytes, so a client that decodes replies to str is refused."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if kw.get("decode_responses"):
        raise ValueError("RedisBackend needs a client made with decode_responses=False: "
                         "packages are bytes")
    return SharedClient(client, socket_timeout, retry_after)
