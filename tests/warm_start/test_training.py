"""Training: the forward and its backward both come from the package; a warm process
compiles nothing, not even at the first .backward()."""
from __future__ import annotations

import pytest

from conftest import Scenario

TRAIN = """
import torch, precompile

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.b = torch.nn.Linear(16, 4)
    def forward(self, x):
        h = torch.tanh(self.a(x))
        {maybe_break}
        return self.b(h)

def step(model, x, y):
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss.detach()

def run():
    torch.manual_seed(0)
    net = Net()
    ref = Net()
    ref.load_state_dict(net.state_dict())
    compiled = precompile.cached(torch.compile(net, backend="{backend}"){eager_backward})
    out = []
    for batch in {batches}:
        x, y = torch.randn(batch, 8), torch.randn(batch, 4)
        net.zero_grad(); ref.zero_grad()
        got = step(compiled, x, y)
        want = step(ref, x, y)
        out.append((f"loss{{batch}}", got, want))
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            out.append((f"grad-{{name}}-{{batch}}", p.grad.clone(), q.grad.clone()))
    with torch.no_grad():
        x = torch.randn(3, 8)
        out.append(("inference", compiled(x), ref(x)))
    return out
"""


def _write(scenario: Scenario, backend: str, graph_break: bool = False,
           batches: tuple = (4,), eager_backward: bool = True) -> None:
    scenario.write(TRAIN.format(
        backend=backend, batches=list(batches),
        maybe_break='print("graph break")' if graph_break else "",
        eager_backward="" if eager_backward else ", eager_backward=False"))


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])  # Inductor: C++ builds
def test_training_step_warm_compiles_nothing(scenario: Scenario, backend: str) -> None:
    _write(scenario, backend, graph_break=(backend == "aot_eager"), batches=(4, 6))
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats
    warm = scenario.run("warm").assert_warm()
    assert warm.result["counts"]["codegens"] == 0


def test_lazy_backward_mode_stores_entries_once_backward_ran(scenario: Scenario) -> None:
    _write(scenario, "aot_eager", eager_backward=False)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats
    scenario.run("warm").assert_warm()
