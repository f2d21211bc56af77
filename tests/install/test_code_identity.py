"""Stored bytecode runs on this process's own code objects: an installed entry applies to
every function object that reaches its code, however the function was made.

Two ways a warm process used to trace again with every entry installed
(``identity.bytecode.share_nested_code``, ``install.bytecode_globals._RESUME_CODES``):
- a compiled frame that *defines* a function (a hook, a closure) makes it from a code
  object of Dynamo's bytecode; decoded from a package that is an equal copy, not the
  original code the nested function's own entries are installed on;
- two compiled functions that call one library function with a graph break (a shared
  decorator) share its resume function in the compiling process, so the second one may run
  on the first one's entry and record none; its package's copy of the resume function then
  held no entry in a later process.
Each scenario runs cold, then warm in a fresh process: nothing traced, eager's results.
"""
from __future__ import annotations

from conftest import Scenario

NESTED_FUNCTION = """
import torch, precompile

def forward(x):
    scale = x.shape[-1]

    def hook(y):  # compiled as its own frame: the graph break stops Dynamo inlining it
        y = y * scale
        torch._dynamo.graph_break()
        return y + 1

    return hook(x.sin())

compiled = precompile.cached(torch.compile(forward, backend="eager"))

def run():
    x = torch.linspace(-1.0, 1.0, 8).reshape(2, 4)
    return [("out", compiled(x), forward(x))]
"""

SHARED_RESUME = """
import torch, precompile

def library_step(x, flag):  # a library decorator's body both models run through
    y = x.sin() if flag else x.cos()
    torch._dynamo.graph_break()
    return y * 2

def first(x):
    return library_step(x, True) + 1

def second(x):
    return library_step(x, False) - 1

compiled = [precompile.cached(torch.compile(f, backend="eager")) for f in (first, second)]

def run():
    x = torch.linspace(-1.0, 1.0, 8).reshape(2, 4)
    return [(f.__name__, c(x), f(x)) for c, f in zip(compiled, (first, second))]
"""


def test_a_function_made_by_stored_bytecode_runs_on_installed_entries(
        scenario: Scenario) -> None:
    scenario.write(NESTED_FUNCTION)
    _, warm = scenario.cold_then_warm()
    warm.assert_warm()


def test_packages_share_a_resume_function_the_compiling_process_shared(
        scenario: Scenario) -> None:
    scenario.write(SHARED_RESUME)
    _, warm = scenario.cold_then_warm()
    warm.assert_warm()
