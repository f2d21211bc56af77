"""Cache stores: one contract every store keeps, then what is particular to each.

The contract (get/put/overwrite/delete/list/stat, atomic overwrite, locks) runs against
LocalDirBackend, MemoryBackend, RedisBackend (a real redis-server on 127.0.0.1, started by
the ``redis_server`` session fixture), FsspecBackend on fsspec's memory and local
filesystems, and TieredBackend. S3 runs against moto's server when moto and s3fs are there.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import os
import socket
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _light_precompile_in_workers() -> None:
    """Spawned lock workers need only ``precompile.errors``, not the torch import that
    ``precompile/__init__`` does (seconds per process): in a worker, load the package
    without running its ``__init__``. The parent marks its workers with this variable."""
    if os.environ.get("PRECOMPILE_TEST_WORKER") != "1" or "precompile" in sys.modules:
        return
    spec = importlib.util.find_spec("precompile")
    if spec is None or not spec.submodule_search_locations:
        return
    pkg = types.ModuleType("precompile")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["precompile"] = pkg


_light_precompile_in_workers()

from redis_server import RedisServer, free_port, redis_server  # noqa: E402,F401

from cache_backends import (  # noqa: E402
    CacheBackend,
    LocalDirBackend,
    MemoryBackend,
    Stat,
    TieredBackend,
    open_store,
)
from precompile.errors import LockTimeout, StoreError  # noqa: E402

LOG = "precompile"


# ----------------------------------------------------------------- helpers


class FailingBackend(CacheBackend):
    """A store whose every call fails, like a remote that is down."""

    url = "failing://"

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        raise StoreError("failing:// is down")

    get = put = delete = stat = _fail  # type: ignore[assignment]

    def list(self) -> Iterator[str]:
        self._fail()
        return iter(())

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        self._fail()
        yield


def _redis_backend(server: RedisServer, **kw: object):
    from cache_backends import RedisBackend

    return RedisBackend(server.url, namespace=f"t-{uuid.uuid4().hex[:12]}", **kw)


def _dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@contextlib.contextmanager
def _workers_env() -> Iterator[None]:
    old = os.environ.get("PRECOMPILE_TEST_WORKER")
    os.environ["PRECOMPILE_TEST_WORKER"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PRECOMPILE_TEST_WORKER", None)
        else:
            os.environ["PRECOMPILE_TEST_WORKER"] = old


def _rmw_worker(spec: str, key: str, tag: str, rounds: int, barrier: object) -> None:
    """Read-modify-write under the store's lock: append ``tag`` to the value."""
    store = open_store(spec)
    barrier.wait(60)  # type: ignore[attr-defined]
    for r in range(rounds):
        with store.lock(key, timeout=60):
            current = store.get(key) or b""
            time.sleep(0.01)  # widen the window a lost update would need
            store.put(key, current + f"{tag}.{r};".encode())


def _run_rmw_processes(spec: str, key: str, n: int, rounds: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_rmw_worker, args=(spec, key, f"p{i}", rounds, barrier))
             for i in range(n)]
    with _workers_env():
        for p in procs:
            p.start()
    for p in procs:
        p.join(90)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * n


def _check_rmw(data: bytes | None, n: int, rounds: int) -> None:
    assert data is not None
    parts = [x for x in data.decode().split(";") if x]
    assert sorted(parts) == sorted(f"p{i}.{r}" for i in range(n) for r in range(rounds))


# ------------------------------------------------------------ the contract

CONTRACT = ["local", "memory", "redis", "fsspec-memory", "fsspec-local", "tiered"]
#: Stores whose lock excludes other threads and processes (fsspec on an object store keeps
#: the base no-op: last writer wins).
LOCKING = {"local", "memory", "redis", "fsspec-local", "tiered"}


@pytest.fixture(params=CONTRACT)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheBackend]:
    kind = request.param
    st: CacheBackend
    if kind == "local":
        st = LocalDirBackend(tmp_path / "cache")
    elif kind == "memory":
        st = MemoryBackend()
    elif kind == "redis":
        st = _redis_backend(request.getfixturevalue("redis_server"))
    elif kind == "fsspec-memory":
        from cache_backends import FsspecBackend

        st = FsspecBackend(f"memory://precompile-test-{uuid.uuid4().hex}/pkgs")
    elif kind == "fsspec-local":
        from cache_backends import FsspecBackend

        st = FsspecBackend((tmp_path / "fs").as_uri())
    elif kind == "tiered":
        st = TieredBackend([LocalDirBackend(tmp_path / "near"), MemoryBackend()])
    else:  # pragma: no cover
        raise AssertionError(kind)
    st.kind = kind  # type: ignore[attr-defined]
    yield st
    close = getattr(st, "close", None)
    if callable(close):
        close()


def test_empty_store(store: CacheBackend) -> None:
    assert store.get("absent") is None
    assert store.stat("absent") is None
    assert store.delete("absent") is False
    assert list(store.list()) == []


def test_put_get_overwrite(store: CacheBackend) -> None:
    store.put("k1", b"first value")
    assert store.get("k1") == b"first value"
    store.put("k1", b"second, longer value")
    assert store.get("k1") == b"second, longer value"
    store.put("k1", b"3")
    assert store.get("k1") == b"3"
    st = store.stat("k1")
    assert isinstance(st, Stat) and st.key == "k1" and st.size == 1
    assert list(store.list()) == ["k1"]


def test_binary_and_empty_values(store: CacheBackend) -> None:
    blob = bytes(range(256)) * 1000 + b"\r\n\x00"
    store.put("bin", blob)
    store.put("empty", b"")
    assert store.get("bin") == blob
    assert store.get("empty") == b""
    assert store.stat("empty").size == 0  # type: ignore[union-attr]
    store.put("view", memoryview(b"from a memoryview"))  # type: ignore[arg-type]
    assert store.get("view") == b"from a memoryview"


def test_delete_and_list(store: CacheBackend) -> None:
    keys = [f"abc-{i:02d}" for i in range(6)]
    for i, k in enumerate(keys):
        store.put(k, b"x" * i)
    assert sorted(store.list()) == keys
    assert store.delete("abc-03") is True
    assert store.delete("abc-03") is False
    assert store.get("abc-03") is None and store.stat("abc-03") is None
    assert sorted(store.list()) == [k for k in keys if k != "abc-03"]


def test_stat_times(store: CacheBackend) -> None:
    before = time.time()
    store.put("timed", b"12345")
    st = store.stat("timed")
    assert st is not None and st.size == 5
    assert st.created is not None and before - 5 <= st.created <= time.time() + 5
    if st.last_used is not None:
        assert st.last_used >= st.created - 1


def test_invalid_keys_raise_store_error(store: CacheBackend) -> None:
    for bad in ("", "a/b", "..", ".hidden", "a\\b"):
        with pytest.raises(StoreError):
            store.put(bad, b"x")


def test_readers_never_see_partial_values(store: CacheBackend) -> None:
    """A writer thread overwrites a large value; readers see the old or the new one only."""
    size = 1 << 20
    values = [bytes([65 + i]) * (size + i * 4099) for i in range(3)]
    store.put("big", values[0])
    stop = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            data = store.get("big")
            if data not in values:
                bad.append(f"len={None if data is None else len(data)}")
                return
            seen.append(values.index(data))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(24):
            store.put("big", values[i % 3])
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert not bad, bad
    assert seen, "readers never ran"


def test_lock_excludes_other_threads(store: CacheBackend) -> None:
    if store.kind not in LOCKING:  # type: ignore[attr-defined]
        pytest.skip("this store's lock is the documented no-op")
    store.put("counter", b"0")
    inside = []
    overlap = []

    def work() -> None:
        for _ in range(5):
            with store.lock("counter", timeout=30):
                inside.append(1)
                if len(inside) > 1:
                    overlap.append(1)
                n = int(store.get("counter") or b"0")
                time.sleep(0.002)
                store.put("counter", str(n + 1).encode())
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not overlap
    assert store.get("counter") == b"20"


def test_lock_times_out_with_lock_timeout(store: CacheBackend) -> None:
    if store.kind not in LOCKING:  # type: ignore[attr-defined]
        pytest.skip("this store's lock is the documented no-op")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store.lock("busy"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout), store.lock("busy", timeout=0.3):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        release.set()
        t.join(30)
    with store.lock("busy", timeout=5):  # free again once the holder left
        pass


# ------------------------------------------------------------ LocalDirBackend


def test_local_lock_eight_processes(tmp_path: Path) -> None:
    spec = str(tmp_path / "cache")
    _run_rmw_processes(spec, "shared", n=8, rounds=2)
    _check_rmw(LocalDirBackend(spec).get("shared"), n=8, rounds=2)


def _age(store: LocalDirBackend, key: str, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(store.path_for(key), (t, t))


def test_local_max_bytes_evicts_least_recently_used(tmp_path: Path) -> None:
    st = LocalDirBackend(tmp_path, max_bytes=2500)
    st.put("a", b"a" * 1000)
    st.put("b", b"b" * 1000)
    _age(st, "a", 200)
    _age(st, "b", 100)
    st.put("c", b"c" * 1000)  # 3000 > 2500: the oldest, "a", goes
    assert sorted(st.list()) == ["b", "c"]


def test_plan_eviction_oldest_first_keeping_the_new_package() -> None:
    from cache_backends.local import plan_eviction

    stats = [Stat("new", 1000, last_used=None), Stat("old", 1000, last_used=1.0),
             Stat("mid", 1000, last_used=2.0), Stat("recent", 1000, last_used=3.0)]
    assert [s.key for s in plan_eviction(stats, 2000, keep={"new"})] == ["old", "mid"]
    assert plan_eviction(stats, 4000) == []


def test_local_read_refreshes_recency(tmp_path: Path) -> None:
    st = LocalDirBackend(tmp_path, max_bytes=2500)
    st.put("a", b"a" * 1000)
    st.put("b", b"b" * 1000)
    _age(st, "a", 200)
    _age(st, "b", 100)
    assert st.get("a") == b"a" * 1000  # "a" is now the most recently used
    st.put("c", b"c" * 1000)
    assert sorted(st.list()) == ["a", "c"]
    assert st.stat("a").last_used > time.time() - 60  # type: ignore[union-attr]


def test_local_unwritable_root_is_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    st = LocalDirBackend(tmp_path / "file" / "cache")
    with pytest.raises(StoreError):
        st.put("k", b"x")
    with pytest.raises(StoreError):
        st.lock("k").__enter__()


# ------------------------------------------------------------ RedisBackend


def test_redis_layout_and_metadata(redis_server: RedisServer) -> None:
    st = _redis_backend(redis_server)
    st.put("key1", b"payload")
    raw = st.client
    assert raw.get(f"{st.namespace}:v1:pkg:key1") == b"payload"
    meta = raw.hgetall(f"{st.namespace}:v1:meta:key1")
    assert int(meta[b"size"]) == 7 and float(meta[b"created"]) > 0
    assert st.ttl_left("key1") is None  # no TTL by default
    first = st.stat("key1").last_used  # type: ignore[union-attr]
    time.sleep(0.01)
    st.get("key1")
    assert st.stat("key1").last_used > first  # type: ignore[union-attr]
    other = _redis_backend(redis_server)  # another namespace sees none of it
    assert list(other.list()) == [] and other.get("key1") is None
    st.close()
    other.close()


def test_redis_ttl_expires_and_reads_refresh(redis_server: RedisServer) -> None:
    st = _redis_backend(redis_server, ttl=1.0)
    st.put("k", b"v")
    left = st.ttl_left("k")
    assert left is not None and 0 < left <= 1.0
    time.sleep(0.6)
    assert st.get("k") == b"v"  # a read pushes the expiry back
    time.sleep(0.6)  # 1.2s after the write, 0.6s after the read
    assert st.get("k") == b"v"
    time.sleep(1.2)
    assert st.get("k") is None
    assert st.stat("k") is None and list(st.list()) == []
    assert st.client.exists(f"{st.namespace}:v1:meta:k") == 0
    # without a TTL an overwrite drops the old one
    st.ttl = None
    st.put("k", b"v2")
    assert st.ttl_left("k") is None


def test_redis_lock_across_processes(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:12]}"
    spec = f"{redis_server.url}?namespace={ns}"
    _run_rmw_processes(spec, "shared", n=4, rounds=3)
    _check_rmw(open_store(spec).get("shared"), n=4, rounds=3)


def test_redis_lock_release_is_safe_and_lease_renewed(redis_server: RedisServer) -> None:
    st = _redis_backend(redis_server)
    name = f"{st.namespace}:v1:lock:k"
    with st.lock("k"):
        assert st.client.get(name) is not None
        st.client.set(name, b"someone-else")  # our lease ran out and another took it
    assert st.client.get(name) == b"someone-else"  # release left their lock alone
    st.client.delete(name)

    # a holder that died: its lock frees itself when the lease runs out
    from cache_backends.redis_lease import Lease
    st.client.set(name, Lease.issue(name, Lease.new_token(), 300, None).to_bytes(), px=300)
    t0 = time.monotonic()
    with st.lock("k", timeout=5):
        assert time.monotonic() - t0 >= 0.2
    assert st.client.get(name) is None

    # a section longer than the lease keeps the lock (renewed in the background)
    short = _redis_backend(redis_server, lock_lease=0.3)
    short.namespace = st.namespace
    short._prefix = st._prefix  # same keys
    with short.lock("k"):
        time.sleep(0.7)
        with pytest.raises(StoreError), st.lock("k", timeout=0.2):
            pass
    assert st.client.get(name) is None


def test_redis_dead_server_fails_fast(redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    url = _dead_redis_url()
    st = RedisBackend(url, socket_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        st.get("k")
    assert time.monotonic() - t0 < 10
    assert "redis-server" in str(err.value) and url in str(err.value)
    t0 = time.monotonic()
    for call in (lambda: st.put("k", b"x"), lambda: list(st.list()), lambda: st.stat("k"),
                 lambda: st.delete("k")):
        with pytest.raises(StoreError):
            call()
    with pytest.raises(StoreError), st.lock("k", timeout=1):
        pass
    assert time.monotonic() - t0 < 1  # remembered as down: no new waits


def test_redis_hung_server_is_bounded_by_timeout(redis_server: RedisServer) -> None:
    """A server that accepts connections and never answers: the socket timeout ends it."""
    from cache_backends import RedisBackend

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts; nobody ever replies
        st = RedisBackend(f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
                          socket_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(StoreError):
            st.put("k", b"x")
        assert time.monotonic() - t0 < 5


def test_redis_server_stopping_mid_session(redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    server = RedisServer(redis_server.binary).start()
    try:
        st = RedisBackend(server.url, socket_timeout=1, retry_after=0)
        st.put("k", b"v")
        assert st.get("k") == b"v"
    finally:
        server.close()
    t0 = time.monotonic()
    with pytest.raises(StoreError):
        st.get("k")
    assert time.monotonic() - t0 < 10


def test_redis_reconnects_after_server_restart(redis_server: RedisServer) -> None:
    """A pooled connection the server dropped is retried once, not reported as down."""
    from cache_backends import RedisBackend

    server = RedisServer(redis_server.binary).start()
    try:
        st = RedisBackend(server.url, socket_timeout=2)
        st.put("k", b"v")
        server.stop()
        server.start(port=server.port)  # a fresh, empty server on the same port
        assert st.get("k") is None
        st.put("k", b"v2")
        assert st.get("k") == b"v2"
    finally:
        server.close()


def test_redis_open_store_urls(redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    st = open_store(f"{redis_server.url}?namespace=viaurl&ttl=30")
    assert isinstance(st, RedisBackend) and st.namespace == "viaurl" and st.ttl == 30.0
    st.put("k", b"v")
    assert 0 < st.ttl_left("k") <= 30  # type: ignore[attr-defined,operator]
    secret = open_store("rediss://user:hunter2@127.0.0.1:1/3")
    assert isinstance(secret, RedisBackend) and "hunter2" not in secret.url
    assert isinstance(open_store("redis+unix:///tmp/nowhere.sock"), RedisBackend)
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=2)
    passed = RedisBackend(client, namespace="viaurl")
    assert passed.get("k") == b"v" and str(redis_server.port) in passed.url
    client.close()


@contextlib.contextmanager
def _garbage_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every command with ``:1`` (an integer), as a
    non-redis service or a confused proxy might; yields its redis:// URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                conn.sendall(b":1\r\n" * max(1, chunk.count(b"*")))

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_redis_garbage_replies_are_store_errors_and_tiers_fail_over(tmp_path: Path) -> None:
    from cache_backends import RedisBackend

    with _garbage_server() as url:
        st = RedisBackend(url, socket_timeout=1)
        for call in (lambda: st.get("k"), lambda: st.stat("k"), lambda: st.delete("k"),
                     lambda: list(st.list())):
            with pytest.raises(StoreError):
                call()
        local = LocalDirBackend(tmp_path / "local")
        local.put("k", b"package")
        tiered = TieredBackend([st, local])
        assert tiered.get("k") == b"package"


@pytest.mark.parametrize("query", ["ttl=-5", "ttl=0", "ttl=inf", "namespace="])
def test_redis_bad_url_parameters_are_refused(query: str) -> None:
    with pytest.raises(ValueError):
        open_store(f"redis://127.0.0.1:1/0?{query}")


def test_redis_stores_for_one_url_share_client_and_down_timer() -> None:
    """Four compiled functions against a server that hangs wait out one timeout, not four."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts; nobody ever replies
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0?socket_timeout=0.5"
        stores = [open_store(url) for _ in range(4)]
        assert len({id(st.client) for st in stores}) == 1  # type: ignore[attr-defined]
        t0 = time.monotonic()
        for st in stores:
            with pytest.raises(StoreError):
                st.get("k")
        assert time.monotonic() - t0 < 1.5


# ------------------------------------------------------------ FsspecBackend


def test_fsspec_local_layout_matches_local_dir(tmp_path: Path) -> None:
    from cache_backends import FsspecBackend

    fs = FsspecBackend(tmp_path.as_uri())
    fs.put("pkg", b"data")
    assert (tmp_path / "pkg.pcpkg").read_bytes() == b"data"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    local = LocalDirBackend(tmp_path)
    assert local.get("pkg") == b"data" and list(local.list()) == ["pkg"]
    assert fs.stat("pkg").path == str(tmp_path / "pkg.pcpkg")  # type: ignore[union-attr]


def test_fsspec_errors_are_store_errors(tmp_path: Path) -> None:
    from cache_backends import FsspecBackend

    (tmp_path / "file").write_bytes(b"")
    st = FsspecBackend((tmp_path / "file" / "cache").as_uri())
    with pytest.raises(StoreError):
        st.put("k", b"x")
    with pytest.raises(ValueError):
        open_store("no-such-protocol-xyz://bucket/prefix")


def test_fsspec_s3_on_moto(moto_s3: str) -> None:
    import s3fs

    from cache_backends import FsspecBackend

    opts = {"endpoint_url": moto_s3, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(skip_instance_cache=True, **opts).mkdir("precompile-test")
    st = FsspecBackend("s3://precompile-test/pkgs", skip_instance_cache=True, **opts)
    assert st.get("k") is None and list(st.list()) == []
    st.put("k", b"one")
    st.put("k", b"two!")
    st.put("other", b"x" * 3000)
    assert st.get("k") == b"two!"
    assert list(st.list()) == ["k", "other"]
    s = st.stat("other")
    assert s is not None and s.size == 3000 and s.created is not None
    assert st.delete("k") is True and st.delete("k") is False
    assert list(st.list()) == ["other"]


def test_fsspec_s3_unreachable_endpoint_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    from cache_backends import FsspecBackend

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask the network for keys
    st = FsspecBackend("s3://bucket/prefix", endpoint_url=f"http://127.0.0.1:{free_port()}",
                       key="testing", secret="testing", skip_instance_cache=True)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="cannot read"):
        st.get("k")
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------ TieredBackend


def test_tiered_hit_in_later_tier_is_written_back(tmp_path: Path) -> None:
    near, far = LocalDirBackend(tmp_path / "near"), MemoryBackend()
    st = TieredBackend([near, far], accept=lambda key, data: True)
    far.put("k", b"from far")
    assert near.get("k") is None
    assert st.get("k") == b"from far"
    assert near.get("k") == b"from far"
    st.put("both", b"x")
    assert near.get("both") == far.get("both") == b"x"
    far.put("only-far", b"y")
    assert list(st.list()) == ["both", "k", "only-far"]
    assert st.delete("both") and near.get("both") is None and far.get("both") is None


def test_tiered_with_redis_writes_back(tmp_path: Path, redis_server: RedisServer) -> None:
    remote = _redis_backend(redis_server)
    remote.put("shared", b"compiled elsewhere")
    st = open_store([str(tmp_path / "near"), remote], accept=lambda key, data: True)
    assert isinstance(st, TieredBackend) and st.tiers[1] is remote
    assert st.get("shared") == b"compiled elsewhere"
    assert LocalDirBackend(tmp_path / "near").get("shared") == b"compiled elsewhere"


@pytest.mark.parametrize("retry_after", [0.0, 30.0])
def test_tiered_remote_down_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                       retry_after: float, redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    remote = RedisBackend(_dead_redis_url(), socket_timeout=1, retry_after=retry_after)
    near = LocalDirBackend(tmp_path)
    st = TieredBackend([near, remote], retry_after=retry_after)
    with caplog.at_level(logging.DEBUG, logger=LOG):
        t0 = time.monotonic()
        for i in range(3):
            st.put(f"k{i}", b"v")
            assert st.get(f"k{i}") == b"v"
            assert st.get("missing") is None  # near answered: a miss, not an error
            with st.lock(f"k{i}", timeout=2):
                pass
            assert f"k{i}" in list(st.list())
        assert time.monotonic() - t0 < 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOG]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "tier 2" in warnings[0].getMessage() and remote.url in warnings[0].getMessage()
    assert sorted(near.list()) == [f"k{i}" for i in range(3)]


def test_tiered_all_tiers_down_raises(redis_server: RedisServer) -> None:
    from cache_backends import RedisBackend

    st = TieredBackend([FailingBackend(), RedisBackend(_dead_redis_url(), socket_timeout=1)])
    for call in (lambda: st.put("k", b"v"), lambda: st.get("k"), lambda: list(st.list()),
                 lambda: st.stat("k"), lambda: st.delete("k")):
        with pytest.raises(StoreError, match="every cache tier failed"):
            call()
    with pytest.raises(StoreError), st.lock("k", timeout=1):
        pass


def test_tiered_failed_tier_is_retried_later(tmp_path: Path) -> None:
    flaky = FailingBackend()
    st = TieredBackend([LocalDirBackend(tmp_path), flaky], retry_after=0.2)
    st.put("a", b"1")
    st.put("b", b"2")
    assert flaky.calls == 1  # skipped while it is marked down
    time.sleep(0.25)
    st.put("c", b"3")
    assert flaky.calls == 2


# ------------------------------------------------------------ open_store


def test_open_store_specs(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalDirBackend)
    assert isinstance(open_store(tmp_path), LocalDirBackend)
    f = open_store(tmp_path.as_uri())
    assert isinstance(f, LocalDirBackend) and f.root == str(tmp_path)
    m = open_store("memory://")
    assert isinstance(m, MemoryBackend) and open_store("memory://") is m
    assert open_store("memory://other") is not m
    assert open_store(m) is m
    assert open_store([str(tmp_path)]).url == str(tmp_path)
    t = open_store(("memory://", str(tmp_path)))
    assert isinstance(t, TieredBackend) and t.tiers[0] is m
    for bad in ([], "", 42, None):
        with pytest.raises(ValueError):
            open_store(bad)
    from cache_backends import FsspecBackend

    assert isinstance(open_store("s3://bucket/prefix") if importlib.util.find_spec("s3fs")
                      else FsspecBackend("memory://x"), FsspecBackend)
    if importlib.util.find_spec("gcsfs") is None:
        # a missing client package: every call fails with StoreError saying what to install
        gs = open_store("gs://bucket/prefix")
        with pytest.raises(StoreError, match="pip install gcsfs"):
            gs.get("k")
        with pytest.raises(StoreError, match="gcsfs"), gs.lock("k"):
            pass


def test_import_cache_backends_first_and_lazily() -> None:
    """``import cache_backends`` before precompile works (no circular import), and loads
    neither redis nor fsspec until such a store is opened."""
    import subprocess

    code = ("import sys, cache_backends; "
            "assert 'redis' not in sys.modules and 'fsspec' not in sys.modules; "
            "cache_backends.open_store('redis://127.0.0.1:1/0'); assert 'redis' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_open_store_without_client_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from cache_backends import UnavailableBackend

    monkeypatch.setitem(sys.modules, "cache_backends.redis", None)  # as if redis were missing
    monkeypatch.setitem(sys.modules, "cache_backends.objectstore", None)
    for url in ("redis://:secret@127.0.0.1:6379/0", "s3://bucket/prefix"):
        st = open_store(url)
        assert isinstance(st, UnavailableBackend) and "secret" not in st.url
        for call in (lambda: st.get("k"), lambda: st.put("k", b""), lambda: list(st.list()),
                     lambda: st.stat("k"), lambda: st.delete("k")):
            with pytest.raises(StoreError, match="pip install"):
                call()


def test_concurrent_readers_each_get_the_whole_value(store: CacheBackend) -> None:
    """Readers of one unchanging value, at once, each get all of it (a store whose handles
    share a file position would hand one reader the tail the other left). Threads switch
    every microsecond here, so the readers' calls interleave."""
    value = bytes(range(256)) * ((3 << 20) // 256 + 7)
    store.put("shared", value)
    start = threading.Barrier(4)
    wrong: list[int] = []

    def reader() -> None:
        start.wait()
        for _ in range(8):
            data = store.get("shared")
            if data != value:
                wrong.append(-1 if data is None else len(data))

    readers = [threading.Thread(target=reader) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in readers:
            t.start()
        for t in readers:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, f"readers got {wrong[:5]} bytes of {len(value)}"
