"""Never hang, never leak a lease, nothing escapes into the user's call.

Scenarios with signals or forks run in a child process under a hard timeout, so a
regression fails the test instead of hanging the suite.
"""
from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import filelock
import pytest
import torch

import precompile
from cache_backends import LocalDirBackend
from conftest import scrubbed_environ
from precompile import settings
from precompile.format import envelope as format
from precompile.read.single_flight import LEASE_SUFFIX as _LEASE_SUFFIX
from precompile.errors import LockTimeout, PackageError, SettingError, StoreError

ROOT = Path(__file__).resolve().parents[2]


def _run_script(source: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``source`` in a fresh interpreter with CACHE set to a directory under tmp_path;
    a hang is a failure, not a stuck suite."""
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(source))
    env = scrubbed_environ(PYTHONPATH=str(ROOT), CACHE=str(tmp_path / "cache"),
                           TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    try:
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=str(tmp_path))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the scenario hung (>{timeout}s)\n{e.stdout}\n{e.stderr}")


def _packages(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pcpkg"))


# ------------------------------------------------------------------ 6: SIGTERM


def test_sigterm_during_a_save_exits_and_leaves_whole_packages(tmp_path: Path) -> None:
    """SIGTERM arrives while the main thread is inside a save (holding its save lock): the
    handler must not wait on that lock; it saves the other package and the process ends."""
    run = _run_script("""
        import os, signal, time, torch, precompile
        from precompile.record import saving as saving
        from cache_backends.local import LocalDirBackend

        saving._SAVER.schedule = lambda cached: None  # saves happen only in flush() below
        kw = dict(backend="aot_eager", cache_dir=os.environ["CACHE"], single_flight=False)

        @precompile.cached(**kw)
        def f(x):
            return x + 1

        @precompile.cached(**kw)
        def g(x):
            return x * 2

        f(torch.ones(3)); g(torch.ones(3))
        put = LocalDirBackend.put
        def put_then_terminated(self, key, data):
            if not getattr(put_then_terminated, "done", False):
                put_then_terminated.done = True
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(2)  # the handler runs here, inside this save
            return put(self, key, data)
        LocalDirBackend.put = put_then_terminated
        precompile.flush()
        print("NOT TERMINATED", flush=True)
    """, tmp_path, timeout=90)
    assert run.returncode == -15, f"rc={run.returncode}\n{run.stdout}\n{run.stderr}"
    packages = _packages(tmp_path / "cache")
    assert len(packages) == 1, packages  # the other save was cut short by the exit
    for path in packages:
        format.decode(path.read_bytes())
    assert not list((tmp_path / "cache").glob(".tmp-*"))


# ------------------------------------------------------------------ 7: fork

_FORK_PARENT = """
    import multiprocessing, os, sys, time, torch, precompile
    from cache_backends.local import LocalDirBackend

    PARENT = os.getpid()
    put = LocalDirBackend.put
    def slow_put(self, key, data):
        if os.getpid() != PARENT:
            open(os.path.join(os.environ["CACHE"], f"child-put-{os.getpid()}"), "w").close()
        else:
            time.sleep(4)  # the saver thread is in here, holding the locks, at the fork
        return put(self, key, data)
    LocalDirBackend.put = slow_put

    @precompile.cached(backend="aot_eager", cache_dir=os.environ["CACHE"], single_flight=False)
    def f(x):
        return x + 1

    def square(n):
        return n * n

    f(torch.ones(3))  # dirty: the background saver starts writing it (slowly)
    time.sleep(0.5)
"""


def test_forked_children_exit_while_the_parent_saves(tmp_path: Path) -> None:
    run = _run_script(_FORK_PARENT + """
    pid = os.fork()
    if pid == 0:
        f(torch.ones(3))
        sys.exit(0)  # runs the exit hooks
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.05)
    else:
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            print("CHILD HUNG", flush=True)
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(2)
    print("POOL", pool.map(square, [2, 3]), flush=True)
    pool.terminate()  # SIGTERM to workers that inherited the busy saver
    pool.join()
    print("DONE", flush=True)
    """, tmp_path, timeout=90)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "CHILD HUNG" not in run.stdout and "POOL [4, 9]" in run.stdout and "DONE" in run.stdout
    assert not list((tmp_path / "cache").glob("child-put-*")), "a child saved the parent's package"
    assert len(_packages(tmp_path / "cache")) == 1  # the parent's save completed


# ---------------------------------------------------------- 8: strict lease


def _two(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


def test_strict_miss_releases_the_lease(tmp_path: Path) -> None:
    store = LocalDirBackend(tmp_path / "cache")
    fn = precompile.cached(_two, backend="aot_eager", store=store, strict=True)
    with pytest.raises(PackageError):
        fn(torch.ones(2))
    key = fn._precompile.package.key
    assert key
    with store.lock(key + _LEASE_SUFFIX, timeout=0):  # LockTimeout if it leaked
        pass


# ---------------------------------------------------- 9: trust for locks too


def test_lock_in_a_world_writable_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(StoreError) as err, LocalDirBackend(root).lock("k", timeout=0):
        pass
    assert not isinstance(err.value, LockTimeout) and "world-writable" in str(err.value)


def test_planted_locks_symlink_is_not_followed(tmp_path: Path) -> None:
    root, victim = tmp_path / "cache", tmp_path / "victim"
    root.mkdir(mode=0o700)
    victim.mkdir()
    (root / ".locks").symlink_to(victim)
    with pytest.raises(StoreError, match="not a directory"), LocalDirBackend(root).lock("k"):
        pass
    assert not list(victim.iterdir())
    (root / "k.pcpkg").symlink_to(victim / "code.pcpkg")
    (victim / "code.pcpkg").write_bytes(b"x")
    with pytest.raises(StoreError, match="symbolic link"):
        LocalDirBackend(root).get("k")


def test_single_flight_does_not_wait_on_an_untrusted_store(tmp_path: Path) -> None:
    key = _key_of(_two)
    root = tmp_path / "shared"
    (root / ".locks").mkdir(parents=True, mode=0o700)
    root.chmod(0o777)
    holder = filelock.FileLock(str(root / ".locks" / f"{key}{_LEASE_SUFFIX}.lock"))
    with holder:  # "another process" compiling it, in a store we refuse to read
        fn = precompile.cached(_two, backend="aot_eager", cache_dir=root, wait_timeout=20)
        t0 = time.monotonic()
        assert torch.equal(fn(torch.ones(2)), _two(torch.ones(2)))
        assert time.monotonic() - t0 < 10


def _key_of(fn: object) -> str:
    probe = precompile.cached(fn, backend="aot_eager", store="memory://robustness-key")
    probe(torch.ones(2))
    return probe._precompile.package.key


# ------------------------------------------------------ 10: fsspec local://


def test_fsspec_local_store_is_the_local_store(tmp_path: Path) -> None:
    from cache_backends import FsspecBackend

    st = FsspecBackend(f"local://{tmp_path / 'c'}")
    st.put("k", b"v")
    with st.lock("k"):
        with pytest.raises(LockTimeout), FsspecBackend(f"local://{tmp_path / 'c'}").lock(
                "k", timeout=0):
            pass
    (tmp_path / "c").chmod(0o777)
    with pytest.raises(StoreError, match="world-writable"):
        FsspecBackend(f"local://{tmp_path / 'c'}").get("k")


# ------------------------------------------- 11: nothing reaches the caller


def test_eviction_error_does_not_replace_the_return_value(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    os.symlink("loop.pcpkg", root / "loop.pcpkg")  # stat() of it: ELOOP
    store = LocalDirBackend(root, max_bytes=1)
    assert store.stat("loop") is not None
    fn = precompile.cached(_two, backend="aot_eager", store=store)
    assert torch.equal(fn(torch.ones(2)), _two(torch.ones(2)))


class _Hostile:
    """A callable whose ``__wrapped__`` lookup raises something other than AttributeError
    (proxies and lazy handles do this); plain torch.compile never asks for it."""

    def __call__(self) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        if name == "__wrapped__":
            raise RuntimeError(f"no attribute {name} here")
        raise AttributeError(name)


def _closure_over_hostile() -> object:
    hostile = _Hostile()

    def f(x: torch.Tensor) -> torch.Tensor:
        return x + 1 if hostile is not None else x

    return f


def test_key_factor_error_is_a_warning_and_a_compile(caplog: pytest.LogCaptureFixture) -> None:
    fn = precompile.cached(_closure_over_hostile(), backend="aot_eager",
                           store="memory://robustness-hostile")
    with caplog.at_level(logging.WARNING, logger="precompile"):
        assert torch.equal(fn(torch.ones(2)), torch.ones(2) + 1)
    assert any("could not use the cache" in r for r in precompile.stats()["miss_reasons"])
    strict = precompile.cached(_closure_over_hostile(), backend="aot_eager",
                               store="memory://robustness-hostile", strict=True)
    with pytest.raises(PackageError, match="could not use the cache"):
        strict(torch.ones(2))


def test_bad_environment_warns_and_compiles(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PRECOMPILE_CACHE_URL", "nosuchprotocol://bucket/x")
    monkeypatch.setenv("PRECOMPILE_WAIT_TIMEOUT", "10m")
    with caplog.at_level(logging.WARNING, logger="precompile"):
        fn = precompile.cached(_two, backend="aot_eager")  # at import time, in real programs
    assert torch.equal(fn(torch.ones(2)), _two(torch.ones(2)))
    assert fn._precompile.store is None and fn._precompile.policy.wait_timeout == 600.0
    reasons = " ".join(precompile.stats()["miss_reasons"])
    assert "PRECOMPILE_CACHE_URL" in reasons and "PRECOMPILE_WAIT_TIMEOUT" in reasons
    assert "10m" in caplog.text
    with pytest.raises(SettingError, match="PRECOMPILE_CACHE_URL"):
        precompile.cached(_two, backend="aot_eager", strict=True)
    monkeypatch.delenv("PRECOMPILE_CACHE_URL")
    with pytest.raises(SettingError, match="PRECOMPILE_WAIT_TIMEOUT"):
        precompile.cached(_two, backend="aot_eager", strict=True)


@pytest.mark.parametrize("value,expected", [("0", False), ("off", False), ("", False),
                                            ("1", True), ("Yes", True)])
def test_flags_parse_one_way(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(settings.FULL_IMPORTS, value)
    assert settings.flag(settings.FULL_IMPORTS) is expected
    monkeypatch.setenv(settings.FULL_IMPORTS, "maybe")
    with pytest.raises(SettingError, match=settings.FULL_IMPORTS):
        settings.flag(settings.FULL_IMPORTS)


# ------------------------------------------------------ 12: read-only store


def test_read_only_store_is_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from cache_backends import file_lock

    def read_only(path: str, *args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    # The lock file's open, as on a read-only filesystem (only in the lock module).
    monkeypatch.setattr(file_lock, "os", types.SimpleNamespace(**{**vars(os), "open": read_only}))
    root = tmp_path / "ro"

    def three(x: torch.Tensor) -> torch.Tensor:
        return x * 3

    with caplog.at_level(logging.WARNING, logger="precompile"):
        for fn in (_two, three):
            compiled = precompile.cached(fn, backend="aot_eager", cache_dir=root)
            for _ in range(2):
                assert torch.equal(compiled(torch.ones(2)), fn(torch.ones(2)))
        precompile.flush()
    ours = [r for r in caplog.records if r.name == "precompile" and r.levelno >= logging.WARNING]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    assert ours[0].exc_info is None and "read-only" in ours[0].getMessage()
