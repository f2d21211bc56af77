"""The fsspec/S3 store bounds what one call reads and how long it takes, whatever
the endpoint does. A fake S3 endpoint (``fake_s3.py``) that ignores Range and one that
trickles its body; moto's S3 server for what a real store does.
"""
from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

pytest.importorskip("s3fs", reason="s3fs is not installed")

from cache_backends.errors import StoreError  # noqa: E402
from fake_s3 import FakeS3  # noqa: E402

CAP = 1 << 20


@pytest.fixture(autouse=True)
def _no_credential_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _store(endpoint: str, **kw: object):
    from cache_backends import FsspecBackend

    return FsspecBackend("s3://bucket/pkgs", endpoint_url=endpoint, key="testing",
                         secret="testing", skip_instance_cache=True, **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[list[FakeS3]]:
    made: list[FakeS3] = []
    yield made
    for server in made:
        server.close()


def test_an_endpoint_that_ignores_range_is_cut_off_at_the_cap(fake: list[FakeS3]) -> None:
    server = FakeS3("huge", size=64 << 20)
    fake.append(server)
    st = _store(server.endpoint, max_package_bytes=CAP)
    with pytest.raises(StoreError, match="larger than"):
        st.get("k")  # botocore loads its service models on a first call: not measured
    time.sleep(0.2)
    first, server.sent = server.sent, 0
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match="larger than"):
            st.get("k")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * CAP, f"peak {peak >> 20} MiB reading a package capped at 1 MiB"
    time.sleep(0.2)
    for sent in (first, server.sent):
        assert sent < 16 * CAP, f"read {sent >> 20} MiB of a 64 MiB body"


def test_a_trickling_endpoint_cannot_hold_a_call_past_its_deadline(fake: list[FakeS3]) -> None:
    server = FakeS3("trickle", size=100, pause=0.2)  # each wait is well inside read_timeout
    fake.append(server)
    st = _store(server.endpoint, call_timeout=1.0)
    with pytest.raises(StoreError):  # botocore loads its models on a first call: not timed
        st.get("k")
    for call in (lambda: st.get("k"), lambda: list(st.list()), lambda: st.put("k", b"x")):
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="no answer within 1s"):
            call()
        took = time.monotonic() - t0
        assert took < 4.0, f"a call took {took:.1f}s with call_timeout=1"


def test_the_deadline_is_checked(fake: list[FakeS3]) -> None:
    from cache_backends import FsspecBackend

    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="call_timeout"):
            FsspecBackend("memory://x", call_timeout=bad)


def test_reads_on_a_real_s3_server_are_whole_and_capped(moto_s3: str) -> None:  # noqa: F811
    import s3fs

    opts = {"endpoint_url": moto_s3, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(skip_instance_cache=True, **opts).mkdir("bucket")
    st = _store(moto_s3, max_package_bytes=CAP)
    for data in (b"", b"x" * 1000, b"y" * CAP):
        st.put("k", data)
        assert st.get("k") == data
    st.put("k", b"z" * (CAP + 1))
    with pytest.raises(StoreError, match="larger than"):
        st.get("k")
    assert st.get("absent") is None


def test_memory_filesystem_reads_are_capped() -> None:
    from cache_backends import FsspecBackend

    st = FsspecBackend("memory://capped-store", max_package_bytes=10)
    st.put("small", b"0123456789")
    st.put("big", b"0123456789a")
    assert st.get("small") == b"0123456789"
    with pytest.raises(StoreError, match="larger than"):
        st.get("big")
