"""Compiled kernels stored once per store: two functions compiled in separate processes that
load the same C++ kernel share one blob; prune keeps it while a package names it; a tampered
blob is refused before use (a clean recompile); export/import carry each blob once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import Scenario, scrubbed_environ

TWO = """
import os
import torch, precompile

@precompile.cached(backend="inductor")
def f(x):
    return torch.relu(x) * 2.0 + 1.0

@precompile.cached(backend="inductor")
def g(x):
    return torch.relu(x) * 2.0 + 1.0

def run():
    x = torch.randn(16, 16)
    want = torch.relu(x) * 2.0 + 1.0
    names = os.environ.get("FUNCS", "f,g").split(",")
    return [(n, globals()[n](x), want) for n in names]
"""


def _blobs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("blob-*.pcpkg"))


def _packages(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*.pcpkg") if not p.name.startswith("blob-"))


def _cli(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = scrubbed_environ(PRECOMPILE_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-m", "precompile.cli", *args], check=False,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _manifest_kernels(path: Path) -> list[dict[str, str]]:
    from precompile.format import envelope as format

    env = format.decode(path.read_bytes())
    assert not any(k["blob"] in env.blobs for k in env.manifest["kernels"]), "kernel embedded"
    return env.manifest["kernels"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """f and g compiled in two processes (each records the kernels it loads)."""
    sc = Scenario(tmp_path_factory.mktemp("shared"))
    sc.write(TWO)
    sc.run("cold", FUNCS="f").assert_ok()
    sc.run("cold", FUNCS="g").assert_ok()
    return sc


@pytest.fixture
def scenario_copy(written: Scenario, tmp_path: Path) -> Scenario:
    import shutil

    sc = Scenario(tmp_path)
    shutil.copytree(written.cache, sc.cache)
    shutil.copy(written.path, sc.path)
    return sc


def _warm_fresh_inductor(sc: Scenario, tag: str, **env: str) -> object:
    return sc.run("warm", TORCHINDUCTOR_CACHE_DIR=str(sc.root / f"inductor-{tag}"), **env)


def test_two_functions_store_a_shared_kernel_once(scenario_copy: Scenario) -> None:
    sc = scenario_copy
    pkgs = _packages(sc.cache)
    assert len(pkgs) == 2
    named = [{k["blob"] for k in _manifest_kernels(p)} for p in pkgs]
    assert named[0] and named[0] & named[1], named
    assert {p.name for p in _blobs(sc.cache)} == {f"blob-{d}.pcpkg" for d in named[0] | named[1]}
    warm = _warm_fresh_inductor(sc, "a").assert_warm()
    assert warm.stats["kernels_restored"] >= 1, warm.describe()  # from the shared blob


def test_one_process_compiling_both_names_the_kernel_in_both(scenario: Scenario) -> None:
    """The second function gets the kernel from Inductor's in-process cache (no new load);
    its package still names it, so a replica that only serves g builds nothing."""
    scenario.write(TWO)
    scenario.run("cold").assert_ok()
    named = [{k["blob"] for k in _manifest_kernels(p)} for p in _packages(scenario.cache)]
    assert len(named) == 2 and named[0] and named[0] == named[1], named
    warm = _warm_fresh_inductor(scenario, "g", FUNCS="g").assert_warm()
    assert warm.stats["kernels_restored"] >= 1, warm.describe()


def test_prune_keeps_a_kernel_another_package_names(scenario_copy: Scenario) -> None:
    sc = scenario_copy
    f_pkg = next(p for p in _packages(sc.cache) if p.name.startswith("f-"))
    g_pkg = next(p for p in _packages(sc.cache) if p.name.startswith("g-"))
    os.utime(f_pkg, (1, 1))  # f is the least recently used
    out = json.loads(_cli(sc.cache, "prune", "--max-size", str(g_pkg.stat().st_size),
                          "--force", "--json").stdout)
    assert [r["key"] for r in out["removed"]] == [f_pkg.name[:-len(".pcpkg")]], out
    assert _blobs(sc.cache), "the kernel g names was pruned"
    _warm_fresh_inductor(sc, "b", FUNCS="g").assert_warm()
    out = json.loads(_cli(sc.cache, "prune", "--older-than", "0s", "--force", "--json").stdout)
    assert not _packages(sc.cache) and not _blobs(sc.cache), out


def test_tampered_kernel_is_refused_and_recompiled(scenario_copy: Scenario) -> None:
    sc = scenario_copy
    blob = _blobs(sc.cache)[0]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    # refused before anything used it: the call compiles (results equal eager)
    run = sc.run("cold", FUNCS="f", TORCHINDUCTOR_CACHE_DIR=str(sc.root / "inductor-c"))
    run.assert_ok()
    assert run.frames == 1 and run.stats["hits"] == 0, run.describe()
    assert any("shared kernel" in r for r in run.stats["miss_reasons"]), run.describe()
    # the recompile wrote the kernel again: the next process hits
    _warm_fresh_inductor(sc, "d", FUNCS="f").assert_warm()


def test_export_import_carries_each_kernel_once(scenario_copy: Scenario, tmp_path: Path) -> None:
    sc = scenario_copy
    archive = tmp_path / "cache.tar.gz"
    _cli(sc.cache, "export", str(sc.cache), str(archive))
    with tarfile.open(archive) as tar:
        names = [m.name for m in tar.getmembers()]
    blob_members = [n for n in names if n.startswith("blob-")]
    assert len(blob_members) == len(set(blob_members)) == len(_blobs(sc.cache)), names
    other = Scenario(tmp_path / "other")
    other.root.mkdir()
    other.path.write_text(sc.path.read_text())
    _cli(other.cache, "import", str(archive))
    assert len(_blobs(other.cache)) == len(_blobs(sc.cache))
    _warm_fresh_inductor(other, "e").assert_warm()


def test_eviction_deletes_a_kernel_only_when_no_package_names_it() -> None:
    from cache_backends.base import Stat
    from cache_backends.blobs import blob_key, plan_shared_eviction

    k1, k2 = blob_key("a" * 64), blob_key("b" * 64)
    stats = [Stat("f-1", 100, last_used=1), Stat("g-2", 100, last_used=2),
             Stat("h-3", 100, last_used=3), Stat(k1, 500), Stat(k2, 500)]
    refs = {"f-1": {k1}, "g-2": {k1}, "h-3": {k2}}
    # dropping f frees only f: g still names k1
    assert [s.key for s in plan_shared_eviction(stats, refs, 1200)] == ["f-1"]
    # dropping f and g frees k1 too; k2 stays while h names it
    assert [s.key for s in plan_shared_eviction(stats, refs, 1000)] == ["f-1", "g-2", k1]
    # a kernel no package names goes first
    assert [s.key for s in plan_shared_eviction(stats, {"f-1": {k1}}, 1300)] == [k2]


def test_a_blob_is_read_with_the_checks_a_package_gets() -> None:
    from precompile.errors import IntegrityError, PackageError
    from precompile.format.envelope import sha256_hex
    from precompile.read.shared_blobs import decode_blob, encode_blob

    data = b"\x7fELF kernel bytes"
    digest = sha256_hex(data)
    key, signed = encode_blob(data, b"k1")
    assert key == f"blob-{digest}"
    assert decode_blob(signed, digest, b"k1") == data
    with pytest.raises(IntegrityError, match="signature"):
        decode_blob(signed, digest, b"k2")
    _, unsigned = encode_blob(data, None)
    with pytest.raises(IntegrityError, match="not signed"):
        decode_blob(unsigned, digest, b"k1")
    with pytest.raises(IntegrityError, match="does not hold"):
        decode_blob(unsigned, "0" * 64, None)
    flipped = bytearray(unsigned)
    flipped[-40] ^= 1
    with pytest.raises(PackageError):
        decode_blob(bytes(flipped), digest, None)
