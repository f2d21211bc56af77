"""Whatever stands between a process and a warm start is a clean miss, in fresh processes on
one cache: changed code misses with the reason (never runs stale kernels); a damaged,
foreign, unsigned or wrongly signed package, or a cache others could write or nobody can,
falls back to compiling with a logged warning, and a good package replaces a bad one; a
signal mid-write leaves whole packages; strict mode raises on a miss; a single package file
saved by one process loads in another, and ``precompile.load`` raises typed errors (another
torch's package among them)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Scenario, scrubbed_environ

EDITABLE = """
import torch, precompile

def helper(x):
    return x * {helper_factor}

@precompile.cached(backend="eager")
def f(x):
    return helper(x).sin() + {main_term}

def run():
    x = torch.arange(6.0)
    return [("f", f(x), (x * {helper_factor}).sin() + {main_term})]
"""


def _edit(scenario: Scenario, helper_factor: str = "3", main_term: str = "1") -> None:
    scenario.write(EDITABLE.format(helper_factor=helper_factor, main_term=main_term))


def test_editing_the_function_misses_with_reason(scenario: Scenario) -> None:
    _edit(scenario)
    scenario.run("cold").assert_ok()
    _edit(scenario, main_term="2")
    run = scenario.run("cold").assert_ok()  # results equal eager of the *new* code
    assert run.frames == 1 and run.stats["hits"] == 0
    reasons = " ".join(run.stats["miss_reasons"])
    assert "source of user_mod:f changed" in reasons, reasons
    scenario.run("warm").assert_warm()  # the new package is used next time


def test_editing_an_inlined_helper_names_file_and_lines(scenario: Scenario) -> None:
    _edit(scenario)
    scenario.run("cold").assert_ok()
    _edit(scenario, helper_factor="5")
    run = scenario.run("cold").assert_ok()
    assert run.frames == 1 and run.stats["hits"] == 0
    reasons = "\n".join(run.stats["miss_reasons"])
    assert "user_mod.py lines 4-5 (helper) changed" in reasons, reasons
    assert "+    return x * 5" in reasons, reasons
    scenario.run("warm").assert_warm()
    assert len(scenario.packages()) == 1  # the stale package was replaced, not kept beside


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        pos = len(data) // 3
        path.write_bytes(data[:pos] + bytes([data[pos] ^ 0x40]) + data[pos + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        path.write_bytes(b"\x80\x04K\x01." + os.urandom(64))


# One damage in the quick tier: the others take the same fallback path (the read path's
# own tests, tests/read and tests/format, refuse each kind of damage in-process).
@pytest.mark.parametrize("how", ["truncated", *(pytest.param(h, marks=pytest.mark.slow)
                                               for h in ("flipped", "empty", "foreign"))])
def test_bad_package_falls_back_and_is_replaced(scenario: Scenario, how: str) -> None:
    _edit(scenario)
    scenario.run("cold").assert_ok()
    [pkg] = scenario.packages()
    _damage(pkg, how)
    run = scenario.run("cold").assert_ok()
    assert run.frames == 1 and run.stats["load_errors"] == 1
    assert "precompile:" in run.stderr and "WARNING" in run.stderr, run.stderr
    scenario.run("warm").assert_warm()


SAVE_LOAD = """
import os, sys, torch, precompile

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 3)
    def forward(self, x):
        y = self.lin(x).relu()
        print("break")
        return y * 2

def run():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(2, 6)
    path = os.environ["PKG_FILE"]
    if os.environ.get("MODE") == "save":
        compiled = precompile.cached(torch.compile(net, backend="aot_eager"), store="memory://")
        with torch.no_grad():
            out = compiled(x)
        precompile.save(compiled, path)
    else:
        loaded = precompile.load(net, path)
        with torch.no_grad():
            out = loaded(x)
    with torch.no_grad():
        ref = net.lin(x).relu() * 2
    return [("out", out, ref)]
"""


def test_save_and_load_a_package_file(scenario: Scenario, tmp_path: Path) -> None:
    scenario.write(SAVE_LOAD)
    pkg_file = tmp_path / "net.pcpkg"
    scenario.run("cold", PKG_FILE=str(pkg_file), MODE="save").assert_ok()
    assert pkg_file.exists() and not scenario.packages()
    scenario.run("warm", PKG_FILE=str(pkg_file), MODE="load").assert_warm()


def test_load_raises_typed_errors(tmp_path: Path) -> None:
    import precompile
    from precompile.errors import FormatError, IntegrityError, PackageError, StoreError

    def fn(x):
        return x + 1

    bad = tmp_path / "bad.pcpkg"
    bad.write_bytes(b"not a package at all, just some bytes" * 3)
    with pytest.raises(FormatError):
        precompile.load(fn, bad)
    with pytest.raises(StoreError):
        precompile.load(fn, tmp_path / "missing.pcpkg")
    from precompile.format import envelope as fmt

    good = fmt.encode({"factors": {}}, {"frames": []}, {})
    flipped = bytearray(good)
    flipped[20] ^= 1
    bad.write_bytes(bytes(flipped))
    with pytest.raises(IntegrityError):
        precompile.load(fn, bad)
    assert issubclass(IntegrityError, PackageError)


SLOW = """
import os, time, torch, precompile

@precompile.cached(backend="eager")
def f(x):
    return x.cos() * 4

def run():
    x = torch.ones(3)
    out = f(x)
    print("READY", flush=True)
    time.sleep(120)     # the test stops us with SIGTERM here
    return [("f", out, x.cos() * 4)]
"""


def test_sigterm_leaves_a_complete_package(scenario: Scenario) -> None:
    scenario.write(SLOW)
    env = scrubbed_environ(PRECOMPILE_CACHE_DIR=str(scenario.cache),
                           TORCHINDUCTOR_CACHE_DIR=str(scenario.inductor))
    from conftest import DRIVER

    proc = subprocess.Popen([sys.executable, str(DRIVER), str(scenario.path), "cold"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.time() + 120
    for line in proc.stdout:
        if "READY" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # still dies of SIGTERM, as schedulers expect
    assert len(scenario.packages()) == 1
    scenario.write(SLOW.replace("time.sleep(120)", "pass"))
    scenario.run("warm").assert_warm()


@pytest.mark.parametrize("what", [pytest.param("dir", marks=pytest.mark.slow), "file"])
def test_world_writable_cache_is_refused_with_a_way_out(scenario: Scenario, what: str) -> None:
    _edit(scenario)
    scenario.run("cold").assert_ok()
    [pkg] = scenario.packages()
    os.chmod(scenario.cache if what == "dir" else pkg, 0o777 if what == "dir" else 0o666)
    run = scenario.run("cold").assert_ok()
    assert run.frames == 1 and run.stats["hits"] == 0
    assert "PRECOMPILE_TRUST_SHARED_CACHE=1" in run.stderr and "world-writable" in run.stderr
    scenario.run("warm", PRECOMPILE_TRUST_SHARED_CACHE="1").assert_warm()


STRICT = """
import torch, precompile

@precompile.cached(backend="eager")
def f(x):
    return x + 1

def run():
    x = torch.ones(2)
    return [("f", f(x), x + 1)]
"""


def test_strict_mode_raises_on_a_miss(scenario: Scenario) -> None:
    scenario.write(STRICT)
    run = scenario.run("cold", PRECOMPILE_STRICT="1")
    assert run.returncode != 0 and "strict mode: cache miss" in run.stderr, run.describe()
    scenario.run("cold").assert_ok()
    scenario.run("warm", PRECOMPILE_STRICT="1").assert_warm()


KILLED = """
import os, signal, torch, precompile
from cache_backends import local

@precompile.cached(backend="eager", dynamic=False)
def f(x):
    return x * 2

def run():
    if os.environ.get("KILL_MID_WRITE"):
        real_fsync = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)   # killed after writing, before the rename
        local.os.fsync = die
    x = torch.ones(int(os.environ.get("N", "3")))
    out = f(x)
    precompile.flush()
    return [("f", out, x * 2)]
"""


def test_sigkill_mid_write_keeps_previous_package(scenario: Scenario) -> None:
    scenario.write(KILLED)
    scenario.run("cold").assert_ok()
    [pkg] = scenario.packages()
    before = pkg.read_bytes()
    run = scenario.run("cold", KILL_MID_WRITE="1", N="5")  # a new entry: rewrite the package
    assert run.returncode == -9, run.describe()
    assert pkg.read_bytes() == before  # the old package is untouched
    leftovers = [p for p in scenario.cache.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) <= 1
    from cache_backends.local import LocalDirBackend

    assert LocalDirBackend(scenario.cache).clean_temp_files(older_than=0) == len(leftovers)
    scenario.run("warm").assert_warm()  # the previous package still loads


def test_signed_packages(scenario: Scenario) -> None:
    """With a key set, unsigned or wrongly signed packages are refused before anything in
    them is unpickled; the call compiles normally and a signed package replaces them."""
    _edit(scenario)
    scenario.run("cold").assert_ok()  # unsigned
    run = scenario.run("cold", PRECOMPILE_SIGNING_KEY="k1").assert_ok()
    assert run.frames == 1 and run.stats["load_errors"] == 1
    assert "not signed" in " ".join(run.stats["miss_reasons"])
    scenario.run("warm", PRECOMPILE_SIGNING_KEY="k1").assert_warm()
    run = scenario.run("cold", PRECOMPILE_SIGNING_KEY="other-key").assert_ok()
    assert run.frames == 1 and "signature does not match" in " ".join(run.stats["miss_reasons"])
    with pytest.raises(Exception):
        scenario.run("warm", PRECOMPILE_SIGNING_KEY="k1", PRECOMPILE_STRICT="1").assert_warm()


def test_unwritable_cache_warns_once_and_runs(scenario: Scenario, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    scenario.write(GRAPH_BREAK_TWO_FUNCTIONS)
    run = scenario.run("cold", PRECOMPILE_CACHE_DIR=str(blocker / "cache")).assert_ok()
    assert run.stats["saves"] == 0
    warnings = [ln for ln in run.stderr.splitlines() if "cannot" in ln and "WARNING" in ln]
    assert len(warnings) == 1, run.stderr  # once, not per function or per save


GRAPH_BREAK_TWO_FUNCTIONS = """
import torch, precompile

@precompile.cached(backend="eager")
def f(x):
    y = x + 1
    print("break")
    return y * 2

@precompile.cached(backend="eager")
def g(x):
    return x - 1

def run():
    x = torch.ones(3)
    return [("f", f(x), (x + 1) * 2), ("g", g(x), x - 1), ("f2", f(x * 2), (x * 2 + 1) * 2)]
"""


def test_load_refuses_another_torch_version(tmp_path: Path) -> None:
    import precompile
    from precompile.format import envelope as fmt
    from precompile.errors import IncompatibleError

    def fn(x):
        return x + 1

    from precompile import _torch

    info = _torch.system_info()
    python = f"{info['python_impl']}-{info['python']}"
    path = tmp_path / "old.pcpkg"
    path.write_bytes(fmt.encode({"factors": {"python": python, "torch": "2.9.0"}},
                                {"frames": [], "artifacts": {}}, {}))
    with pytest.raises(IncompatibleError, match="torch 2.9.0"):
        precompile.load(fn, path)
