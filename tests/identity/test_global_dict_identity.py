"""An object held by id() as a value of a global dict subclass is checked by fingerprint
(DeBERTa-v2 reads ``ACT2FN[name]`` in its forward).

transformers' ``ACT2FN`` is an ``OrderedDict`` subclass whose ``__getitem__`` instantiates
the class it holds. Dynamo reads the class with ``dict.__getitem__`` and guards it with an
ID_MATCH that hangs under a manager named ``G['ACT2FN']['gelu']`` while the guard itself
names ``dict.__getitem__(G['ACT2FN'], list(dict.keys(G['ACT2FN']))[0])``: guard parity must
match that leaf to its guard, not take it for a lost guard (which refuses the entry). A
fresh process must warm-start with nothing traced, and one whose dict now holds another
class must compile again with eager's answer.
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
import collections, torch

class GELUActivation(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.gelu(x)

class TanhActivation(torch.nn.Module):
    def forward(self, x):
        return torch.tanh(x)

class ClassInstantier(collections.OrderedDict):
    def __getitem__(self, key):
        content = super().__getitem__(key)
        cls, kwargs = content if isinstance(content, tuple) else (content, {{}})
        return cls(**kwargs)

ACT2FN = ClassInstantier({{"gelu": {gelu}, "relu": torch.nn.ReLU}})

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.act = "gelu"

    def forward(self, x):
        return ACT2FN[self.act](self.lin(x))

def build():
    return Net().eval()
"""


def _write(scenario: Scenario, gelu: str) -> None:
    scenario.write(USER)
    (scenario.root / "helper.py").write_text(textwrap.dedent(HELPER.format(gelu=gelu)))


def test_a_class_held_in_a_global_dict_subclass_warm_starts(scenario: Scenario) -> None:
    _write(scenario, "GELUActivation")
    _, warm = scenario.cold_then_warm()
    warm.assert_warm()


def test_another_class_in_the_dict_is_a_miss(scenario: Scenario) -> None:
    _write(scenario, "GELUActivation")
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0 and scenario.packages(), cold.describe()
    _write(scenario, "TanhActivation")
    changed = scenario.run("changed").assert_ok()  # eager's answer with the new class
    assert changed.stats["frames_traced"] >= 1 and changed.stats["hits"] == 0, changed.describe()
    assert any("G['ACT2FN']" in r and "is no longer the object" in r
               for r in changed.stats["miss_reasons"]), changed.describe()
