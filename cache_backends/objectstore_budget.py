"""What one call to an fsspec store may cost: a package read stops at the size cap whatever
the server sends, and every call has an overall deadline (``redis_budget.py`` is the same
for Redis).

A Range request alone does not bound a read: an endpoint that ignores it sends the whole
object, and fsspec's ``cat_file`` reads all of it into memory. botocore's ``read_timeout``
bounds each socket wait, not a call: a body trickled one byte a second never lets a wait
time out. So an S3 object is read from its response stream in chunks, at most
``max_bytes + 1`` bytes (one over the cap is enough to refuse it), and the connection is
dropped then; and every call on an async filesystem (s3fs, gcsfs, adlfs...) runs on
fsspec's event loop under ``asyncio.wait_for``, which cancels it at the deadline. On
other async filesystems a read asks for the cap as a range (the deadline still holds); on
synchronous ones (sftp...) it reads the open file in chunks up to the cap and checks the
deadline between chunks. fsspec's memory filesystem is read by a ranged ``cat_file``: its
``open`` hands every reader the same file object, so two readers' chunked reads would share
one position (the bytes are in memory already; the range copies only the cap).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fsspec.asyn import AsyncFileSystem, sync
from fsspec.implementations.memory import MemoryFileSystem

from .errors import StoreError

_CHUNK = 1 << 20


class CallTimeout(StoreError):
    """A call to the store ran past its overall deadline (``call_timeout``)."""


class _Expired(Exception):
    """Raised on the event loop when ``wait_for`` cancelled the call (kept apart from the
    filesystem's own timeouts, which fsspec turns into its own error)."""


def seconds_left(deadline: float, what: str) -> float:
    """Seconds until ``deadline``; CallTimeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallTimeout(f"{what} ran past its overall deadline")
    return left


def _is_async(fs: Any) -> bool:
    return isinstance(fs, AsyncFileSystem) and not fs.asynchronous


async def _within(make: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    try:
        return await asyncio.wait_for(make(), seconds)
    except asyncio.TimeoutError:
        raise _Expired() from None


def _on_loop(fs: Any, make: Callable[[], Awaitable[Any]], deadline: float, what: str) -> Any:
    try:
        return sync(fs.loop, _within, make, seconds_left(deadline, what))
    except _Expired:
        raise CallTimeout(f"{what} ran past its overall deadline") from None


def call(fs: Any, deadline: float, name: str, *args: Any, **kwargs: Any) -> Any:
    """``fs.<name>(*args, **kwargs)``, cancelled at ``deadline`` on an async filesystem
    (its coroutine ``_<name>`` runs under ``wait_for``)."""
    method = getattr(fs, "_" + name, None)
    if _is_async(fs) and method is not None:
        return _on_loop(fs, lambda: method(*args, **kwargs), deadline, name)
    seconds_left(deadline, name)
    return getattr(fs, name)(*args, **kwargs)


def read(fs: Any, path: str, max_bytes: int, deadline: float) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``path``, done by ``deadline`` (CallTimeout);
    FileNotFoundError when there is no such object."""
    if _is_async(fs) and hasattr(fs, "_call_s3"):
        return _on_loop(fs, lambda: _read_s3(fs, path, max_bytes + 1), deadline, "read")
    if _is_async(fs) or isinstance(fs, MemoryFileSystem):
        return bytes(call(fs, deadline, "cat_file", path, start=0, end=max_bytes + 1))
    with fs.open(path, "rb") as fh:
        return _read_chunks(fh.read, max_bytes + 1, deadline)


async def _read_s3(fs: Any, path: str, limit: int) -> bytes:
    """The object's first ``limit`` bytes from the GET's response stream; the stream is
    closed after them, whatever else the server would send."""
    bucket, key, version = fs.split_path(path)
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                 **({"VersionId": version} if version else {}))
    body = response["Body"]
    try:
        chunks, got = [], 0
        while got < limit:
            chunk = await body.read(min(_CHUNK, limit - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        body.close()


def _read_chunks(read_some: Callable[[int], bytes], limit: int, deadline: float) -> bytes:
    chunks, got = [], 0
    while got < limit:
        seconds_left(deadline, "read")
        chunk = read_some(min(_CHUNK, limit - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
