"""Globals holding what a function marked ``assume_constant_result`` answered (transformers'
``is_torch_greater_or_equal("2.9.0")``, ``is_mambapy_available()``): Dynamo calls the
function while tracing and places the answer in the frame's globals for the bytecode. A
warm process asks the same question again (precompile/constant_calls.py) and installs the
entry only when the answer is the same. Fresh processes, one cache."""
from __future__ import annotations

from conftest import Scenario
from conftest import run_cli as _cli

# A library's probe, marked constant the way transformers marks its own (an attribute, so
# the library need not import torch), behind lru_cache: Dynamo calls the inner function.
PROBES = """
import functools, os

def _compile_constant(fn):
    fn._dynamo_marked_constant = True
    return fn

@functools.lru_cache
@_compile_constant
def has_feature(name):
    return os.environ.get("FEATURE", "fast") == name
"""

USER = """
import torch
from probes import has_feature

def f(x):
    use = has_feature("fast")
    y = x * 2 if use else x - 1
    torch._dynamo.graph_break()
    return y + 1, use

def run():
    import precompile
    x = torch.randn(4)
    got = precompile.cached(f, backend="aot_eager")(x)
    return [("f", got, f(x))]
"""


def _scenario(scenario: Scenario) -> Scenario:
    (scenario.root / "probes.py").write_text(PROBES)
    return scenario.write(USER)


def test_a_marked_constant_answer_is_asked_again_and_warm_starts(scenario: Scenario) -> None:
    sc = _scenario(scenario)
    cold = sc.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    warm = sc.run("warm").assert_warm()
    assert warm.stats["misses"] == 0, warm.describe()
    shown = _cli(sc.root, "inspect", *map(str, sc.packages()))
    assert "asks     probes:has_feature('fast') == True" in shown.stdout, shown.stdout


def test_a_different_answer_leaves_the_entry_out(scenario: Scenario) -> None:
    sc = _scenario(scenario)
    sc.run("cold").assert_ok()
    other = sc.run("cold", FEATURE="slow").assert_ok()  # compiles again: eager's answer
    reasons = " ".join(other.stats["miss_reasons"])
    assert "probes:has_feature('fast') returns False here" in reasons, other.describe()
    assert "compiled for True" in reasons, other.describe()
