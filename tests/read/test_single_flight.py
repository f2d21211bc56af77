"""Single flight: processes that start cold together compile each package once, and a cold
first call waits only on a live compile lease (never the whole wait on one planted in a
shared Redis namespace)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import DRIVER, Scenario, scrubbed_environ
from redis_server import RedisServer, redis_server  # noqa: F401 - the session fixture

WORK = """
import os, time, torch, precompile

@precompile.cached(backend="aot_eager")
def f(x):
    return torch.nn.functional.gelu(x @ x.T).sum(-1)

if os.environ.get("SLOW_COMPILE"):
    # Make this process's compile slow (and optionally die in the middle of it), so the
    # others are certain to find it compiling.
    from precompile.record import recorder as _pkg
    _orig = _pkg.CompilePackage.add_guarded_code
    def _slow(self, *a, **k):
        print("COMPILING", flush=True)
        time.sleep(float(os.environ["SLOW_COMPILE"]))
        if os.environ.get("DIE_IN_COMPILE"):
            os.kill(os.getpid(), 9)
        return _orig(self, *a, **k)
    _pkg.CompilePackage.add_guarded_code = _slow

EXTRA = {}

def run():
    x = torch.randn(6, 6)
    out = f(x)
    EXTRA.update(led=precompile.stats()["led"], followed=precompile.stats()["followed"])
    return [("f", out, torch.nn.functional.gelu(x @ x.T).sum(-1))]
"""


def _start(scenario: Scenario, **env: str) -> subprocess.Popen:
    full = scrubbed_environ(PRECOMPILE_CACHE_DIR=str(scenario.cache),
                            TORCHINDUCTOR_CACHE_DIR=str(scenario.inductor), PRECOMPILE_LOG="info",
                            **env)
    return subprocess.Popen([sys.executable, str(DRIVER), str(scenario.path), "cold"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    res = json.loads(lines[-1][len("RESULT "):])
    assert all(res["checks"].values()), res
    return res


def test_four_cold_processes_compile_once(scenario: Scenario) -> None:
    scenario.write(WORK)
    procs = [_start(scenario, SLOW_COMPILE="2") for _ in range(4)]
    results = [_result(p) for p in procs]
    frames = sorted(r["frames"] for r in results)
    assert frames == [0, 0, 0, 1], frames
    assert sum(r["extra"]["led"] for r in results) == 1
    assert sum(r["extra"]["followed"] for r in results) == 3
    assert all(r["stats"]["waited_s"] > 0 for r in results if r["frames"] == 0)


def test_leader_killed_mid_compile_a_waiter_takes_over(scenario: Scenario) -> None:
    scenario.write(WORK)
    leader = _start(scenario, SLOW_COMPILE="4", DIE_IN_COMPILE="1")
    assert leader.stdout is not None
    deadline = time.time() + 120
    for line in leader.stdout:
        if "COMPILING" in line or time.time() > deadline:
            break
    waiters = [_start(scenario) for _ in range(2)]
    leader.wait(timeout=120)
    assert leader.returncode == -signal.SIGKILL
    results = [_result(p) for p in waiters]
    assert sorted(r["frames"] for r in results) == [0, 1]


def test_wait_is_bounded(scenario: Scenario) -> None:
    scenario.write(WORK)
    leader = _start(scenario, SLOW_COMPILE="20")
    assert leader.stdout is not None
    for line in leader.stdout:
        if "COMPILING" in line:
            break
    t0 = time.time()
    waiter = _start(scenario, PRECOMPILE_WAIT_TIMEOUT="1")
    res = _result(waiter)
    assert res["frames"] == 1  # gave up waiting and compiled itself
    assert time.time() - t0 < 18
    leader.kill()
    leader.wait()


@pytest.mark.slow  # the local-directory runs above pin the protocol; this one the redis lease
def test_single_flight_through_redis(scenario: Scenario, redis_server: RedisServer) -> None:
    scenario.write(WORK)
    url = f"redis://127.0.0.1:{redis_server.port}/0?namespace=sf"
    procs = [_start(scenario, SLOW_COMPILE="2", PRECOMPILE_CACHE_URL=url)
             for _ in range(3)]
    results = [_result(p) for p in procs]
    assert sorted(r["frames"] for r in results) == [0, 0, 1]


def test_a_cold_first_call_does_not_wait_on_a_planted_lease(
        scenario: Scenario, redis_server: RedisServer) -> None:
    """The proof of concept: a fresh process, a cold key whose compile lease someone planted
    (no expiry) in the shared namespace, ``PRECOMPILE_WAIT_TIMEOUT=20``."""
    from cache_backends import RedisBackend
    from precompile.read.single_flight import LEASE_SUFFIX

    ns = f"t-{uuid.uuid4().hex[:12]}"
    url = f"{redis_server.url}?namespace={ns}"
    scenario.write(WORK)
    first = scenario.run("cold", PRECOMPILE_CACHE_URL=url)
    assert first.result is not None and first.result["frames"] == 1, first.stderr[-3000:]
    st = RedisBackend(url)
    (key,) = list(st.list())
    st.delete(key)  # cold again, and now a lease nobody holds
    st.client.set(f"{ns}:v1:lock:{key}{LEASE_SUFFIX}", b"planted")
    again = scenario.run("cold", PRECOMPILE_CACHE_URL=url, PRECOMPILE_WAIT_TIMEOUT="20")
    assert again.result is not None, again.stderr[-3000:]
    assert all(again.result["checks"].values()) and again.result["frames"] == 1
    assert again.result["stats"]["waited_s"] < 2.0, again.result["stats"]
    assert "took over the lock" in again.stderr
