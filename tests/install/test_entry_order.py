"""Many installed entries on one function: every bucket hits in any call order, the order
entries are checked in follows the hits, and a bucket no entry accepts still compiles."""
from __future__ import annotations

from conftest import Scenario

BUCKETS = """
import os, random
import torch, precompile

torch._dynamo.config.recompile_limit = 64

def step(x):
    return torch.tanh(x) * 2.0 + x.sum(0)

f = precompile.cached(step, backend="eager", dynamic=False)
SIZES = [1, 2, 3, 5, 8, 13]

def first_entry_accepts(x):
    # the entry Dynamo checks first on this code object
    from torch._C._dynamo.eval_frame import _debug_get_precompile_entries
    entries = _debug_get_precompile_entries(step.__code__)
    return bool(entries) and bool(entries[0].guard_manager.check({"x": x}))

EXTRA = {}

def run():
    xs = {n: torch.randn(n, 4) for n in SIZES}
    order = list(SIZES) if os.environ.get("ORDER") != "shuffled" else random.Random(
        int(os.environ.get("SEED", "0"))).sample(SIZES, len(SIZES))
    out = [(f"n={n}", f(xs[n]), step(xs[n])) for n in order]
    if os.environ.get("HAMMER"):
        last = xs[SIZES[-1]]
        EXTRA["front_before"] = first_entry_accepts(last)
        for _ in range(400):
            f(last)
        EXTRA["front_after"] = first_entry_accepts(last)
        out += [(f"n={n} again", f(xs[n]), step(xs[n])) for n in reversed(SIZES)]
    if os.environ.get("NEW_BUCKET"):
        torch.compiler.set_stance("default")
        y = torch.randn(21, 4)
        out.append(("new bucket", f(y), step(y)))
    return out
"""


def test_every_bucket_hits_in_any_order(scenario: Scenario) -> None:
    scenario.write(BUCKETS)
    cold = scenario.run("cold").assert_ok()
    assert cold.frames == 6, cold.describe()
    scenario.run("warm", ORDER="shuffled", SEED="1").assert_warm()
    scenario.run("warm", ORDER="shuffled", SEED="2").assert_warm()


def test_hit_entry_moves_to_the_front(scenario: Scenario) -> None:
    """The entry compiled last is checked last at install; after many calls that hit it,
    it is the first one checked (the per-call cost of N entries stays flat)."""
    scenario.write(BUCKETS)
    scenario.run("cold").assert_ok()
    warm = scenario.run("warm", HAMMER="1").assert_warm()
    extra = warm.result["extra"]
    assert extra["front_before"] is False, warm.describe()
    assert extra["front_after"] is True, warm.describe()


def test_bucket_no_entry_accepts_still_compiles(scenario: Scenario) -> None:
    scenario.write(BUCKETS)
    scenario.run("cold").assert_ok()
    warm = scenario.run("warm", HAMMER="1", NEW_BUCKET="1").assert_ok()
    assert warm.frames == 1, warm.describe()
    assert warm.stats["hits"] == 1, warm.describe()
