"""Contract: untrusted packages never run code: the CLI trusts exactly what the library
trusts (and ``explain`` never evaluates a package's identity source), a shared or
replaceable cache directory is refused, and the signing key cannot be switched off by
accident. (How identity sources are parsed, never evaluated: identity/test_guard_paths.py.)

Packages here are written by hand (no compile), so every test runs in-process in well under
a second, except the group-writable ones that check the library's own miss.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from _packages import CALLS, KEY, make_package
from cache_backends.local import LocalDirBackend
from precompile import cli
from precompile.format import envelope as fmt
from precompile.errors import SettingError, FormatError, StoreError

# ------------------------------------------------------------------ packages by hand

def _store(root: Path, data: bytes, key: str | None = None) -> Path:
    root.mkdir(mode=0o700, exist_ok=True)
    path = root / f"{key or KEY}.pcpkg"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_explain_never_runs_a_package_identity_source(env: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15.1: an unsigned package's source ran os.system under ``explain``."""
    evil = "__import__('os').system('echo pwned')"
    _store(env / "cache", make_package([evil]))
    assert cli.main(["explain", "umod:f", str(env / "cache")]) in (0, 1)
    assert CALLS == [], CALLS  # no key: trusted, but the source is refused, not evaluated
    capsys.readouterr()
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "k")
    assert cli.main(["explain", "umod:f", str(env / "cache")]) == 1
    assert CALLS == [], CALLS
    out = capsys.readouterr().out
    assert "would MISS" in out and "UNSIGNED" in out, out


# --------------------------------------------- item 5: signing key, envelope flags


def test_an_empty_signing_key_is_an_error_not_signing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import precompile

    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "the-key")
    with pytest.raises(SettingError, match="unset PRECOMPILE_SIGNING_KEY"):
        precompile.cached(lambda x: x, backend="eager", signing_key="")
    with pytest.raises(SettingError):
        precompile.cached(lambda x: x, backend="eager", signing_key=b"")
    wrapped = precompile.cached(lambda x: x, backend="eager")  # None: the environment's key
    assert wrapped._precompile.signing_key == b"the-key"


@pytest.mark.parametrize("flags", [0x2, 0x8000, 0x1 | 0x4])
def test_unknown_envelope_flags_are_a_format_error(flags: int) -> None:
    data = make_package(signing_key=b"k" if flags & 1 else None, flags=flags)
    with pytest.raises(FormatError, match="unknown flags"):
        fmt.decode(data)
    with pytest.raises(FormatError, match="unknown flags"):
        fmt.decode(data, signing_key=b"k")


# ------------------------------------- items 1, 2, 4: the CLI trusts what the library does


def _shared(root: Path, mode: int) -> Path:
    root.chmod(mode)
    return root


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_inspect_never_unpickles_from_a_directory_the_library_refuses(
        env: Path, mode: int, capsys: pytest.CaptureFixture[str]) -> None:
    path = _store(env / "cache", make_package())
    _shared(env / "cache", mode)
    for ref in (str(path), KEY):
        assert cli.main(["inspect", ref, "--cache", str(env / "cache")]) == 0
        out = capsys.readouterr().out
        assert "UNTRUSTED" in out and "writable" in out, out
        assert "not unpickled" in out, out
    assert CALLS == [], CALLS


def test_inspect_unpickles_exactly_what_the_library_would_load(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = _store(env / "cache", make_package())
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "k")
    assert cli.main(["inspect", str(path)]) == 0  # unsigned under a key: refused
    assert "not unpickled" in capsys.readouterr().out and CALLS == []
    path.write_bytes(make_package(signing_key=b"other"))
    assert cli.main(["inspect", str(path)]) == 0  # signed with another key: refused
    assert "does NOT match" in capsys.readouterr().out and CALLS == []
    path.write_bytes(make_package(signing_key=b"k"))
    cli.main(["inspect", str(path)])  # trusted: the library would load it, so may inspect
    assert CALLS == ["('unpickled',)"], CALLS
    monkeypatch.setenv("PRECOMPILE_TRUST_SHARED_CACHE", "1")  # the library's opt-in, too
    _shared(env / "cache", 0o777)
    CALLS.clear()
    cli.main(["inspect", str(path)])
    assert CALLS == ["('unpickled',)"], CALLS


def test_ls_and_verify_still_read_untrusted_packages_and_say_so(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    _store(env / "cache", make_package())
    _shared(env / "cache", 0o777)
    assert cli.main(["ls", str(env / "cache")]) == 0
    out = capsys.readouterr().out
    assert "umod:f" in out and "UNTRUSTED" in out and "world-writable" in out, out
    assert cli.main(["ls", str(env / "cache"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["ok"] and not row["trusted"] and "world-writable" in row["untrusted_reason"]
    assert cli.main(["verify", str(env / "cache")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("UNTRUSTED") and "world-writable" in out, out
    assert CALLS == []


def test_explain_refuses_a_package_from_an_untrusted_directory(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(env / "cache", make_package(["G['helper']"]))
    _shared(env / "cache", 0o777)
    assert cli.main(["explain", "umod:f", str(env / "cache")]) == 1
    out = capsys.readouterr().out
    assert "would MISS" in out and "will not load it" in out and "world-writable" in out, out


# ------------------------------------------- item 15: shared and replaceable caches


def test_group_writable_cache_directory_is_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    _store(tmp_path / "c", make_package())
    _shared(tmp_path / "c", 0o770)
    with pytest.raises(StoreError, match="group-writable.*PRECOMPILE_TRUST_SHARED_CACHE"):
        LocalDirBackend(tmp_path / "c").get(KEY)
    assert LocalDirBackend(tmp_path / "c", trust_shared=True).get(KEY)
    _shared(tmp_path / "c", 0o700)
    (tmp_path / "c" / f"{KEY}.pcpkg").chmod(0o660)
    with pytest.raises(StoreError, match="group-writable"):
        LocalDirBackend(tmp_path / "c").get(KEY)


def test_a_parent_others_can_write_is_refused_unless_sticky(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    parent = tmp_path / "shared"
    parent.mkdir()
    _store(parent / "c", make_package())
    assert LocalDirBackend(parent / "c").get(KEY)  # 0755 parent: fine
    for mode in (0o777, 0o775):  # anyone (in the group) could rename c away and replace it
        parent.chmod(mode)
        with pytest.raises(StoreError, match=f"parent {parent}.*not sticky"):
            LocalDirBackend(parent / "c").get(KEY)
        with pytest.raises(StoreError, match="parent"):
            LocalDirBackend(parent / "c").put("k", b"x")
    parent.chmod(0o1777)  # sticky, like /tmp: only c's owner can rename it
    assert LocalDirBackend(parent / "c").get(KEY)
    parent.chmod(0o777)
    assert LocalDirBackend(parent / "c", trust_shared=True).get(KEY)
    parent.chmod(0o755)


def test_the_library_misses_cleanly_on_a_group_writable_cache(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import precompile

    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    cache = tmp_path / "c"
    cache.mkdir(mode=0o770)
    cache.chmod(0o770)
    f = precompile.cached(lambda x: x + 1, backend="eager", cache_dir=str(cache))
    import torch

    assert torch.equal(f(torch.ones(2)), torch.full((2,), 2.0))  # no exception: a miss
    precompile.flush()
    assert not list(cache.glob("*.pcpkg"))  # and nothing written where others could swap it
