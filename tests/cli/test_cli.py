"""Each ``precompile`` command does what its help says (ls, inspect, verify, explain, prune,
stats, export and import), run as a subprocess on packages a real compile wrote; import is
streamed, verified and all or nothing."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Line numbers matter: explain/verify name "umod.py lines 4-5 (helper)".
USER_MOD = '''\
import torch
import precompile

def helper(x):
    return x * 2 + 1

@precompile.cached(backend="eager")
def f(x):
    y = helper(x).sin()
    print("x")
    return y.cos() + 1

@precompile.cached(backend="eager")
def g(x):
    return x.relu() * 3
'''

RUNNER = '''\
import torch, precompile, umod
umod.f(torch.randn(4))
umod.g(torch.randn(5))
precompile.flush()
'''


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PRECOMPILE_CACHE_URL", "PRECOMPILE_SIGNING_KEY", "PRECOMPILE_STRICT",
                 "PRECOMPILE_STATS_FILE"):
        env.pop(name, None)
    env["PRECOMPILE_CACHE_DIR"] = str(cache)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # edits below keep file sizes: no stale .pyc
    return env


@dataclasses.dataclass
class Project:
    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def cli(self, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "precompile.cli", *args], check=False,
                              cwd=self.root,
                              env=_env(cache or self.cache), capture_output=True, text=True,
                              timeout=300)

    def cli_parallel(self, *commands: tuple[str, ...],
                     cache: Path | None = None) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands at once (each pays ~3 s importing torch)."""
        procs = [(cmd, subprocess.Popen([sys.executable, "-m", "precompile.cli", *cmd],
                                        cwd=self.root, env=_env(cache or self.cache),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)) for cmd in commands]
        out = []
        for cmd, proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            out.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
        return out

    def package(self, function: str) -> Path:
        (path,) = self.cache.glob(f"{function}-*.pcpkg")
        return path


def _ok(proc: subprocess.CompletedProcess[str], rc: int = 0) -> str:
    assert proc.returncode == rc, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real compile (a graph break in f, so a resume function) shared by the tests."""
    root = tmp_path_factory.mktemp("cli_project")
    (root / "umod.py").write_text(USER_MOD)
    (root / "run.py").write_text(RUNNER)
    proc = subprocess.run([sys.executable, "run.py"], check=False, cwd=root,
                          env=_env(root / "cache"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((root / "cache").glob("*.pcpkg"))) == 2, proc.stderr
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Project:
    shutil.copytree(built, tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__"))
    return Project(tmp_path / "p")


def test_ls_text_and_json(project: Project, tmp_path: Path) -> None:
    # CACHE given explicitly wins over $PRECOMPILE_CACHE_DIR (pointed elsewhere here)
    text, js = project.cli_parallel(("ls", str(project.cache)),
                                    ("ls", str(project.cache), "--json"),
                                    cache=tmp_path / "elsewhere")
    out = _ok(text)
    assert "umod:f" in out and "umod:g" in out and "2 packages" in out, out
    rows = json.loads(_ok(js))
    by_fn = {r["function"]: r for r in rows}
    assert set(by_fn) == {"umod:f", "umod:g"}
    f = by_fn["umod:f"]
    for field in ("key", "path", "function", "module", "entries", "size", "created",
                  "last_used"):
        assert f[field] is not None, (field, f)
    assert f["module"] == "umod" and f["entries"] == 2 and by_fn["umod:g"]["entries"] == 1
    assert Path(f["path"]) == project.package("f")
    assert f["size"] == project.package("f").stat().st_size
    assert f["key"] == project.package("f").stem
    assert abs(f["created"] - time.time()) < 3600


def test_inspect_names_frames_guards_and_resume_function(project: Project) -> None:
    # a unique key prefix is enough; by path, --no-guards skips unpickling (and importing
    # Dynamo) for a quicker structure check
    text, js = project.cli_parallel(("inspect", "f-"),
                                    ("inspect", str(project.package("g")), "--json",
                                     "--no-guards"))
    out = _ok(text)
    assert "umod:f  [function]" in out, out
    assert "L['x']: TENSOR_MATCH size=(4,)" in out, out
    assert "resume function" in out and "torch_dynamo_resume_in_f_at_10" in out, out
    assert "L['y']: TENSOR_MATCH" in out, out  # the resume function's own guards
    assert "G['helper']: CLOSURE_MATCH" in out, out  # identity check from the manifest
    assert "fx_graph  forward+backward" in out, out
    assert "signature  unsigned" in out, out
    assert "umod:helper  lines 4-5" in out, out
    assert "function          umod:f" in out, out  # key factors
    d = json.loads(_ok(js))
    assert d["function"] == "umod:g" and d["factors"]["function"] == "umod:g"
    (frame,) = d["frames"]
    assert frame["role"] == "main" and frame["entries"][0]["backends"][0]["kind"] == "fx_graph"
    assert [a["kind"] for a in d["artifacts"]] == ["fx_graph"]
    assert d["system"]["torch"] and d["signature"]["ok"] is True


def test_verify_passes_then_fails_after_a_flipped_byte(project: Project) -> None:
    out = _ok(project.cli("verify"))
    lines = [ln for ln in out.splitlines() if ln.startswith("OK")]
    assert len(lines) == 2, out
    _flip_byte(project.package("f"))
    out = _ok(project.cli("verify"), rc=1)
    assert any(ln.startswith("CORRUPT") and project.package("f").stem in ln
               and "checksum" in ln for ln in out.splitlines()), out
    assert any(ln.startswith("OK") and "umod:g" in ln for ln in out.splitlines()), out


def test_explain_hits_then_names_the_changed_helper_lines(project: Project) -> None:
    out = _ok(project.cli("explain", "umod:f"))
    assert "would HIT" in out, out
    mod = project.root / "umod.py"
    mod.write_text(mod.read_text().replace("x * 2 + 1", "x * 5 + 1"))
    out = _ok(project.cli("explain", "umod:f"), rc=1)
    assert "would MISS" in out, out
    assert "umod.py lines 4-5 (helper) changed" in out, out
    assert "-    return x * 2 + 1" in out and "+    return x * 5 + 1" in out, out


def test_explain_of_an_untrusted_package_judges_none_of_its_entries(project: Project) -> None:
    """The entries of a package the library will not load are never resolved: explain
    gives the reason and no verdict on them (it once added "no entry of the function
    still applies: " with nothing after it)."""
    project.cache.chmod(0o777)
    out = _ok(project.cli("explain", "umod:f"), rc=1)
    assert "the library will not load it" in out and "world-writable" in out, out
    assert "no entry of the function" not in out, out


def test_prune_max_size_keeps_a_fresh_package_unless_forced(project: Project) -> None:
    old, fresh = project.package("g"), project.package("f")
    _age(old, 3600)
    _age(fresh, 0)
    out = _ok(project.cli("prune", "--max-size", "0"))
    assert not old.exists(), out
    assert fresh.exists() and "use --force" in out, out
    out = _ok(project.cli("prune", "--max-size", "0", "--force"))
    assert not fresh.exists(), out


def test_prune_stale_removes_corrupt_and_foreign_packages(project: Project) -> None:
    from precompile.format import envelope as format

    good = project.package("g")
    broken = project.cache / "broken-1.pcpkg"
    shutil.copy(good, broken)
    _flip_byte(broken)
    _age(broken, 3600)
    env = format.decode(good.read_bytes())
    meta = {**env.meta, "factors": {**env.meta["factors"], "torch": "1.0.0"}}
    foreign = project.cache / "foreign-1.pcpkg"
    foreign.write_bytes(format.encode(meta, env.manifest, env.blobs))
    _age(foreign, 3600)
    busy = project.cache / "broken-2.pcpkg"  # corrupt, but written just now
    shutil.copy(broken, busy)
    _age(busy, 0)
    out = _ok(project.cli("prune", "--stale"))
    assert not broken.exists() and not foreign.exists(), out
    assert "torch 1.0.0" in out, out
    assert busy.exists() and "use --force" in out, out
    assert good.exists() and project.package("f").exists(), out


# ------------------------------------------------------- in-process, no compile


def test_stats_reads_the_file_the_plugin_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from precompile import cli

    path = tmp_path / "stats.json"
    stats = {"hits": 2, "misses": 1, "saves": 1, "frames_traced": 3, "bypasses": 0,
             "load_errors": 0, "load_seconds": 0.5, "miss_reasons": ["m:f: first compile"]}
    cli.write_stats_file(str(path), stats, source="pytest")
    monkeypatch.setenv("PRECOMPILE_STATS_FILE", str(path))
    assert cli.main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "precompile: 2 hits, 1 misses, 1 saves, frames traced 3" in out, out
    assert "miss: m:f: first compile" in out, out
    assert cli.main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["hits"] == 2
    assert cli.main(["stats", "--file", str(tmp_path / "missing.json")]) == 2
    monkeypatch.delenv("PRECOMPILE_STATS_FILE")
    assert cli.main(["stats"]) == 0
    assert "per process" in capsys.readouterr().out


def test_size_and_age_arguments() -> None:
    from precompile.cli import parse_age, parse_size

    assert parse_size("0") == 0
    assert parse_size("500M") == 500 << 20
    assert parse_size("2G") == parse_size("2GiB") == 2 << 30
    assert parse_size("1.5k") == 1536
    assert parse_age("7d") == 7 * 86400 and parse_age("12h") == 43200 and parse_age("90") == 90
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_export_then_import_into_an_empty_cache(project: Project, tmp_path: Path) -> None:
    archive = tmp_path / "cache.tar.gz"
    out = json.loads(_ok(project.cli("export", str(project.cache), str(archive), "--json")))
    assert out["packages"] == 2 and archive.exists()
    fresh = tmp_path / "fresh-cache"
    out = json.loads(_ok(project.cli("import", str(archive), "--cache", str(fresh), "--json")))
    assert out["imported"] == 2 and out["skipped"] == []
    assert sorted(p.name for p in fresh.glob("*.pcpkg")) == sorted(
        p.name for p in project.cache.glob("*.pcpkg"))
    # importing again changes nothing: the cache already has these packages
    out = json.loads(_ok(project.cli("import", str(archive), "--cache", str(fresh), "--json"),
                         rc=1))
    assert out["imported"] == 0 and len(out["skipped"]) == 2


# ------------------------------------------- import: streamed, verified, all or nothing


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _pkg(saved: float, filler: bytes = b"", fn: str = "f") -> bytes:
    """A package for ``m:<fn>``, bound to ``_key(fn)``."""
    from precompile.format import envelope as fmt

    return fmt.encode({"saved": saved, "function": f"m:{fn}",
                       "factors": {"function": f"m:{fn}"}}, {"filler": filler}, {})


def _key(fn: str = "f") -> str:
    from precompile.package.keys import package_key

    return package_key({"function": f"m:{fn}"})


@pytest.fixture
def import_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PRECOMPILE_CACHE_URL", "PRECOMPILE_SIGNING_KEY",
                 "PRECOMPILE_TRUST_SHARED_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRECOMPILE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _import(archive: Path, *extra: str) -> int:
    from precompile import cli

    return cli.main(["import", str(archive), *extra])


def test_import_of_a_truncated_archive_is_an_error_and_imports_nothing(
        import_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = _archive(import_env / "a.tar.gz",
                     {f"k{i}.pcpkg": _pkg(i, os.urandom(20000), f"k{i}") for i in range(3)})
    cut = import_env / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    assert _import(cut) == 2
    assert "truncated" in capsys.readouterr().err
    assert not list((import_env / "cache").glob("*.pcpkg"))


def test_import_with_one_bad_package_imports_none(import_env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = bytearray(_pkg(2))
    bad[-40] ^= 1
    archive = _archive(import_env / "a.tar.gz", {"good.pcpkg": _pkg(1), "bad.pcpkg": bytes(bad),
                                                 "README": b"not a package"})
    assert _import(archive) == 2
    err = capsys.readouterr().err
    assert "bad.pcpkg is not a usable package" in err and "nothing was imported" in err, err
    assert not list((import_env / "cache").glob("*.pcpkg"))


def test_import_caps_member_size(import_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _archive(import_env / "a.tar.gz", {"big.pcpkg": _pkg(1, b"x" * 5000)})
    assert _import(archive, "--max-package-size", "1k") == 2
    assert "over the 1024-byte cap" in capsys.readouterr().err
    assert _import(archive, "--max-package-size", "1M", "--json") == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 1


def test_import_puts_back_what_it_replaced_when_the_store_fails(
        import_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cache_backends.local import LocalDirBackend
    from precompile.errors import StoreError

    cache = LocalDirBackend(import_env / "cache")
    cache.put(_key("a"), _pkg(1, fn="a"))
    archive = _archive(import_env / "a.tar.gz", {"a.pcpkg": _pkg(5, fn="a"),
                                                 "b.pcpkg": _pkg(5, fn="b")})
    real_put = LocalDirBackend.put

    def put(self: LocalDirBackend, key: str, data: bytes) -> None:
        if key == _key("b"):
            raise StoreError("disk full")
        real_put(self, key, data)

    monkeypatch.setattr(LocalDirBackend, "put", put)
    assert _import(archive) == 2
    assert "disk full" in capsys.readouterr().err
    assert cache.get(_key("a")) == _pkg(1, fn="a") and cache.get(_key("b")) is None


def test_verify_verbose_prints_every_problem_with_its_diff(capsys: pytest.CaptureFixture[str]) -> None:
    """``verify -v``: the verdict line carries the first problem's first line; its diff and
    every further problem, first line included, follow (a second problem's first line was
    once never printed)."""
    from precompile.cli import text
    result = {"key": "k1", "function": "m:f", "status": "stale", "ok": False, "notes": ["n1"],
              "problems": ["m.py lines 1-2 (f) changed\n-a\n+b", "m.py lines 8-9 (h) changed\n-c\n+d"]}
    text.print_verify([result], "cache", verbose=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("STALE") and out[0].endswith("m.py lines 1-2 (f) changed (+1 more)")
    assert out[1:7] == ["    -a", "    +b", "  - m.py lines 8-9 (h) changed", "    -c", "    +d",
                        "    note: n1"], out
