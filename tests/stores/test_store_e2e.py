"""Warm starts through every store, in fresh processes: each store serves a warm start,
eight writers end with every entry, and a dead Redis server is one warning with results
still right."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import DRIVER, Scenario, scrubbed_environ
from redis_server import RedisServer, redis_server  # noqa: F401 - the session fixture

VIA_STORE = """
import json, os, torch, precompile

STORE = json.loads(os.environ["STORE"])

@precompile.cached(backend="eager", store=STORE, dynamic=False, single_flight=False)
def f(x):
    y = x.sin() + 1
    print("graph break")
    return y * x.shape[0]

def run():
    sizes = json.loads(os.environ.get("SIZES", "[4]"))
    out = []
    for n in sizes:
        x = torch.randn(n)
        out.append((str(n), f(x), (x.sin() + 1) * n))
    return out
"""


@pytest.mark.parametrize("kind", ["redis", "fsspec-local", "tiered"])
def test_warm_start_through_each_store(scenario: Scenario, redis_server: RedisServer,
                                       kind: str) -> None:
    redis_url = f"{redis_server.url}?namespace=e2e-{kind}-{os.getpid()}"
    spec = {"redis": redis_url,
            "fsspec-local": f"local://{scenario.root / 'objects'}",
            "tiered": [str(scenario.root / "tier0"), redis_url]}[kind]
    scenario.write(VIA_STORE)
    cold = scenario.run("cold", STORE=json.dumps(spec)).assert_ok()
    assert cold.stats["saves"] >= 1 and cold.stats["hits"] == 0
    warm = scenario.run("warm", STORE=json.dumps(spec)).assert_warm()
    if kind == "tiered":
        # a fresh local tier is refilled from the remote one
        import shutil

        shutil.rmtree(scenario.root / "tier0")
        scenario.run("warm", STORE=json.dumps(spec)).assert_warm()
        assert any((scenario.root / "tier0").glob("*.pcpkg"))
    assert warm.stats["misses"] == 0


def test_dead_redis_warns_once_and_results_stay_right(scenario: Scenario) -> None:
    from redis_server import free_port

    scenario.write(VIA_STORE)
    spec = json.dumps(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    run = scenario.run("cold", STORE=spec, SIZES="[3, 5]").assert_ok()
    warnings = [ln for ln in run.stderr.splitlines() if "WARNING" in ln and "redis" in ln]
    assert 1 <= len(warnings) <= 2, run.stderr  # one for reading, at most one for writing
    assert run.stats["saves"] == 0


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_eight_writers_end_with_every_entry(scenario: Scenario) -> None:
    """8 processes compile the same function (different static shapes) and save at once."""
    scenario.write(VIA_STORE)
    spec = json.dumps(str(scenario.cache))
    env = scrubbed_environ(STORE=spec, PRECOMPILE_LOG="info")
    procs = [subprocess.Popen([sys.executable, str(DRIVER), str(scenario.path), "cold"],
                              env=dict(env, SIZES=f"[{n}]"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for n in range(2, 10)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert len(scenario.packages()) == 1
    warm = scenario.run("warm", STORE=spec, SIZES=json.dumps(list(range(2, 10))))
    warm.assert_warm()
