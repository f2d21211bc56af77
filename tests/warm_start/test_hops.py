"""Higher-order operators, functorch transforms and custom autograd Functions warm-start:
``torch.cond``, ``while_loop``, ``map``, ``scan``, ``associative_scan``, nested compile
regions (``invoke_subgraph``), a custom ``torch.autograd.Function`` with its own backward,
``torch.func.vmap`` / ``grad``, activation checkpointing and ``flex_attention`` are stored by
a cold process and installed by a fresh one with nothing traced, for every backend; a HOP
whose subgraph calls arbitrary Python is refused with the reason, never stored."""
from __future__ import annotations

import pytest

from conftest import Scenario

# One module runs every construct (one process per phase and backend). References are
# computed without the HOPs: ``torch.cond`` / ``while_loop`` called eagerly compile a graph
# themselves, which the warm run's fail_on_recompile would (rightly) count.
MANY = """
import torch, precompile
from torch._higher_order_ops import while_loop
from torch._higher_order_ops.associative_scan import associative_scan
from torch._higher_order_ops.scan import scan
from torch.utils.checkpoint import checkpoint

BACKEND = "{backend}"


def on_true(x):
    return x.sin()


def on_false(x):
    return x.cos() + 1


def branch(x):
    return torch.cond(x.sum() > 0, on_true, on_false, (x,)) * 2


def loop(x):
    return while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2 + 1),
                      (torch.tensor(0), x))[1]


def loop_ref(x):
    for _ in range(3):
        x = x * 2 + 1
    return x


class ScaledSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x.sin() * scale

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * x.cos() * ctx.scale * 2, None   # twice the true gradient: ours must run


def custom_fn(x):
    return ScaledSin.apply(x, 3.0).sum()


def vmapped(x):
    return torch.func.vmap(lambda r: (r.sin() * r).sum())(x)


def grad_of(x):
    return torch.func.grad(lambda r: (r.sin() * r).sum())(x)


def block(x):
    return (x.sin() @ x.T).cos()


def checkpointed(x):
    return checkpoint(block, x, use_reentrant=False).sum()


def mapped(x):
    return torch._higher_order_ops.map(lambda r: r.sin() * 2, x)


def running(carry, r):
    total = carry + r
    return total, total * 2


def scanned(x):
    return scan(running, torch.zeros(4), x)[1]


def add(a, b):
    return a + b


def prefix_sums(x):
    return associative_scan(add, x, dim=0, combine_mode="generic")


@torch.compiler.nested_compile_region
def region(x):
    return (x.sin() * x).cos()


def regions(x):
    return region(x) + region(x * 2)


def regions_ref(x):
    return (x.sin() * x).cos() + ((x * 2).sin() * (x * 2)).cos()


NAMES = {names}
COMPILED = {{name: precompile.cached(globals()[name], backend=BACKEND) for name in NAMES}}
FORWARD_ONLY = {{"loop": loop_ref, "vmapped": vmapped, "grad_of": grad_of,
                "mapped": lambda x: x.sin() * 2, "scanned": lambda x: x.cumsum(0) * 2,
                "prefix_sums": lambda x: x.cumsum(0), "regions": regions_ref}}


def run():
    torch.manual_seed(0)
    x = torch.randn(4, 4).abs()
    out = []
    if "branch" in COMPILED:
        out += [("cond_true", COMPILED["branch"](x), on_true(x) * 2),
                ("cond_false", COMPILED["branch"](-x), on_false(-x) * 2)]
    for name, ref in FORWARD_ONLY.items():
        if name in COMPILED:
            out.append((name, COMPILED[name](x), ref(x)))
    for name in ("custom_fn", "checkpointed"):
        if name in COMPILED:
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            got, want = COMPILED[name](a), globals()[name](b)
            got.backward()
            want.backward()
            out += [(name, got, want), (name + "_grad", a.grad, b.grad)]
    return out
"""

ALL = ["branch", "loop", "custom_fn", "vmapped", "grad_of", "checkpointed", "mapped", "scanned",
       "prefix_sums", "regions"]


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_hops_and_transforms_warm_start(scenario: Scenario, backend: str) -> None:
    scenario.write(MANY.format(backend=backend, names=ALL))
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats
    assert cold.stats["saves"] == len(ALL), cold.stats
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["hits"] == len(ALL), warm.stats


def test_hops_inductor(scenario: Scenario) -> None:
    scenario.write(MANY.format(backend="inductor", names=["branch", "custom_fn"]))
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["hits"] == 2, warm.stats
    counts = warm.result["counts"]
    assert counts["codegens"] == 0 and counts["cpp_builds"] == 0, counts


UNSAFE_BRANCH = """
import torch, precompile


@torch._dynamo.allow_in_graph
def opaque(x):          # arbitrary Python, called by reference from inside the graph
    return x * 3


def on_true(x):
    return opaque(x).sin()


def on_false(x):
    return x.cos()


@precompile.cached(backend="aot_eager")
def f(x):
    return torch.cond(x.sum() > 0, on_true, on_false, (x,))


def run():
    x = torch.randn(4, 4).abs()
    return [("f", f(x), on_true(x))]
"""


def test_subgraph_calling_arbitrary_python_is_refused(scenario: Scenario) -> None:
    """AOTAutograd checks only the top-level graph's calls; precompile checks the branches
    too, so a branch calling a user function by reference is never stored."""
    scenario.write(UNSAFE_BRANCH)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["saves"] == 0 and cold.stats["bypasses"] == 1, cold.stats
    reasons = " ".join(cold.stats["miss_reasons"])
    assert "AOTAutograd's cache refused it" in reasons and "opaque" in reasons, reasons
    again = scenario.run("cold").assert_ok()   # a fresh process compiles it as before
    assert again.frames == 1 and again.stats["hits"] == 0, again.stats


FLEX = """
import torch, precompile
from torch.nn.attention.flex_attention import flex_attention


def relative_bias(score, b, h, q_idx, kv_idx):
    return score + (q_idx - kv_idx) * 0.1


@precompile.cached(backend="inductor")
def attend(q, k, v):
    return flex_attention(q, k, v, score_mod=relative_bias)


def run():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
    idx = torch.arange(16)
    scores = q @ k.transpose(-2, -1) / 8 ** 0.5 + (idx[:, None] - idx[None, :]) * 0.1
    return [("flex", attend(q, k, v), scores.softmax(-1) @ v)]
"""


def test_flex_attention_score_mod_inductor(scenario: Scenario) -> None:
    """The graph and its score_mod subgraph are stored (flex_attention is a cacheable HOP),
    and the identity check of ``flex_attention._validate_device`` (a frozenset constant in
    its code) holds in the next process."""
    scenario.write(FLEX)
    cold = scenario.run("cold")
    if cold.returncode != 0 and "flex_attention" in cold.stderr and "CPU" in cold.stderr:
        pytest.skip("flex_attention does not run on CPU with this torch")
    cold.assert_ok()
    assert cold.stats["bypasses"] == 0 and cold.stats["saves"] == 1, cold.stats
    scenario.run("warm").assert_warm()


DYNAMIC = """
import torch, precompile


def on_true(x):
    return x.sin()[: x.shape[0] // 2]


def on_false(x):
    return (x.cos() + 1)[: x.shape[0] // 2]


def branch(x):
    return torch.cond(x.sum() > 0, on_true, on_false, (x,)) * 2


COMPILED = [precompile.cached(branch, backend=b, dynamic=True) for b in ("eager", "aot_eager")]


def run():
    out = []
    for n in (4, 6, 8):
        x = torch.randn(n, 3).abs()
        for i, fn in enumerate(COMPILED):
            out += [(f"true{i}-{n}", fn(x), on_true(x) * 2),
                    (f"false{i}-{n}", fn(-x), on_false(-x) * 2)]
    return out
"""


def test_cond_with_dynamic_shapes(scenario: Scenario) -> None:
    """Branches that slice by a symbolic size: the stored graphs take the sizes as inputs."""
    scenario.write(DYNAMIC)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0 and cold.stats["saves"] == 2, cold.stats
    scenario.run("warm").assert_warm()


def _graph_with_cond() -> object:
    """An FX graph shaped like Dynamo's for ``torch.cond``: the branches are GraphModule
    attributes, read with ``get_attr``."""
    import operator

    import torch

    root = torch.nn.Module()
    root.on_true = torch.fx.symbolic_trace(lambda x: (x.sin(),))
    root.on_false = torch.fx.symbolic_trace(lambda x: (x.cos() + 1,))
    g = torch.fx.Graph()
    x = g.placeholder("x")
    pred = g.call_function(operator.gt, (g.call_method("sum", (x,)), 0))
    cond = g.call_function(torch.ops.higher_order.cond,
                           (pred, g.get_attr("on_true"), g.get_attr("on_false"), (x,)))
    g.output((g.call_function(operator.getitem, (cond, 0)),))
    return torch.fx.GraphModule(root, g)


def test_eager_graph_with_subgraphs_round_trips() -> None:
    """``backend="eager"``'s artifact: pickle re-traces a GraphModule's code on load, which
    ``torch.cond`` rejects; precompile stores the nodes and rebuilds the graph."""
    import pickle

    import torch

    from precompile import _torch

    gm = _graph_with_cond()
    x = torch.randn(3, 3).abs()
    with pytest.raises(Exception, match="can only be of"):
        pickle.loads(pickle.dumps(gm))
    kind, data, _ = _torch.serialize_backend(gm)
    fn = _torch.deserialize_backend(kind, data, "__compiled_fn_1_test")
    assert torch.equal(fn(x)[0], x.sin()) and torch.equal(fn(-x)[0], (-x).cos() + 1)


def test_eager_graphs_stored_by_earlier_releases_still_load() -> None:
    """Packages written before graphs were stored node by node hold a plain pickle."""
    import pickle

    import torch

    from precompile import _torch

    gm = torch.fx.symbolic_trace(lambda x: x.sin() * 2)
    fn = _torch.deserialize_backend(_torch.KIND_FX_GRAPH, pickle.dumps(gm), "__compiled_fn_1_t")
    x = torch.randn(4)
    assert torch.equal(fn(x), x.sin() * 2)
