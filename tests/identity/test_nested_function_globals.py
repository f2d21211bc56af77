"""A nested function that a compiled frame hands back is made again, in a warm process, in
its module's own namespace (transformers' output capturing registers a nested hook from
``install_output_capuring_hook``).

Dynamo's bytecode makes such a function with its module's ``__dict__`` as a constant
(``NestedUserFunctionVariable.reconstruct``), which is neither data nor a name the package
format could store. It is stored as a reference to that module's ``__dict__``: the warm
process traces nothing, and the function it gets reads the module's live globals, as plain
torch.compile's does.
"""
from __future__ import annotations

import textwrap

from conftest import Scenario

USER = """
import torch, precompile
import helper

compiled = precompile.cached(torch.compile(helper.outer, backend="eager"))

def run():
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    out, fn = compiled(x)
    ref, ref_fn = helper.outer(x)
    checks = [("out", out, ref), ("fn", fn(x), ref_fn(x))]
    helper.SCALE = 5.0  # the function reads the module's globals, not a copy of them
    checks.append(("fn_after_rebind", fn(x), ref_fn(x)))
    helper.SCALE = 3.0
    return checks
"""

HELPER = """
import torch

SCALE = 3.0

def outer(x):
    def inner(y):
        return y * SCALE + x
    return torch.sin(x), inner
"""


def test_a_returned_nested_function_warm_starts(scenario: Scenario) -> None:
    scenario.write(USER)
    (scenario.root / "helper.py").write_text(textwrap.dedent(HELPER))
    _, warm = scenario.cold_then_warm()
    warm.assert_warm()
