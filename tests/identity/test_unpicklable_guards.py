"""Objects Dynamo's guard pickler refuses are checked in the loading process, not given up on
(precompile/_torch/standins.py).

Each scenario holds one kind of object Dynamo cannot pickle in its guard state: an instance
of a class made inside a function (``kernels``' ``Func``, held by 114 transformers 5.25
families), a ``torch.export``'ed module (FX's per-module ``GraphModuleImpl`` with generated
``forward`` code), a ``weight_norm``-parametrized module, and a config object whose
``__reduce__`` raises. The first process compiles and stores; a fresh process warm-starts
with nothing traced and eager's answer. Then the object changes between processes (class
body, generated code, parametrization, attribute value) and the next process must give
eager's answer and say why the stored entry did not apply.
"""
from __future__ import annotations

import textwrap

import pytest

from conftest import Run, Scenario

USER = """
import torch, precompile
from helper import build

torch.manual_seed(0)
model = build()
compiled = precompile.cached(torch.compile(model, backend="eager"))

def run():
    x = torch.randn({shape}, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return [("out", compiled(x), model(x))]
"""

# kernels' use_kernel_forward_from_hub / use_kernelized_func: a function wrapped in a
# module whose class is made inside a function, held as a global and in a dict attribute.
LOCAL_CLASS = """
import torch

def _create_func_module(func):
    class Func(torch.nn.Module):
        can_torch_compile = True
        scale = {factor}

        def forward(self, *args):
            return func(*args) * self.scale

    return Func

def rotate(x):
    return x.flip(-1)

ROTATE = _create_func_module(rotate)()

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self._kernel_funcs = {{"rotate": _create_func_module(rotate)()}}

    def forward(self, x):
        return ROTATE(self.lin(x)) + self._kernel_funcs["rotate"](x)

def build():
    return Block().eval()
"""

EXPORTED = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.{act}(self.lin(x)) + 1

def build():
    torch.manual_seed(0)
    return torch.export.export(Net(), (torch.randn(2, 4),)).module()
"""

# wav2vec2's positional convolution: a Conv1d under weight_norm, chosen by PARAMETRIZATION.
WEIGHT_NORM = """
import os, torch
from torch.nn.utils import parametrizations

class PosConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv1d(4, 4, 3, padding=1)
        how = os.environ.get("PARAMETRIZATION", "weight_norm dim=2")
        if how.startswith("weight_norm"):
            conv = parametrizations.weight_norm(conv, name="weight", dim=int(how[-1]))
        self.conv = conv

    def forward(self, x):
        return torch.nn.functional.gelu(self.conv(x))

def build():
    return PosConv().eval()
"""

# A config object no pickle takes, read by guards through the module (L['self'].cfg) and
# through a global of the compiled function's module (G['CFG']).
RAISING_REDUCE = """
import os, torch

class Config:
    def __init__(self, scale):
        self.scale = scale
        self.use_bias = True

    def __reduce__(self):
        raise TypeError("Config objects cannot be pickled")

CFG = Config(float(os.environ.get("SCALE", "2")))

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cfg = Config(float(os.environ.get("SCALE", "2")))
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x) * self.cfg.scale
        return y + CFG.scale if CFG.use_bias else y

def build():
    return Net().eval()
"""

SHAPES = {"local_class": "2, 4", "exported": "2, 4", "weight_norm": "2, 4, 5",
          "raising_reduce": "2, 4"}
HELPERS = {"local_class": LOCAL_CLASS, "exported": EXPORTED, "weight_norm": WEIGHT_NORM,
           "raising_reduce": RAISING_REDUCE}
BASE = {"local_class": {"factor": 2}, "exported": {"act": "relu"}, "weight_norm": {},
        "raising_reduce": {}}
# What changes between processes: (case, helper values, environment, what the reason says).
CHANGES = {
    # the class body outside the method Dynamo inlined (whose source range is checked too):
    # the class fingerprint of ``type(G['ROTATE'])`` no longer matches
    "class_body": ("local_class", {"factor": 3}, {}, "type(G['ROTATE']) is no longer"),
    "generated_code": ("exported", {"act": "tanh"}, {}, "source of __main__:forward changed"),
    "parametrization_removed": ("weight_norm", {}, {"PARAMETRIZATION": "none"}, "changed"),
    "parametrization_changed": ("weight_norm", {}, {"PARAMETRIZATION": "weight_norm dim=0"},
                                "['parametrizations']._modules['weight']._modules['0'].dim"),
    "attribute_value": ("raising_reduce", {}, {"SCALE": "3"}, "G['CFG'].scale == 2.0"),
}


def _write(scenario: Scenario, case: str, values: dict[str, object]) -> None:
    if case == "raising_reduce":  # the global must live in the compiled function's module
        user = USER.replace("from helper import build", "from helper import build, CFG")
    else:
        user = USER
    scenario.write(user.format(shape=SHAPES[case]))
    (scenario.root / "helper.py").write_text(textwrap.dedent(HELPERS[case].format(**values)))


def _stored(scenario: Scenario, case: str) -> Run:
    _write(scenario, case, BASE[case])
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0 and scenario.packages(), cold.describe()
    return cold


@pytest.mark.parametrize("case", list(HELPERS))
def test_warm_start_with_an_object_dynamo_cannot_pickle(scenario: Scenario, case: str) -> None:
    _stored(scenario, case)
    warm = scenario.run("warm").assert_warm()
    assert warm.stats["misses"] == 0 and warm.stats["saves"] == 0, warm.describe()


# A training step through aot_eager, whose stored artifact is the pickled training graph: the
# backward's nodes name the modules they came from by class (``fwd_nn_module_stack``), here
# a class made inside a function and a parametrized Conv1d (Llama, Mistral, Qwen...; wav2vec2).
TRAIN_USER = """
import torch, precompile
from helper import build

torch.manual_seed(0)
model = build().train()
twin = build().train()
twin.load_state_dict(model.state_dict())
compiled = precompile.cached(torch.compile(model, backend="aot_eager"))

def run():
    x = torch.randn({shape}, generator=torch.Generator().manual_seed(1))
    compiled(x).square().mean().backward()
    twin(x).square().mean().backward()
    grads = [(n, p.grad, dict(twin.named_parameters())[n].grad)
             for n, p in model.named_parameters()]
    return [("loss", compiled(x).square().mean(), twin(x).square().mean())] + grads
"""


@pytest.mark.parametrize("case", ["local_class", "weight_norm"])
def test_aot_eager_training_step_warm_starts(scenario: Scenario, case: str) -> None:
    scenario.write(TRAIN_USER.format(shape=SHAPES[case]))
    (scenario.root / "helper.py").write_text(textwrap.dedent(HELPERS[case].format(**BASE[case])))
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0 and scenario.packages(), cold.describe()
    scenario.run("warm").assert_warm()


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_object_is_a_miss_with_its_reason(scenario: Scenario, change: str) -> None:
    case, values, env, reason = CHANGES[change]
    _stored(scenario, case)
    _write(scenario, case, {**BASE[case], **values})
    changed = scenario.run("changed", **env).assert_ok()  # eager's answer for the new object
    assert changed.stats["frames_traced"] >= 1, changed.describe()
    reasons = changed.stats["miss_reasons"] + changed.stats["recompile_reasons"]
    assert any(reason in r for r in reasons), (reason, reasons)
