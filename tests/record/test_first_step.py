"""The first compiled optimizer step of a fresh job warm-starts (record/first_step.py).

Dynamo creates an optimizer's missing state while it traces ``step()`` (by calling the real
``_init_group``) and guards on it, so the entry compiled on a job's first step matched only an
optimizer that already had state: every new job retraced its first step. Each test runs a
cold process and then a fresh warm one whose optimizers have no state yet, and compares the
parameters after the first and second step with an eager twin from the same init.
"""
from __future__ import annotations

import pytest

from conftest import Scenario

TRAINING = """
import os, torch, precompile

OPTIMIZERS = {
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
}
WIDTH = int(os.environ.get("WIDTH", "16"))


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 4))


def groups(model):  # two param groups; the last bias gets no gradient, so it gets no state
    *first, frozen_bias = list(model.parameters())
    return [{"params": first[:2]}, {"params": [first[2], frozen_bias], "lr": 0.05}]


def train(kind, make_step):
    model, twin = net(), net()
    opt, twin_opt = OPTIMIZERS[kind](groups(model)), OPTIMIZERS[kind](groups(twin))
    step = make_step(opt)
    rows = []
    for i in range(2):
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(i))
        for m, o, fn in ((model, opt, step), (twin, twin_opt, twin_opt.step)):
            o.zero_grad()
            m[0](x).relu().matmul(m[2].weight.t()).sum().backward()  # bias 2 has no grad
            fn()
        rows.append((f"{kind}_step{i + 1}", [p.detach().clone() for p in model.parameters()],
                     [p.detach().clone() for p in twin.parameters()]))
    return rows
"""


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_step_method(scenario: Scenario, backend: str) -> None:
    """``precompile.cached(torch.compile(opt.step))``: the entry's trace created the state
    through ``L['self']``. With two param groups, Dynamo also guards the state's keys by
    ``id()`` (DICT_KEYS_MATCH), stored as "the keys are these parameters" instead."""
    scenario.write(TRAINING + f"""
def run():
    return [row for kind in OPTIMIZERS for row in train(
        kind, lambda opt: precompile.cached(torch.compile(opt.step, backend={backend!r})))]
""")
    warm = scenario.cold_then_warm()[1].assert_warm()
    assert warm.stats["misses"] == 0 and warm.stats["saves"] == 0, warm.describe()


def test_step_inside_a_compiled_function(scenario: Scenario) -> None:
    """The optimizer is reached through a global of the compiled function
    (``G['OPT']['adam']``), and its step is inlined into that function's frame."""
    scenario.write(TRAINING + """
OPT = {}

@precompile.cached(backend="aot_eager")
def adamw_step():
    OPT["adamw"].step()

@precompile.cached(backend="aot_eager")
def adam_step():
    OPT["adam"].step()

@precompile.cached(backend="aot_eager")
def sgd_step():
    OPT["sgd"].step()

def make_step(kind):
    def bind(opt):
        OPT[kind] = opt
        return globals()[f"{kind}_step"]
    return bind

def run():
    return [row for kind in OPTIMIZERS for row in train(kind, make_step(kind))]
""")
    warm = scenario.cold_then_warm()[1].assert_warm()
    assert warm.stats["misses"] == 0, warm.describe()


def test_other_parameters_compile_normally(scenario: Scenario) -> None:
    """A warm process whose model is wider: the stored entries' guards reject the state the
    prologue made (other shapes), Dynamo compiles, and the results are still eager's."""
    scenario.write(TRAINING + """
def run():
    return [row for kind in OPTIMIZERS for row in train(
        kind, lambda opt: precompile.cached(torch.compile(opt.step, backend="aot_eager")))]
""")
    scenario.run("cold").assert_ok()
    wider = scenario.run("cold", WIDTH="24").assert_ok()
    assert wider.frames > 0 and wider.stats["recompile_reasons"], wider.describe()


def test_dict_keys_check_compares_keys_with_their_sources() -> None:
    """The stored form of a DICT_KEYS_MATCH on an ``id()``-keyed dict: the keys are, in
    order, the objects at other sources of the call."""
    from precompile.identity.checks import DictKeysCheck, dict_keys_fingerprint

    a, b = object(), object()
    check = DictKeysCheck("L['d']", dict_keys_fingerprint(["L['x'][0]", "L['x'][1]"]), {})
    assert check({"d": {a: 1, b: 2}, "x": [a, b]})
    assert not check({"d": {b: 1, a: 2}, "x": [a, b]})  # other order
    assert not check({"d": {a: 1, object(): 2}, "x": [a, b]})  # another object
    assert not check({"d": {a: 1}, "x": [a, b]})  # a key missing
    assert not check({"d": {a: 1, b: 2}})  # a source that does not resolve
