"""The read path: every package byte, library and CLI alike, is read through one
path (no symlink, FIFO or device; owner checks on the open file; a size cap), then
checksummed, signature-checked and bound to its key before anything is decoded further,
unpickled, imported or installed. Packages are written by hand; nothing compiles.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cache_backends.local import LocalDirBackend
from precompile import cli
from precompile.package import keys
from precompile.read import loading
from precompile.format import envelope as fmt
from precompile.errors import IntegrityError, StoreError
from _packages import CALLS, KEY, make_package

ROOT = Path(__file__).resolve().parents[2]


def _finishes(fn: Callable[[], object], seconds: float = 10.0) -> object:
    """``fn()``'s result; fails (instead of hanging the suite) if it blocks."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(_catch(fn)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} still blocked after {seconds}s"
    result = out[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _catch(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - handed to the test's thread
        return e


def _private(root: Path) -> Path:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


# ------------------------------------------ finding 2: load(path) checks the owner


def target(x: object) -> object:
    return x


def _bound_package(signing_key: bytes | None = None, **factors: str) -> tuple[bytes, str]:
    """A well-formed, empty package for ``target`` (this process's factors), and its key."""
    all_factors = {"function": f"{__name__}:target",
                   "code": keys.code_fingerprint(target.__code__), **keys.system_factors(),
                   **factors}
    key = keys.package_key(all_factors)
    manifest = {"key": key, "frames": [], "artifacts": {}}
    return fmt.encode({"factors": all_factors}, manifest, {}, signing_key=signing_key), key


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_load_refuses_a_file_others_could_write(tmp_path: Path, mode: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import precompile

    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    path = _private(tmp_path / "d") / "p.pcpkg"
    path.write_bytes(_bound_package()[0])
    path.chmod(mode)
    with pytest.raises(StoreError, match="writable"):
        precompile.load(target, path)
    path.chmod(0o600)
    precompile.load(target, path)  # the same file, owner-only: accepted
    monkeypatch.setenv("PRECOMPILE_TRUST_SHARED_CACHE", "1")
    path.chmod(mode)
    precompile.load(target, path)  # the opt-in the store honours


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_load_refuses_a_file_another_user_owns(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import precompile

    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    path = _private(tmp_path / "d") / "p.pcpkg"
    path.write_bytes(_bound_package()[0])
    os.chown(path, 4242, 4242)
    with pytest.raises(StoreError, match="owned by another user"):
        precompile.load(target, path)


def test_load_refuses_a_file_in_a_directory_others_can_write(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import precompile

    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    shared = _private(tmp_path / "shared")
    path = shared / "p.pcpkg"
    path.write_bytes(_bound_package()[0])
    path.chmod(0o600)
    shared.chmod(0o777)
    try:
        with pytest.raises(StoreError, match="world-writable"):
            precompile.load(target, path)
    finally:
        shared.chmod(0o700)


# ----------------------------------- finding 10: no FIFO, device, symlink, huge file


def test_a_fifo_under_a_package_name_is_refused_not_waited_on(env: Path,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    cache = _private(env / "cache")
    os.mkfifo(cache / f"{KEY}.pcpkg", 0o600)
    with pytest.raises(StoreError, match="not a regular file"):
        _finishes(lambda: LocalDirBackend(cache).get(KEY))
    assert _finishes(lambda: cli.main(["ls", str(cache)])) == 0
    assert "not a regular file" in capsys.readouterr().out


def test_a_symlink_under_a_package_name_is_never_followed(env: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    cache = _private(env / "cache")
    elsewhere = _private(env / "elsewhere") / "real.pcpkg"
    elsewhere.write_bytes(make_package())
    elsewhere.chmod(0o600)
    (cache / f"{KEY}.pcpkg").symlink_to(elsewhere)
    for read in (lambda: LocalDirBackend(cache).get(KEY),
                 lambda: LocalDirBackend(cache).peek(KEY)):
        with pytest.raises(StoreError, match="symbolic link"):
            read()
    assert cli.main(["inspect", KEY, "--cache", str(cache)]) == 1  # unreadable: a problem
    assert "symbolic link" in capsys.readouterr().out and CALLS == []
    assert cli.main(["inspect", str(cache / f"{KEY}.pcpkg"), "--trust"]) == 2
    assert "symbolic link" in capsys.readouterr().err and CALLS == []
    assert cli.main(["export", str(cache), str(env / "a.tgz")]) == 1  # left out, with why
    assert "symbolic link" in capsys.readouterr().out and CALLS == []


def test_a_package_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    cache = _private(tmp_path / "c")
    (cache / "big.pcpkg").write_bytes(b"x" * 5000)
    (cache / "big.pcpkg").chmod(0o600)
    with pytest.raises(StoreError, match="larger than 4096 bytes"):
        LocalDirBackend(cache, max_package_bytes=4096).get("big")
    assert LocalDirBackend(cache).get("big") == b"x" * 5000


# ------------------------------------------------ finding 14: keys bind packages


def test_a_package_is_only_used_under_the_key_it_was_written_for() -> None:
    data, key = _bound_package(signing_key=b"k", backend="eager", dynamic="True")
    _, other_key = _bound_package(signing_key=b"k", backend="inductor", dynamic="False")
    factors = fmt.decode(data).meta["factors"]
    here = loading.load(data, target.__code__, __name__, factors, key, b"k")
    assert not isinstance(here, loading.Miss), here
    moved = loading.load(data, target.__code__, __name__, factors, other_key, b"k")
    assert isinstance(moved, loading.Miss) and isinstance(moved.error, IntegrityError)
    assert f"stored under key {other_key} was written for key {key}" in moved.reason


def test_tiered_store_writes_back_only_verified_packages(tmp_path: Path) -> None:
    from cache_backends import MemoryBackend
    from precompile.policy import default_store

    near, far_url = tmp_path / "near", "memory://read-path-tiers"
    genuine, key = _bound_package(signing_key=b"k")
    forged, forged_key = _bound_package(backend="forged")  # unsigned
    far = default_store(store=far_url)
    assert isinstance(far, MemoryBackend)
    far.put(key, genuine)
    far.put(forged_key, forged)
    far.put("renamed", genuine)  # genuine bytes under another key
    tiers = default_store(store=[str(near), far_url], signing_key=b"k")
    for k in (key, forged_key, "renamed"):
        assert tiers.get(k) is not None  # every hit is returned; the caller verifies it
    assert sorted(LocalDirBackend(near).list()) == [key]  # only the verified one came back


# ---------------------------------- finding 8: inspect of a file outside the cache


def test_inspect_unpickles_a_file_outside_the_cache_only_with_trust(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    downloads = _private(env / "Downloads")
    path = downloads / "x.pcpkg"
    path.write_bytes(make_package())
    path.chmod(0o600)
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "outside the configured cache" in out and "--trust" in out, out
    assert CALLS == [], CALLS
    cli.main(["inspect", str(path), "--trust"])
    assert CALLS == ["('unpickled',)"], CALLS


def test_inspect_of_a_cache_file_renamed_to_another_key_unpickles_nothing(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = _private(env / "cache")
    path = cache / "umod.f-elsewhere.pcpkg"
    path.write_bytes(make_package())
    path.chmod(0o600)
    assert cli.main(["inspect", str(path)]) == 0
    assert "was written for key" in capsys.readouterr().out and CALLS == []


# ------------------------------------------------------- finding 5: lock files


def test_a_symlinked_lock_file_is_refused_and_its_target_left_whole(tmp_path: Path) -> None:
    cache = LocalDirBackend(tmp_path / "c")
    cache.put("k", b"v")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "c" / ".locks" / "k.lock").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"), cache.lock("k", timeout=1):
        pass
    assert victim.read_bytes() == b"precious"


def test_a_lock_file_is_never_truncated(tmp_path: Path) -> None:
    cache = LocalDirBackend(tmp_path / "c")
    cache.put("k", b"v")
    lock = tmp_path / "c" / ".locks" / "k.lock"
    lock.write_bytes(b"left by someone")
    with cache.lock("k", timeout=1):
        pass
    assert lock.read_bytes() == b"left by someone"


# ---------------------------------------------------------- finding 13: keys


@pytest.mark.parametrize("key", ["a\x00b", "a\nb", "a\x1b]0;x\x07", "a/b", ".hidden", "x" * 201,
                                 ""])
def test_keys_with_control_characters_or_separators_are_refused(tmp_path: Path,
                                                                key: str) -> None:
    with pytest.raises(StoreError, match="invalid cache key"):
        LocalDirBackend(tmp_path).put(key, b"v")


# ------------------------------------------------------------- layering


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_cache_backends_import_nothing_from_precompile() -> None:
    offenders = {p.name: sorted(n for n in _imports_of(p) if n.split(".")[0] == "precompile")
                 for p in (ROOT / "cache_backends").glob("*.py")}
    assert not any(offenders.values()), offenders
    code = ("import sys, cache_backends, cache_backends.local, cache_backends.tiered, "
            "cache_backends.memory, cache_backends.redis, cache_backends.objectstore\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] == 'precompile']\n"
            "assert not loaded, loaded")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=False)
    assert run.returncode == 0, run.stderr


def test_stores_read_no_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """Trust comes through the constructor: the library passes PRECOMPILE_TRUST_SHARED_CACHE
    (policy.default_store), the store itself does not read it."""
    from precompile.policy import default_store

    monkeypatch.setenv("PRECOMPILE_TRUST_SHARED_CACHE", "1")
    assert not LocalDirBackend(tmp_path).trust_shared
    assert default_store(cache_dir=tmp_path).trust_shared


# ------------------------------------------------------ finding 4: kernel files


def _kernel_package(blobs: dict[str, bytes]) -> object:
    from precompile.package.model import Package

    pkg = Package(target.__code__, __name__, "k", {})
    pkg.kernel_blobs = dict(blobs)
    return pkg


@pytest.fixture
def inductor_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from precompile import _torch

    root = _private(tmp_path / "inductor")
    monkeypatch.setattr(_torch, "inductor_cache_dir", lambda: str(root))
    monkeypatch.delenv("PRECOMPILE_TRUST_SHARED_CACHE", raising=False)
    return root


def test_a_file_planted_at_a_kernels_path_is_replaced(inductor_dir: Path,
                                                      tmp_path: Path) -> None:
    from precompile.install.installation import install

    good = b"\x7fELF the package's kernel"
    (inductor_dir / "ab").mkdir(mode=0o700)
    planted = inductor_dir / "ab" / "k.so"
    planted.write_bytes(b"\x7fELF someone else's library")
    assert install(_kernel_package({"ab/k.so": good})).kernels_restored == 1
    assert planted.read_bytes() == good and (planted.stat().st_mode & 0o777) == 0o755
    assert install(_kernel_package({"ab/k.so": good})).kernels_restored == 0  # same: kept
    planted.chmod(0o777)  # the right bytes, but anyone could have swapped them meanwhile
    assert install(_kernel_package({"ab/k.so": good})).kernels_restored == 1
    victim = tmp_path / "victim.so"
    victim.write_bytes(b"not a kernel")
    planted.unlink()
    planted.symlink_to(victim)
    assert install(_kernel_package({"ab/k.so": good})).kernels_restored == 1
    assert not planted.is_symlink() and planted.read_bytes() == good
    assert victim.read_bytes() == b"not a kernel"


def test_kernels_are_not_restored_into_a_directory_others_can_write(
        inductor_dir: Path) -> None:
    from precompile.install.installation import install

    inductor_dir.chmod(0o777)
    try:
        with pytest.raises(StoreError, match="Inductor's cache directory"):
            install(_kernel_package({"k.so": b"lib"}))
        assert not (inductor_dir / "k.so").exists()
    finally:
        inductor_dir.chmod(0o700)


# ------------------------------------ explain on a miss reads through the same path


def test_a_miss_explains_only_with_neighbours_that_pass_the_signing_policy() -> None:
    from cache_backends import MemoryBackend
    from precompile.read.explain import explain_absent

    store = MemoryBackend()
    old, old_key = _bound_package(backend="eager")  # unsigned, same function
    store.put(old_key, old)
    factors = {**fmt.decode(old).meta["factors"], "backend": "inductor"}
    key = keys.package_key(factors)
    assert "backend changed" in explain_absent(store, key, factors)
    assert explain_absent(store, key, factors, b"k").endswith("(first compile)")
    store.delete(old_key)
    store.put(key.rsplit("-", 1)[0] + "-renamed", old)  # not under the key it was written for
    assert explain_absent(store, key, factors).endswith("(first compile)")


def test_prune_stale_removes_a_package_stored_under_another_key(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = _private(env / "cache")
    data, key = _bound_package()  # for this machine: only the key can make it stale
    (cache / "target-renamed.pcpkg").write_bytes(data)
    (cache / f"{key}.pcpkg").write_bytes(data)
    for p in cache.iterdir():
        p.chmod(0o600)
    assert cli.main(["verify", str(cache)]) == 1
    assert "was written for key" in capsys.readouterr().out
    assert cli.main(["prune", str(cache), "--stale", "--force"]) == 0
    assert sorted(p.name for p in cache.glob("*.pcpkg")) == [f"{key}.pcpkg"]
