"""Store URLs are parsed as URLs, and no message shows a password.

``PRECOMPILE_CACHE_URL`` is split between stores, never inside one: ``redis://:pa,ss@host``
is one Redis store whose password holds a comma, not a store ``redis://:pa`` (whose error
would print the password's first half) and a directory ``ss@host:6379/0`` under the
current one.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_backends import LocalDirBackend, TieredBackend, open_store
from cache_backends.errors import StoreError
from cache_backends.urls import redact, split_specs
from redis_server import RedisServer, find_redis_server, free_port

PASSWORD = "pa,ss|w0rd"


@pytest.mark.parametrize(("value", "expected"), [
    ("redis://:pa,ss@127.0.0.1:6379/0", "redis://:pa,ss@127.0.0.1:6379/0"),
    ("redis://user:a,b,c@h:1/0?namespace=x", "redis://user:a,b,c@h:1/0?namespace=x"),
    ("redis://:pa|ss@h/0", "redis://:pa|ss@h/0"),  # a raw | in a password: still one URL
    ("/var/cache/overlay|/opt/baked", ["/var/cache/overlay", "/opt/baked"]),
    ("cache | s3://bucket/prefix", ["cache", "s3://bucket/prefix"]),
    ("/var/cache/overlay,/opt/baked", ["/var/cache/overlay", "/opt/baked"]),  # the old form
    ("~/.cache/pc,redis://h:6379/0", ["~/.cache/pc", "redis://h:6379/0"]),
    ("cache,other", "cache,other"),  # relative: one directory, as the shell would read it
    ("/plain/dir", "/plain/dir"),
])
def test_store_lists_split_only_between_urls(value: str, expected: object) -> None:
    assert split_specs(value) == expected


@pytest.mark.parametrize(("url", "secret"), [
    ("redis://:pa,ss@127.0.0.1:6379/0", "pa,ss"),
    ("redis://:pa", "pa"),  # the first half of a password split at its comma
    ("rediss://user:hunter2@[::1]:6380/1", "hunter2"),
    ("unix:///run/redis.sock?db=0&password=hunter2", "hunter2"),
    ("s3://bucket/p?token=hunter2", "hunter2"),
    ("sftp://me:hunter2@host/path", "hunter2"),
])
def test_redact_masks_every_password(url: str, secret: str) -> None:
    shown = redact(url)
    assert secret not in shown and "***" in shown


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://u:hunter2@Cache.Example:06379/0", "redis://u:***@Cache.Example:06379/0"),
    ("rediss://:pa@ss@[::1]:6380/1?db=2", "rediss://:***@[::1]:6380/1?db=2"),
])
def test_redact_keeps_the_authority_as_written(url: str, shown: str) -> None:
    """Only the password is masked: host and port read as the user wrote them."""
    assert redact(url) == shown


@pytest.fixture
def password_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own whose password holds a comma and a ``|``."""
    redis = pytest.importorskip("redis")
    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary).start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
        yield server
    finally:
        server.close()


def test_a_comma_in_a_redis_password_is_part_of_the_url(
        password_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from urllib.parse import quote

    from precompile.policy import Policy

    monkeypatch.chdir(tmp_path)
    # The comma written raw (as users do), the | percent-encoded (it separates tiers).
    raw = PASSWORD.replace("|", quote("|"))
    url = f"redis://:{raw}@127.0.0.1:{password_redis.port}/0"
    monkeypatch.setenv("PRECOMPILE_CACHE_URL", url)
    monkeypatch.delenv("PRECOMPILE_CACHE_DIR", raising=False)
    with caplog.at_level(logging.WARNING, logger="precompile"):
        store = Policy.resolve().store
    assert type(store).__name__ == "RedisBackend", store
    store.put("k", b"package")
    assert store.get("k") == b"package"
    assert os.listdir(tmp_path) == []  # no directory named after half a password
    assert "pa,ss" not in store.url and "***" in store.url
    assert not [r for r in caplog.records if "pa," in r.getMessage() or "w0rd" in r.getMessage()]


def test_no_message_shows_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis")
    port = free_port()  # nothing listens there
    st = open_store(f"redis://:hunter2@127.0.0.1:{port}/0?socket_timeout=0.5")
    with pytest.raises(StoreError) as err:
        st.get("k")
    assert "hunter2" not in str(err.value) and "hunter2" not in st.url

    from cache_backends import FsspecBackend

    ftp = FsspecBackend(f"ftp://me:hunter2@127.0.0.1:{port}/cache")
    assert "hunter2" not in ftp.url
    with pytest.raises(StoreError) as err:
        ftp.get("k")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError) as bad:
        open_store("no-such-protocol-xyz://me:hunter2@host/x")
    assert "hunter2" not in str(bad.value)


def test_tiers_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from precompile.policy import Policy

    fast, baked = tmp_path / "fast", tmp_path / "baked"
    for value in (f"{fast}|{baked}", f"{fast},{baked}"):
        monkeypatch.setenv("PRECOMPILE_CACHE_URL", value)
        store = Policy.resolve().store
        assert isinstance(store, TieredBackend)
        assert [t.url for t in store.tiers] == [str(fast), str(baked)]  # type: ignore[attr-defined]
    assert isinstance(open_store(str(fast)), LocalDirBackend)
