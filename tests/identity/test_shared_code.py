"""One code object, several things compiled from it: never run each other's graphs.

A decorator's ``wrapper`` is one code object for every function it wraps, and a module's
``forward`` is one code object for every instance. Dynamo tells them apart with identity
guards (``L['func']``, ``L['self'].act``), which cannot be stored; precompile keeps them live in
the compiling process and checks their fingerprints at call time in a loading one
(precompile/identity/checks.py). Each test runs a cold process in one order and a warm one in the
other order, comparing with eager.
"""
from __future__ import annotations

import textwrap

from conftest import Scenario

DECORATORS = """
import functools

def deco(func):
    @functools.wraps(func)          # copies func's __module__; the code runs in *this* module
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper

def returns_output(func):           # the shape of transformers' can_return_tuple
    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        return func(self, *args, **kwargs)
    return wrapper
"""


def _with_decorators(scenario: Scenario, source: str) -> Scenario:
    (scenario.root / "decos.py").write_text(textwrap.dedent(DECORATORS))
    return scenario.write(source)


def test_functions_from_one_decorator_keep_their_own_graphs(scenario: Scenario) -> None:
    _with_decorators(scenario, """
        import os, torch, precompile
        from decos import deco

        @deco
        def f(x):
            return torch.sin(x) + 1

        @deco
        def g(x):
            return torch.cos(x) - 1

        cf = precompile.cached(f, backend="eager")
        cg = precompile.cached(g, backend="eager")

        def run():
            x = torch.linspace(-2, 2, 8)
            fns = {"f": (cf, f), "g": (cg, g)}
            return [(n, fns[n][0](x), fns[n][1](x)) for n in os.environ["ORDER"]]
    """)
    cold = scenario.run("cold", ORDER="fg").assert_ok()  # g must not run f's entry
    assert cold.stats["misses"] == 2, cold.describe()
    assert len(scenario.packages()) == 2  # the wrapped function is part of the key
    warm = scenario.run("warm", ORDER="gf").assert_warm()
    assert warm.stats["hits"] == 2, warm.describe()


def test_instances_with_different_function_attributes(scenario: Scenario) -> None:
    scenario.write("""
        import os, torch, precompile

        def act_a(x):
            return x.sin()

        def act_b(x):
            return x.cos() * 3

        class Block(torch.nn.Module):
            def __init__(self, act):
                super().__init__()
                self.lin = torch.nn.Linear(4, 4)
                self.act = act          # a plain attribute: same module tree, other function

            def forward(self, x):
                return self.act(self.lin(x))

        torch.manual_seed(0)
        blocks = {"a": Block(act_a), "b": Block(act_b)}
        cached = {n: precompile.cached(b, backend="eager") for n, b in blocks.items()}

        def run():
            x = torch.randn(2, 4)
            with torch.no_grad():
                return [(n, cached[n](x), blocks[n](x)) for n in os.environ["ORDER"]]
    """)
    scenario.run("cold", ORDER="ab").assert_ok()
    warm = scenario.run("warm", ORDER="ba").assert_warm()  # both entries, each to its own
    assert warm.stats["hits"] == 2, warm.describe()


def test_decorated_forward_from_another_module(scenario: Scenario) -> None:
    """transformers' pattern: ``forward`` wrapped by a decorator defined elsewhere, guards on
    the wrapped function's defaults, and a model output rebuilt from a class (which Dynamo's
    bytecode loads from a global it adds, stored by name)."""
    _with_decorators(scenario, """
        import collections, dataclasses, torch, precompile
        from decos import returns_output

        @dataclasses.dataclass
        class Output:
            logits: torch.Tensor
            hidden: torch.Tensor

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(8, 8)

            @returns_output
            def forward(self, x, scale=2.0, shift=None):
                h = self.lin(x)
                return Output(h * scale if shift is None else h + shift, h)

        torch.manual_seed(0)
        net = Net()
        compiled = precompile.cached(net, backend="aot_eager")  # identity: any backend

        def run():
            x = torch.randn(3, 8)
            with torch.no_grad():
                got, want = compiled(x), net(x)
            assert type(got) is Output, type(got)
            return [("logits", got.logits, want.logits), ("hidden", got.hidden, want.hidden)]
    """)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    scenario.run("warm").assert_warm()


def test_grad_mode_decorators(scenario: Scenario) -> None:
    """``@torch.no_grad()`` and ``@torch.inference_mode()`` wrap every function with one
    ``decorate_context`` code object; inference mode also puts calls AOTAutograd's cache
    does not allowlist into the graph (precompile marks them cacheable while recording)."""
    scenario.write("""
        import os, torch, precompile

        @precompile.cached(backend="aot_eager")
        @torch.no_grad()
        def f(x, w):
            return torch.relu(x @ w) + 1

        @precompile.cached(backend="aot_eager")
        @torch.inference_mode()
        def g(x, w):
            return torch.tanh(x @ w) - 1

        def run():
            torch.manual_seed(0)
            x, w = torch.randn(4, 8), torch.randn(8, 8)
            want = {"f": torch.relu(x @ w) + 1, "g": torch.tanh(x @ w) - 1}
            fns = {"f": f, "g": g}
            return [(n, fns[n](x, w), want[n]) for n in os.environ["ORDER"]]
    """)
    cold = scenario.run("cold", ORDER="fg").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    assert sorted(p.name.split("-")[0] for p in scenario.packages()) == ["f", "g"]
    warm = scenario.run("warm", ORDER="gf").assert_warm()
    assert warm.stats["hits"] == 2, warm.describe()


def test_namedtuple_outputs(scenario: Scenario) -> None:
    """A namedtuple's ``__new__`` runs in a namespace of its own, which Dynamo guards through
    a global it installs by id (``___unnamed_scope_<id>_c0``); precompile stores it as a
    reference to the class, for a namedtuple of this module and of an imported one."""
    (scenario.root / "shapes.py").write_text(
        "import collections\nStats = collections.namedtuple('Stats', ['mean', 'std'])\n")
    scenario.write("""
        import collections, torch, precompile
        import shapes

        Out = collections.namedtuple("Out", ["logits", "stats"])

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(4, 4)

            def forward(self, x):
                h = self.lin(x)
                return Out(h.relu(), shapes.Stats(h.mean(), h.std()))

        torch.manual_seed(0)
        net = Net()
        compiled = precompile.cached(net, backend="aot_eager")  # identity: any backend

        def run():
            x = torch.randn(3, 4)
            with torch.no_grad():
                got, want = compiled(x), net(x)
            assert type(got) is Out and type(got.stats) is shapes.Stats, type(got)
            return [("logits", got.logits, want.logits), ("mean", got.stats.mean, want.stats.mean),
                    ("std", got.stats.std, want.stats.std)]
    """)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["miss_reasons"] == [], warm.describe()
