"""A package copied to a machine that never compiled anything (empty Inductor cache, TMPDIR
and HOME, another directory) runs with zero tracing, zero codegen and zero C++ builds."""
from __future__ import annotations

import shutil

import pytest

from conftest import Scenario

MODEL = """
import torch, precompile

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(32, 64)
        self.b = torch.nn.Linear(64, 32)
    def forward(self, x):
        return self.b(torch.nn.functional.gelu(self.a(x))).softmax(-1)

def run():
    torch.manual_seed(0)
    net = Net()
    compiled = precompile.cached(torch.compile(net))
    x = torch.randn(4, 32)
    with torch.no_grad():
        return [("out", compiled(x), net(x))]
"""


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_fresh_machine_builds_nothing(scenario: Scenario, tmp_path) -> None:
    scenario.write(MODEL)
    cold = scenario.run("cold").assert_ok()
    assert cold.result["counts"]["cpp_builds"] >= 1  # the cold run did build kernels
    # "Another machine": the project and its cache copied elsewhere, nothing else carried.
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = Scenario(other)
    moved.write(MODEL)
    shutil.copytree(scenario.cache, moved.cache)
    for d in ("tmp", "home"):
        (other / d).mkdir()
    warm = moved.run("warm", TMPDIR=str(other / "tmp"), HOME=str(other / "home"))
    warm.assert_warm()
    assert warm.result["counts"]["cpp_builds"] == 0, warm.describe()
    assert warm.result["counts"]["codegens"] == 0
    assert warm.stats["kernels_restored"] >= 1 and warm.stats["unbundled_kernels"] == []
