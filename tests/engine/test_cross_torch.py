"""A package written by one torch is refused by another before anything is unpickled.

Each supported torch lives in its own venv next to the repository (``make test TORCH=X``
builds ``.venv-X``; the default is ``.venv``). For every ordered pair of venvs present, one
venv's python writes a real package and the other's loads it: the load must raise
IncompatibleError naming both versions while no unpickler has run. A pair whose venv is
missing is skipped; .ci/run builds all three before it runs these.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = ("2.13.0", "2.14.1", "2.15.0")

USER_MODULE = """
import json, os, pickle, sys

unpickled = []
if sys.argv[1] == "read":
    # Any unpickling, by precompile or by torch on its behalf, is recorded.
    class TrappedUnpickler(pickle.Unpickler):
        def load(self):
            unpickled.append("Unpickler.load")
            return super().load()

    real_loads = pickle.loads

    def trapped_loads(*args, **kwargs):
        unpickled.append("loads")
        return real_loads(*args, **kwargs)

    pickle.Unpickler, pickle.loads = TrappedUnpickler, trapped_loads

import torch, precompile
from precompile.errors import IncompatibleError


def fn(x):
    return (x + 1).relu() * 2


if sys.argv[1] == "write":
    compiled = precompile.cached(torch.compile(fn, backend="eager"), store="memory://")
    compiled(torch.randn(4))
    precompile.save(compiled, sys.argv[2])
    print("WROTE", torch.__version__)
else:
    try:
        precompile.load(fn, sys.argv[2])(torch.randn(4))
        outcome = {"refused": None}
    except IncompatibleError as e:
        outcome = {"refused": str(e)}
    print("RESULT " + json.dumps({**outcome, "torch": torch.__version__, "unpickled": unpickled}))
"""


def _venv_for(version: str) -> Path | None:
    """The venv next to the repository that holds torch ``version`` (read from its
    dist-info, so finding it imports nothing)."""
    for venv in sorted(ROOT.glob(".venv*")):
        for info in venv.glob("lib/python*/site-packages/torch-*.dist-info"):
            found = re.match(r"torch-(\d+\.\d+\.\d+)", info.name)
            if found and found.group(1) == version and (venv / "bin" / "python").exists():
                return venv
    return None


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(venv / "bin" / "python"), "user_mod.py", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One package file per supported torch whose venv exists, written by that torch."""
    written: dict[str, Path] = {}
    for version in SUPPORTED:
        venv = _venv_for(version)
        if venv is None:
            continue
        work = tmp_path_factory.mktemp(f"writer-{version}")
        (work / "user_mod.py").write_text(textwrap.dedent(USER_MODULE))
        path = work / "fn.pcpkg"
        proc = _run(venv, "write", str(path), cwd=work)
        assert proc.returncode == 0 and path.exists(), proc.stderr[-4000:]
        written[version] = path
    return written


@pytest.mark.parametrize("writer,reader", list(itertools.permutations(SUPPORTED, 2)))
def test_package_from_another_torch_is_refused_unread(writer: str, reader: str,
                                                      packages: dict[str, Path],
                                                      tmp_path: Path) -> None:
    reader_venv = _venv_for(reader)
    if writer not in packages or reader_venv is None:
        pytest.skip(f"needs the venvs of torch {writer} and {reader} (make test TORCH=...)")
    (tmp_path / "user_mod.py").write_text(textwrap.dedent(USER_MODULE))
    proc = _run(reader_venv, "read", str(packages[writer]), cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["refused"], f"torch {reader} used a package written by {writer}"
    assert writer in result["refused"] and result["torch"] in result["refused"], result
    assert result["unpickled"] == [], result
