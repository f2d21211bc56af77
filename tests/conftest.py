"""Shared fixtures: run scenario modules in fresh Python processes against one cache."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_driver.py"

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
        full_env = dict(os.environ)
        full_env.update({
            "PRECOMPILE_CACHE_DIR": str(self.cache),
            "TORCHINDUCTOR_CACHE_DIR": str(self.inductor),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PRECOMPILE_LOG": "info",
        })
        full_env.pop("PRECOMPILE_CACHE_URL", None)
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

    def packages(self) -> list[Path]:
        return sorted(self.cache.glob("*.pcpkg")) if self.cache.exists() else []


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)
