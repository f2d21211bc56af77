"""Warm starts the way users hit them: a cold process writes the cache, a fresh process
installs it and must trace nothing (``fail_on_recompile``), with results equal to eager."""
from __future__ import annotations

import pytest

from conftest import Scenario

PLAIN = """
import torch, precompile

@precompile.cached(backend="{backend}")
def f(x, y):
    return torch.sin(x) * y + x.sum()

def run():
    x, y = torch.randn(8, 8), torch.randn(8, 8)
    return [("f", f(x, y), torch.sin(x) * y + x.sum())]
"""


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_plain_function(scenario: Scenario, backend: str) -> None:
    scenario.write(PLAIN.format(backend=backend))
    cold = scenario.run("cold").assert_ok()
    assert cold.frames == 1 and cold.stats["saves"] == 1 and cold.stats["misses"] == 1
    assert len(scenario.packages()) == 1
    scenario.run("warm").assert_warm()


MODULE = """
import torch, precompile

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 16)
        self.norm = torch.nn.LayerNorm(16)
    def forward(self, x):
        return self.norm(x + self.fc2(torch.nn.functional.gelu(self.fc1(x))))

def run():
    torch.manual_seed(0)
    model = Block()
    compiled = precompile.cached(torch.compile(model, backend="{backend}"))
    assert isinstance(compiled, torch.nn.Module)
    x = torch.randn(4, 16)
    out = compiled(x)                       # params require grad: a training graph
    with torch.no_grad():
        out_ng = compiled(x)                # inference: a second guarded entry
    ref = model(x)
    return [("grad", out, ref), ("no_grad", out_ng, ref.detach())]
"""


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_module_via_torch_compile(scenario: Scenario, backend: str) -> None:
    scenario.write(MODULE.format(backend=backend))
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats
    warm = scenario.run("warm").assert_warm()
    if backend == "inductor":
        assert warm.result["counts"]["codegens"] == 0


GRAPH_BREAK = """
import torch, precompile

def tail_helper(z):
    z = z * 3
    torch._dynamo.graph_break()      # the helper runs as its own frames
    return z.relu()

@precompile.cached(backend="{backend}")
def f(x):
    a = torch.cos(x) + 1
    print("side effect")              # graph break: two graphs + a resume function
    b = a * torch.sin(a)
    return tail_helper(b) - 1

def eager(x):
    a = torch.cos(x) + 1
    b = a * torch.sin(a)
    return (b * 3).relu() - 1

def run():
    x = torch.randn(16)
    return [("f", f(x), eager(x)), ("f_again", f(x + 1), eager(x + 1))]
"""


# Inductor here is the slow tier (a C++ build per graph): the quick tier keeps one Inductor
# warm start, test_module_via_torch_compile.
@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_graph_breaks_and_resumed_calls(scenario: Scenario, backend: str) -> None:
    scenario.write(GRAPH_BREAK.format(backend=backend))
    cold = scenario.run("cold").assert_ok()
    assert cold.frames >= 3, cold.frames  # f, its resume function, the helper (+ its resume)
    scenario.run("warm").assert_warm()


CLOSURES = """
import torch, precompile

def make(scale):
    def inner(x):
        return sum(x * (scale + i) for i in range(3)).tanh()   # a generator, inlined
    return inner

g = precompile.cached(make(2.0), backend="eager")

class Model:
    def __init__(self):
        self.w = torch.randn(5)

    @precompile.cached(backend="eager")
    def method(self, x):
        return (x * self.w).cumsum(0)

def plain(x):
    return (x.exp() - 1).abs()

# what torch.compile returned: its backend and options are kept
h = precompile.cached(torch.compile(plain, backend="aot_eager", dynamic=False))

def run():
    x = torch.randn(5)
    m = Model()
    return [("closure", g(x), sum(x * (2.0 + i) for i in range(3)).tanh()),
            ("method", m.method(x), (x * m.w).cumsum(0)),
            ("compiled-fn", h(x), (x.exp() - 1).abs())]
"""


def test_closures_generators_methods(scenario: Scenario) -> None:
    scenario.write(CLOSURES)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["saves"] >= 3
    assert any("aot_eager" in p.read_bytes().decode("latin-1") for p in scenario.packages())
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["hits"] == 3


RECOMPILES = """
import torch, precompile

@precompile.cached(backend="aot_eager", dynamic=False)
def f(x):
    return (x * 2).exp()

def run():
    out = []
    for shape in [(4,), (6,)]:
        for dtype in [torch.float32, torch.float64]:
            x = torch.randn(*shape, dtype=dtype)
            out.append((f"{shape}-{dtype}", f(x), (x * 2).exp()))
    return out
"""


def test_recompiles_on_dtype_and_shape(scenario: Scenario) -> None:
    scenario.write(RECOMPILES)
    cold = scenario.run("cold").assert_ok()
    assert cold.frames == 4
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["hits"] == 1


DYNAMIC = """
import torch, precompile

@precompile.cached(backend="aot_eager", dynamic={dynamic})
def f(x):
    return x.softmax(-1) * x.shape[0]

SIZES = {sizes}

def run():
    out = []
    for n in SIZES:
        x = torch.randn(n, 7)
        out.append((str(n), f(x), x.softmax(-1) * n))
    return out
"""


def test_dynamic_true(scenario: Scenario) -> None:
    scenario.write(DYNAMIC.format(dynamic=True, sizes=[3, 5]))
    cold = scenario.run("cold").assert_ok()
    assert cold.frames == 1
    scenario.write(DYNAMIC.format(dynamic=True, sizes=[9, 4, 11]))
    scenario.run("warm").assert_warm()


def test_automatic_dynamic_after_shape_change(scenario: Scenario) -> None:
    scenario.write(DYNAMIC.format(dynamic=None, sizes=[3, 5]))
    cold = scenario.run("cold").assert_ok()
    assert cold.frames == 2  # static first, then a dynamic recompile
    scenario.write(DYNAMIC.format(dynamic=None, sizes=[3, 5, 8, 13]))
    scenario.run("warm").assert_warm()


def test_entries_from_two_processes_merge(scenario: Scenario) -> None:
    """Two processes compile different shapes; neither clobbers the other's entries."""
    scenario.write(DYNAMIC.format(dynamic=False, sizes=[3]))
    scenario.run("cold").assert_ok()
    scenario.write(DYNAMIC.format(dynamic=False, sizes=[4]))
    second = scenario.run("cold").assert_ok()
    assert second.frames == 1 and second.stats["hits"] == 1
    assert len(scenario.packages()) == 1
    scenario.write(DYNAMIC.format(dynamic=False, sizes=[3, 4]))
    scenario.run("warm").assert_warm()


def test_disable_switch_is_plain_torch_compile(scenario: Scenario) -> None:
    scenario.write(PLAIN.format(backend="eager"))
    run = scenario.run("cold", PRECOMPILE_DISABLE="1").assert_ok()
    assert run.frames == 1 and run.stats["saves"] == 0
    assert scenario.packages() == []


def test_recompile_of_an_installed_entry_names_the_failing_guard(scenario: Scenario) -> None:
    scenario.write(DYNAMIC.format(dynamic=False, sizes=[3]))
    scenario.run("cold").assert_ok()
    scenario.write(DYNAMIC.format(dynamic=False, sizes=[5]))
    run = scenario.run("cold").assert_ok()
    assert run.frames == 1 and run.stats["hits"] == 1
    reasons = " ".join(run.stats["recompile_reasons"])
    assert "size mismatch at index 0. expected 3, actual 5" in reasons, run.stats
