"""Shared fixtures: one environment scrubber (``scrubbed_environ``, ``clean_env``), scenario
modules run in fresh Python processes against one cache (``Scenario``, with
``cold_then_warm``; ``run_cli`` for the command line on that cache), the project of
stored-package tests (``env``, packages built by ``tests/_packages.py``), moto's S3 server
(``moto_s3``) and the slow tier (``SLOW_FILES``).

Test files sit in folders that mirror the pipeline (format, identity, package, record, read,
install, engine, stores, fleet, cli, staleness, warm_start, ecosystem, layout); none imports
another test file, and their basenames are unique (no ``__init__.py``: this directory is on
``sys.path``, so ``conftest``, ``_packages``, ``redis_server`` and ``fake_s3`` import by
name)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_driver.py"
# Settings of the test machinery itself, not of precompile: kept by the scrubber.
_TEST_SETTINGS = frozenset({"PRECOMPILE_SKIP_REDIS"})


def _precompile_settings() -> list[str]:
    return [n for n in os.environ if n.startswith("PRECOMPILE_") and n not in _TEST_SETTINGS]


def scrubbed_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any ``PRECOMPILE_*`` setting (a developer's own
    cache, signing key or strict mode never leaks into a test's child process), plus
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _precompile_settings()}
    env.update(extra)
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``PRECOMPILE_*`` setting in this process for the test (restored afterwards)."""
    for name in _precompile_settings():
        monkeypatch.delenv(name)
    return monkeypatch

# The libraries the zoo and the sweep compile: their installed versions head every run (pip
# gives the newest releases; constraints/known-good.txt pins the last set that passed).
ECOSYSTEM = ("torch", "transformers", "kernels", "diffusers", "peft", "timm", "accelerate")


def _ecosystem_versions() -> str:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return "ecosystem: " + ", ".join(f"{n} {version(n)}" for n in ECOSYSTEM)


def pytest_report_header() -> str:
    return _ecosystem_versions()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The versions again at the end, where ``-q`` runs (``make test``) show them too."""
    terminalreporter.write_line(_ecosystem_versions())


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None

    @property
    def stats(self) -> dict[str, Any]:
        assert self.result is not None, self.describe()
        return self.result["stats"]

    @property
    def frames(self) -> int:
        assert self.result is not None, self.describe()
        return self.result["frames"]

    def describe(self) -> str:
        return f"rc={self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}"

    def assert_ok(self) -> Run:
        assert self.returncode == 0 and self.result is not None, self.describe()
        bad = [k for k, ok in self.result["checks"].items() if not ok]
        assert not bad, f"results differ from eager: {bad}\n{self.describe()}"
        return self

    def assert_warm(self) -> Run:
        """A warm hit: correct results, nothing traced, no backend compile."""
        self.assert_ok()
        assert self.frames == 0, f"warm run traced {self.frames} frames\n{self.describe()}"
        assert self.stats["frames_traced"] == 0, self.describe()
        assert self.result["counts"]["compile_fx_inner"] == 0, self.describe()
        assert self.stats["hits"] >= 1, self.describe()
        return self


class Scenario:
    """A user module on disk plus the cache both processes share."""

    def __init__(self, root: Path, name: str = "user_mod") -> None:
        self.root = root
        self.cache = root / "cache"
        self.inductor = root / "inductor"
        self.path = root / f"{name}.py"
        self.env_extra: dict[str, str] = {}

    def write(self, source: str) -> Scenario:
        self.path.write_text(textwrap.dedent(source))
        # a fresh mtime so linecache and importlib never serve an old copy
        pyc = self.root / "__pycache__"
        if pyc.exists():
            for p in pyc.iterdir():
                p.unlink()
        return self

    def run(self, phase: str, **env: str) -> Run:
        full_env = scrubbed_environ(PRECOMPILE_CACHE_DIR=str(self.cache),
                                    TORCHINDUCTOR_CACHE_DIR=str(self.inductor),
                                    PYTHONDONTWRITEBYTECODE="1", PRECOMPILE_LOG="info")
        full_env.update(self.env_extra)
        full_env.update(env)
        proc = subprocess.run([sys.executable, str(DRIVER), str(self.path), phase],
                              capture_output=True, text=True, env=full_env, timeout=600,
                              cwd=str(self.root))
        result = None
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        return Run(proc.returncode, proc.stdout, proc.stderr, result)

    def cold_then_warm(self, *, hash_seeds: tuple[str, str] | None = None,
                       **env: str) -> tuple[Run, Run]:
        """A cold process that compiles and stores everything (no bypass), then a warm one
        on its cache; the warm run is returned unchecked. ``hash_seeds``: each process its
        own PYTHONHASHSEED, as any two real processes have."""
        seeds = hash_seeds or (None, None)
        cold = self.run("cold", **_seeded(seeds[0], env)).assert_ok()
        assert cold.stats["bypasses"] == 0 and self.packages(), cold.describe()
        return cold, self.run("warm", **_seeded(seeds[1], env))

    def packages(self) -> list[Path]:
        return sorted(self.cache.glob("*.pcpkg")) if self.cache.exists() else []


def _seeded(seed: str | None, env: dict[str, str]) -> dict[str, str]:
    return env if seed is None else {**env, "PYTHONHASHSEED": seed}


def run_cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m precompile.cli ARGS`` in ``root``, on the cache a ``Scenario`` there uses,
    with no precompile setting from this process but ``env``."""
    full = scrubbed_environ(**{"PRECOMPILE_CACHE_DIR": str(root / "cache"),
                               "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
                               "PYTHONDONTWRITEBYTECODE": "1", **env})
    return subprocess.run([sys.executable, "-m", "precompile.cli", *args], cwd=root,
                          env=full, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on loopback (skipped without moto[server] and s3fs): its URL."""
    from redis_server import free_port

    pytest.importorskip("s3fs", reason="s3fs is not installed")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    # Credentials given outright: botocore must never look for them on the network.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def local_cache(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Any:
    """An empty local-directory store that is also this process's default cache
    (``PRECOMPILE_CACHE_DIR``), with no other precompile setting."""
    from cache_backends.local import LocalDirBackend

    clean_env.setenv("PRECOMPILE_CACHE_DIR", str(tmp_path / "cache"))
    return LocalDirBackend(tmp_path / "cache")


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)


@pytest.fixture
def env(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A project dir (the cwd, holding ``umod.py`` for ``_packages.make_package``), a cache
    under it, no other precompile setting, and ``os.system`` recording into
    ``_packages.CALLS`` instead of running."""
    import _packages

    monkeypatch = clean_env
    (tmp_path / "umod.py").write_text(_packages.UMOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "umod", raising=False)
    monkeypatch.setattr(os, "system", _packages.record_call)
    monkeypatch.setenv("PRECOMPILE_CACHE_DIR", str(tmp_path / "cache"))
    _packages.CALLS.clear()
    return tmp_path


# The slow tier (``-m slow``; ``make test`` runs ``-m "not slow"``, ``make test-all`` and
# .ci/run run everything): the fresh-process files whose programs take longest, by path under
# tests/, listed here rather than in each file. A test anywhere may also carry
# ``@pytest.mark.slow`` itself.
SLOW_FILES = {
    "staleness/test_staleness.py": "a generated program per guard kind, a fresh process pair each",
    "ecosystem/test_zoo.py": "real models (transformers, DDP on two ranks), cold then warm",
    "record/test_first_step.py": "Inductor compiles of optimizer first steps",
    "warm_start/test_peer_package.py": "PyTorch's package tests as fresh-process scenarios",
    "fleet/test_fleet.py": "warm-up, coverage and serving, each a fresh process",
    "warm_start/test_hops.py": "higher-order operators through Inductor",
    "read/test_shared_kernels.py": "C++ kernels built by Inductor in separate processes",
    "engine/test_cross_torch.py": "a process per installed torch release",
    "ecosystem/test_ddp.py": "DDP with Inductor on two spawned ranks, cold then warm",
    "ecosystem/test_auto.py":
        "whole programs (HF Trainer, accelerate, DDP) run twice with PRECOMPILE_AUTO",
    "identity/test_unpicklable_guards.py":
        "objects the guard pickler refuses, each changed between processes",
    "staleness/test_module_changes.py":
        "generated models mutated between processes, through Inductor",
    "fleet/test_fleet_torch_modules.py":
        "warm-up and coverage of torch's module classes via the CLI",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(HERE) and path.relative_to(HERE).as_posix() in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
