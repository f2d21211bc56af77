"""``precompile import`` is bounded before staging, checked while streaming, keys from
the packages themselves, unique staging names, all or nothing on any failure, and a cache
copy compared only once verified. Packages are written by hand; nothing compiles.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _packages import write_tar
from cache_backends.local import LocalDirBackend
from precompile import cli
from precompile.format import envelope as fmt
from precompile.package.keys import package_key


def _pkg(fn: str, saved: float, filler: bytes = b"", signing_key: bytes | None = None) -> bytes:
    meta = {"saved": saved, "function": f"m:{fn}", "factors": {"function": f"m:{fn}"}}
    return fmt.encode(meta, {"filler": filler}, {}, signing_key=signing_key)


def _key(fn: str) -> str:
    return package_key({"function": f"m:{fn}"})


@pytest.fixture
def cache(local_cache: LocalDirBackend) -> LocalDirBackend:
    return local_cache


def _import(archive: Path, *extra: str) -> int:
    return cli.main(["import", str(archive), *extra])


def test_an_archive_that_expands_too_much_is_refused_before_it_is_staged(
        cache: LocalDirBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = write_tar(tmp_path / "bomb.tar.xz",
                    [(f"k{i}.pcpkg", _pkg(f"k{i}", 1, bytes(8 << 20))) for i in range(4)],
                    mode="w:xz")
    assert bomb.stat().st_size < 64 << 10  # 32 MiB of packages in a few KiB
    assert _import(bomb) == 2
    err = capsys.readouterr().err
    assert "expands to more than" in err and "nothing was imported" in err, err
    assert not list(cache.list())


def test_total_size_and_member_count_are_capped(cache: LocalDirBackend, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    members = [(f"{fn}.pcpkg", _pkg(fn, 1, bytes(3000))) for fn in "abc"]
    archive = write_tar(tmp_path / "a.tar", members, mode="w")
    assert _import(archive, "--max-total-size", "8k") == 2
    assert "expands to more than 8192 bytes" in capsys.readouterr().err
    assert _import(archive, "--max-packages", "2") == 2
    assert "more than 2 members" in capsys.readouterr().err
    assert not list(cache.list())
    assert _import(archive, "--json") == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 3


def test_a_package_is_imported_under_the_key_it_was_written_for(
        cache: LocalDirBackend, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", [("innocent-name.pcpkg", _pkg("a", 1))])
    assert _import(archive) == 0
    assert list(cache.list()) == [_key("a")]


def test_staging_names_are_unique(cache: LocalDirBackend, tmp_path: Path) -> None:
    """Issue 22.12: members K(old), K(new), L staged K(new) and L to the same file."""
    old, new, other = _pkg("k", 1), _pkg("k", 2), _pkg("l", 1)
    archive = write_tar(tmp_path / "a.tar.gz", [("k.pcpkg", old), ("k.pcpkg", new),
                                               ("l.pcpkg", other)])
    assert _import(archive) == 0
    assert cache.get(_key("k")) == new and cache.get(_key("l")) == other


def test_any_failure_while_importing_takes_everything_back(
        cache: LocalDirBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cache.put(_key("a"), _pkg("a", 1))
    archive = write_tar(tmp_path / "a.tar.gz", [("a.pcpkg", _pkg("a", 5)),
                                               ("b.pcpkg", _pkg("b", 5))])
    real_put = LocalDirBackend.put

    def put(self: LocalDirBackend, key: str, data: bytes) -> None:
        if key == _key("b"):
            raise ValueError("embedded null byte")  # not a StoreError, not an OSError
        real_put(self, key, data)

    monkeypatch.setattr(LocalDirBackend, "put", put)
    assert _import(archive) == 2
    assert "embedded null byte" in capsys.readouterr().err
    assert cache.get(_key("a")) == _pkg("a", 1) and cache.get(_key("b")) is None


def test_a_member_name_with_control_characters_does_not_name_the_key(
        cache: LocalDirBackend, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "a.tar", [("A\x1b]0;x\x07\n.pcpkg", _pkg("a", 1))], mode="w")
    assert _import(archive) == 0
    assert list(cache.list()) == [_key("a")]


def test_a_forged_cache_copy_does_not_keep_the_genuine_package_out(
        cache: LocalDirBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "k")
    cache.put(_key("a"), _pkg("a", 1e308))  # unsigned, "saved" in the far future
    genuine = _pkg("a", 5, signing_key=b"k")
    archive = write_tar(tmp_path / "a.tar.gz", [("a.pcpkg", genuine)])
    assert _import(archive) == 0
    assert cache.get(_key("a")) == genuine


def test_a_bad_signature_is_refused_while_streaming(cache: LocalDirBackend, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "k")
    archive = write_tar(tmp_path / "a.tar.gz", [("a.pcpkg", _pkg("a", 1, signing_key=b"x")),
                                               ("b.pcpkg", _pkg("b", 1))])
    assert _import(archive) == 2
    assert "signature does not match" in capsys.readouterr().err
    assert not list(cache.list())


def test_package_stream_checks_what_decode_checks() -> None:
    """The streaming check and format.decode agree on every cut and flipped byte."""
    from precompile.format.archive_stream import PackageStream
    from precompile.errors import PackageError

    good = _pkg("a", 1, bytes(100), signing_key=b"k")
    samples = [good, good[:-1], good + b"\0"] + [
        good[:i] + bytes([good[i] ^ 1]) + good[i + 1:] for i in range(0, len(good), 7)]
    for data in samples:
        for chunk in (1, 5, 64, len(data) or 1):
            stream = PackageStream(len(data), b"k")
            try:
                for i in range(0, len(data), chunk):
                    stream.feed(data[i:i + chunk])
                stream.finish()
                streamed_ok = True
            except PackageError:
                streamed_ok = False
            try:
                fmt.decode(data, signing_key=b"k")
                decoded_ok = True
            except PackageError:
                decoded_ok = False
            assert streamed_ok == decoded_ok == (data == good), (len(data), chunk)
