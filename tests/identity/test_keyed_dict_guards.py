"""A global dict subclass whose ``__setitem__`` rewrites its keys is rebuilt with the keys it
had (transformers' ``_CanRecordRegistry``, read by output capturing, stores
``str(model.__class__)`` for the model it is given; precompile/_torch/keyed_dicts.py).

Pickle refills a dict subclass through its own ``__setitem__``: left to it, Dynamo's guard
state comes back with every key turned into ``"<class 'str'>"``, rebuilding the guards fails
with an ``IndexError`` on a key-order source and the frame is not stored. A fresh process
must warm-start with nothing traced, and one whose registry holds another value must give
eager's answer and say which guard failed.
"""
from __future__ import annotations

import textwrap

from conftest import Scenario

USER = """
import torch, precompile
from helper import build

torch.manual_seed(0)
model = build()
compiled = precompile.cached(torch.compile(model, backend="eager"))

def run():
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return [("out", compiled(x), model(x))]
"""

HELPER = """
import torch

class Registry(dict):
    def __setitem__(self, model, flags):
        super().__setitem__(str(model.__class__), flags)

    def get(self, model):
        return super().get(str(model.__class__)) or {{}}

REGISTRY = Registry()

class Other(torch.nn.Module):
    pass

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x)
        for name, scale in REGISTRY.get(self).items():
            y = y * scale
        return y

REGISTRY[Other()] = {{"a": 3.0}}
REGISTRY[Net.__new__(Net)] = {{"b": {scale}}}

def build():
    return Net().eval()
"""


def _write(scenario: Scenario, scale: float) -> None:
    scenario.write(USER)
    (scenario.root / "helper.py").write_text(textwrap.dedent(HELPER.format(scale=scale)))


def test_a_registry_that_rewrites_its_keys_warm_starts(scenario: Scenario) -> None:
    _write(scenario, 2.0)
    _, warm = scenario.cold_then_warm()
    warm.assert_warm()


def test_another_value_in_the_registry_recompiles(scenario: Scenario) -> None:
    _write(scenario, 2.0)
    scenario.cold_then_warm()
    _write(scenario, 5.0)
    changed = scenario.run("changed").assert_ok()  # eager's answer with the new value
    assert changed.stats["frames_traced"] >= 1, changed.describe()
    reasons = changed.stats["miss_reasons"] + changed.stats["recompile_reasons"]
    assert any("G['REGISTRY']" in r and "== 2.0" in r for r in reasons), reasons
