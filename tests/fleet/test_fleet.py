"""Serving fleets: warm every bucket of a spec ahead of time, gate on coverage, serve from a
baked read-only cache; each step in its own fresh process, as CI and replicas run them."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Scenario
from conftest import run_cli as _cli

# The user's code: a function and an nn.Module, each behind a zero-argument factory. The
# warm-up builds the module on the meta device (no weights at all); replicas build it with
# real (seeded) weights.
MODELS = """
import torch, precompile

def step(x, w, scale=1.0):
    return torch.nn.functional.gelu(x @ w).sum(-1) * scale

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(16, 32)
        self.l2 = torch.nn.Linear(32, 4)
    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))

def make_step():
    return precompile.cached(step, backend="aot_eager")

def broken(x):
    y = x.sin()
    torch._dynamo.graph_break()
    return y.cos()

def make_broken():
    return precompile.cached(broken, backend="aot_eager")

def make_net(meta=True):
    if meta:
        with torch.device("meta"):
            return precompile.cached(Net(), backend="aot_eager")
    torch.manual_seed(0)
    return precompile.cached(Net(), backend="aot_eager")
"""

# Three buckets each: a static one under no_grad, one with a dynamic dim (range 2..64) under
# grad mode, one under inference mode (a new dtype and a kwarg for the function).
STEP_SPEC = {"signatures": [
    {"name": "b4", "mode": "no_grad", "inputs": [{"shape": [4, 16]}, {"shape": [16, 8]}]},
    {"name": "dyn", "inputs": [
        {"shape": [8, 16], "dynamic": [{"dim": 0, "min": 2, "max": 64}],
         "requires_grad": True}, {"shape": [16, 8]}]},
    {"name": "f64", "mode": "inference", "kwargs": {"scale": {"value": 2.0}},
     "inputs": [{"shape": [4, 16], "dtype": "float64"}, {"shape": [16, 8], "dtype": "float64"}]},
]}
NET_SPEC = {"signatures": [
    {"name": "b4", "mode": "no_grad", "inputs": [{"shape": [4, 16]}]},
    {"name": "dyn", "inputs": [{"shape": [8, 16], "dynamic": [{"dim": 0, "min": 2, "max": 64}]}]},
    {"name": "inf", "mode": "inference", "inputs": [{"shape": [3, 16]}]},
]}

WARMUP = """
import json, precompile, models
EXTRA = {}

def run():
    for name, factory, spec in (("step", models.make_step, "step.json"),
                                ("net", models.make_net, "net.json")):
        EXTRA[name] = precompile.warmup(factory(), spec).to_dict()
    return []
"""

# A replica: real weights, every bucket at sizes the spec covers, results against eager.
SERVE = """
import torch, precompile, models

def run():
    out = []
    step, net = models.make_step(), models.make_net(meta=False)
    eager_net = net._precompile.target
    w = torch.randn(16, 8)
    with torch.no_grad():
        x = torch.randn(4, 16)
        out += [("step b4", step(x, w), models.step(x, w)), ("net b4", net(x), eager_net(x))]
    for n in (8, 33, 64):
        x = torch.randn(n, 16, requires_grad=True)
        out.append((f"step dyn {n}", step(x, w), models.step(x, w)))
        out.append((f"net dyn {n}", net(x.detach()), eager_net(x.detach())))
    with torch.inference_mode():
        x, w64 = torch.randn(4, 16, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
        out.append(("step f64", step(x, w64, scale=2.0), models.step(x, w64, scale=2.0)))
        x = torch.randn(3, 16)
        out.append(("net inf", net(x), eager_net(x)))
    return out
"""


def _fleet(scenario: Scenario) -> tuple[Scenario, Scenario]:
    root = scenario.root
    (root / "models.py").write_text(textwrap.dedent(MODELS))
    (root / "step.json").write_text(json.dumps(STEP_SPEC))
    (root / "net.json").write_text(json.dumps(NET_SPEC))
    warm_up = Scenario(root, "warm_up").write(WARMUP)
    serve = Scenario(root, "serve").write(SERVE)
    return warm_up, serve


def _counts(run_extra: dict, name: str) -> dict[str, int]:
    report = run_extra[name]
    assert report["ok"], report
    return report["counts"]


def test_warmup_then_a_fresh_replica_serves_every_bucket_warm(scenario: Scenario) -> None:
    warm_up, serve = _fleet(scenario)
    first = warm_up.run("cold").assert_ok()
    extra = first.result["extra"]
    assert _counts(extra, "step") == {"compiled": 3, "covered": 0, "failed": 0}, extra
    # the dynamic bucket's entry also covers the other static-size calls: at most 3 compiled
    assert _counts(extra, "net")["failed"] == 0 and extra["net"]["materialized"], extra
    assert "precompile warmup [" in first.stderr and "3/3" in first.stderr
    assert len(scenario.packages()) == 2
    serve.run("warm").assert_warm()
    again = warm_up.run("cold").assert_ok()  # a rerun finds everything covered
    for name in ("step", "net"):
        assert _counts(again.result["extra"], name)["compiled"] == 0, again.result["extra"]
        assert _counts(again.result["extra"], name)["covered"] == 3
    assert again.frames == 0 and again.stats["saves"] == 0, again.describe()


def test_coverage_gate_from_the_command_line(scenario: Scenario) -> None:
    _fleet(scenario)
    root = scenario.root
    before = _cli(root, "coverage", "models:make_step", "--spec", "step.json")
    assert before.returncode == 1, before.stderr
    assert "no package under key" in before.stdout and "MISS" in before.stdout
    warm = _cli(root, "warmup", "models:make_step", "--spec", "step.json", "--json")
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["counts"] == {"compiled": 3, "covered": 0, "failed": 0}
    covered = _cli(root, "coverage", "models:make_step", "--spec", "step.json", "--json")
    assert covered.returncode == 0, covered.stdout + covered.stderr
    doc = json.loads(covered.stdout)
    assert doc["counts"]["covered"] == 3 and doc["ok"], doc
    # A bucket outside the dynamic range, and a dtype nothing was compiled for.
    wider = {"signatures": [
        {"name": "long", "inputs": [{"shape": [128, 16], "requires_grad": True},
                                    {"shape": [16, 8]}]},
        {"name": "half", "mode": "no_grad",
         "inputs": [{"shape": [4, 16], "dtype": "bfloat16"}, {"shape": [16, 8]}]},
        {"name": "b4", "mode": "no_grad", "inputs": [{"shape": [4, 16]}, {"shape": [16, 8]}]}]}
    (root / "wider.json").write_text(json.dumps(wider))
    miss = _cli(root, "coverage", "models:make_step", "--spec", "wider.json")
    assert miss.returncode == 1, miss.stdout + miss.stderr
    lines = miss.stdout.splitlines()
    assert any(ln.strip().startswith("COVERED") and "b4:" in ln for ln in lines), miss.stdout
    assert "2 <= L['x'].size()[0] <= 64" in miss.stdout, miss.stdout  # the failing guard
    assert "dtype mismatch. expected Float, actual BFloat16" in miss.stdout, miss.stdout
    bad = _cli(root, "coverage", "models:make_step", "--spec", "missing.json")
    assert bad.returncode == 2 and "cannot read the spec" in bad.stderr


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make a cache directory read-only the way an image layer is, even for root (who
    ignores permission bits): the immutable attribute, else plain permissions."""
    paths = [path, path / ".locks", *path.glob("*.pcpkg"), *(path / ".locks").iterdir()]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", *map(str, paths)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i: cannot make a read-only dir")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)
        return
    for p in (path, path / ".locks"):
        p.chmod(0o500)
    try:
        yield
    finally:
        for p in (path, path / ".locks"):
            p.chmod(0o700)


SERVE_NEW_BUCKET = """
import torch, precompile, models

def run():
    step = models.make_step()
    w = torch.randn(16, 8)
    with torch.no_grad():
        x = torch.randn(4, 16)
        out = [("b4", step(x, w), models.step(x, w))]
        x = torch.randn(5, 16, dtype=torch.float64)      # not baked: compiles here
        out.append(("new", step(x, w.double()), models.step(x, w.double())))
    return out
"""


def test_baked_read_only_cache_under_a_writable_overlay(scenario: Scenario) -> None:
    warm_up, _ = _fleet(scenario)
    baked, overlay = scenario.root / "baked", scenario.root / "overlay"
    warm_up.run("cold", PRECOMPILE_CACHE_DIR=str(baked)).assert_ok()
    replica = Scenario(scenario.root, "replica").write(SERVE_NEW_BUCKET)
    replica.env_extra["PRECOMPILE_CACHE_URL"] = f"{overlay},{baked}"
    with _read_only(baked):
        first = replica.run("cold").assert_ok()
        assert first.stats["hits"] == 1 and first.frames == 1, first.describe()
        assert (f"cache tier 2 ({baked}) is read-only: writes go to tier 1 ({overlay})"
                in first.stderr), first.stderr
        assert "failed to" not in first.stderr and "writable directory" not in first.stderr
        assert [p.name for p in overlay.glob("*.pcpkg")], "the new bucket went nowhere"
        replica.run("warm").assert_warm()


def test_frames_after_a_graph_break_are_reported_unchecked(scenario: Scenario) -> None:
    _fleet(scenario)
    root = scenario.root
    (root / "one.json").write_text(json.dumps({"signatures": [{"inputs": [{"shape": [3]}]}]}))
    warm = _cli(root, "warmup", "models:make_broken", "--spec", "one.json", "--json")
    assert json.loads(warm.stdout)["counts"]["compiled"] == 1, warm.stdout + warm.stderr
    cov = _cli(root, "coverage", "models:make_broken", "--spec", "one.json")
    assert cov.returncode == 0, cov.stdout + cov.stderr
    assert "UNCHECKED" in cov.stdout and "after graph breaks" in cov.stdout, cov.stdout
    assert "broken" in cov.stdout.split("after graph breaks")[1], cov.stdout  # names it
    strict = _cli(root, "coverage", "models:make_broken", "--spec", "one.json", "--strict")
    assert strict.returncode == 1, strict.stdout
    again = _cli(root, "warmup", "models:make_broken", "--spec", "one.json", "--json")
    assert json.loads(again.stdout)["counts"] == {"compiled": 0, "covered": 1, "failed": 0}


def test_spec_errors_name_the_field() -> None:
    from precompile.errors import SpecError
    from precompile.fleet.signatures import parse_spec

    cases = [
        ({"signatures": [{"inputs": [{"shape": [2], "dtype": "flaot32"}]}]},
         "signatures[0].inputs[0].dtype: 'flaot32' is not a torch dtype"),
        ({"signatures": [{"inputs": [{"shape": [1, 4], "dynamic": [0]}]}]},
         "example size must be at least 2"),
        ({"signatures": [{"mode": "eval", "inputs": []}]}, "mode: must be one of"),
        ({"signatures": [{"inputs": [{"shape": [2], "colour": 1}]}]}, "unknown field(s)"),
        ({"signatures": []}, "must be a non-empty list"),
    ]
    for doc, message in cases:
        with pytest.raises(SpecError) as info:
            parse_spec(doc)
        assert message in str(info.value), str(info.value)


def test_read_only_tier_keeps_serving_reads(caplog: pytest.LogCaptureFixture) -> None:
    """A read-only tier is not a failed one: reads still reach it after a write to it
    failed (a failed tier would be skipped for retry_after seconds), one warning."""
    from cache_backends import MemoryBackend, TieredBackend
    from precompile.errors import ReadOnlyStoreError

    class Baked(MemoryBackend):
        def put(self, key: str, data: bytes) -> None:
            raise ReadOnlyStoreError("read-only")

        @contextlib.contextmanager
        def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
            raise ReadOnlyStoreError("read-only")
            yield

    baked = Baked()
    MemoryBackend.put(baked, "a", b"baked a")
    MemoryBackend.put(baked, "b", b"baked b")
    overlay = MemoryBackend()
    store = TieredBackend([overlay, baked], retry_after=3600)
    with caplog.at_level(logging.WARNING, logger="precompile"):
        store.put("new", b"compiled here")
        with store.lock("new", timeout=1):
            pass
        store.put("new2", b"again")
    assert store.get("b") == b"baked b" and overlay.get("new") == b"compiled here"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tier 2" in warnings[0] and "read-only" in warnings[0]
    assert "writes go to tier 1" in warnings[0], warnings
