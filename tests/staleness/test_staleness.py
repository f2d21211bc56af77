"""Never a stale result: a value a guard reads changes between processes, and the next process
must return eager's answer for the new value.

Each scenario compiles with one version of a helper module, checks that an unchanged helper
still warm-starts with nothing traced, then rewrites the helper and requires eager's result
in a fresh process (no strict mode: a recompile is the right outcome). Dynamo rebuilds stored
guards over the loading process's objects, so a guard read through a module would otherwise
compare against the new value and pass (see precompile/_torch/guard_parity.py).
"""
from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from conftest import Scenario

# One function per kind of value a guard can read through another module. Every function
# is its own precompile package; ``run`` returns compiled and eager results side by side.
VALUES_USER = """
import torch, precompile, helper

def module_constant(x):
    return x * helper.VALUE

def module_flag(x):
    return x.sin() if helper.USE_FAST else x.cos()

def class_attribute(x):
    return x * helper.Cfg.scale

def config_object(x):
    return x + helper.CFG.shift if helper.CFG.enabled else x * 2

def dict_entry(x):
    return x * helper.TABLE["k"]

def list_entry(x):
    return x + helper.LST[1]

def tuple_entry(x):
    return x * helper.TUP[0]

def list_length(x):
    for v in helper.LST:
        x = x + v
    return x

def nested_module(x):
    return x * helper.inner.DEPTH

def module_function(x):
    return helper.act(x)

def enum_member(x):
    return x + 1 if helper.MODE is helper.Mode.A else x - 1

def closure_cell(x):
    return helper.scaled(x)

def global_tensor_shape(x):
    return x + helper.W.sum()

def global_tensor_dtype(x):
    return (x + helper.D).to(torch.float32) * 2

def global_tensor_requires_grad(x):
    return (x * helper.G).detach() if helper.G.requires_grad else x * helper.G * 3

def string_constant(x):
    return x * len(helper.NAME) if helper.NAME.startswith("a") else x

FUNCTIONS = [module_constant, module_flag, class_attribute, config_object, dict_entry,
             list_entry, tuple_entry, list_length, nested_module, module_function,
             enum_member, closure_cell, global_tensor_shape, global_tensor_dtype,
             global_tensor_requires_grad, string_constant]
COMPILED = [precompile.cached(backend="eager")(f) for f in FUNCTIONS]

def run():
    x = torch.arange(4.0)
    return [(f.__name__, c(x), f(x)) for f, c in zip(FUNCTIONS, COMPILED)]
"""

HELPER = """
import enum, torch
import inner

VALUE = {value}
USE_FAST = {flag}
class Cfg:
    scale = {scale}
class Config:
    def __init__(self, enabled, shift):
        self.enabled, self.shift = enabled, shift
CFG = Config({enabled}, {shift})
TABLE = {{"k": {value}}}
LST = {lst}
TUP = ({value}, 1)
class Mode(enum.Enum):
    A = 1
    B = 2
MODE = Mode.{mode}
def _sin(x):
    return x.sin()
def _cos(x):
    return x.cos()
act = {act}
def make_scaled(k):
    def scaled(x):
        return x * k
    return scaled
scaled = make_scaled({value})
W = torch.ones({rows})
D = torch.ones(4, dtype=torch.{dtype})
G = torch.ones(4, requires_grad={grad})
NAME = "{name}"
"""

A = dict(value=7, flag=True, scale=2.0, enabled=True, shift=1.5, lst=[1, 2, 3], mode="A",
         act="_sin", rows=3, dtype="float32", grad=False, name="abc")
B = dict(value=99, flag=False, scale=0.5, enabled=False, shift=2.5, lst=[1, 5, 3, 4],
         mode="B", act="_cos", rows=5, dtype="float64", grad=True, name="abcd")


def _write_helpers(root: Path, values: dict[str, object], depth: int) -> None:
    (root / "helper.py").write_text(textwrap.dedent(HELPER.format(**values)))
    (root / "inner.py").write_text(f"DEPTH = {depth}\n")


def test_every_value_a_guard_reads_through_a_module(scenario: Scenario) -> None:
    scenario.write(VALUES_USER)
    _write_helpers(scenario.root, A, depth=2)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats["miss_reasons"]
    scenario.run("warm").assert_warm()  # unchanged helpers: every function hits
    _write_helpers(scenario.root, B, depth=3)
    changed = scenario.run("cold").assert_ok()  # eager's answers for the new values
    assert changed.stats["frames_traced"] >= len(A) + 1, changed.stats
    # both versions are stored now, and each process finds its own
    scenario.run("warm").assert_warm()
    _write_helpers(scenario.root, A, depth=2)
    scenario.run("warm").assert_warm()


GLOBAL_STATE_USER = """
import torch, precompile, state

@precompile.cached(backend="eager")
def make(x):
    return x + torch.ones(4)          # the default dtype decides ones' dtype

@precompile.cached(backend="aot_eager")
def mm(x, w):
    return (x @ w).sum(0)             # autocast decides the matmul's dtype

def run():
    x = torch.arange(4.0)
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    out = [("make", make(x), x + torch.ones(4)),
           ("mm", mm(x.view(1, 4), w), (x.view(1, 4) @ w).sum(0))]
    with torch.no_grad():
        out.append(("no_grad_mm", mm(x.view(1, 4), w), (x.view(1, 4) @ w).sum(0)))
    return out
"""

STATES = {
    "plain": "",
    "default_dtype": "torch.set_default_dtype(torch.float64)",
    "deterministic": "torch.use_deterministic_algorithms(True)",
    "grad_mode": "torch.set_grad_enabled(False)",
    "autocast": "torch.set_autocast_enabled('cpu', True)",
}


@pytest.mark.parametrize("state", ["default_dtype", "deterministic", "grad_mode", "autocast"])
def test_global_torch_state(scenario: Scenario, state: str) -> None:
    scenario.write(GLOBAL_STATE_USER)
    (scenario.root / "state.py").write_text("import torch\n")
    scenario.run("cold").assert_ok()
    (scenario.root / "state.py").write_text(f"import torch\n{STATES[state]}\n")
    run = scenario.run("cold").assert_ok()
    assert run.stats["frames_traced"] >= 1, run.stats
    scenario.run("warm").assert_warm()


SYS_MODULES_USER = """
import sys, types, torch, precompile
import helper as cfg

@precompile.cached(backend="eager")
def f(x):
    return x * cfg.VALUE

def run():
    return [("f", f(torch.ones(3)), torch.ones(3) * cfg.VALUE)]
"""


def test_sys_modules_swap(scenario: Scenario) -> None:
    """``helper`` is a different module object under the same name in the next process."""
    scenario.write(SYS_MODULES_USER)
    (scenario.root / "helper.py").write_text("VALUE = 3\n")
    scenario.run("cold").assert_ok()
    (scenario.root / "helper.py").write_text(
        "import sys, types\n_m = types.ModuleType('helper')\n_m.VALUE = 5\n"
        "sys.modules['helper'] = _m\n")
    scenario.run("cold").assert_ok()


# --- a randomized differential test: generated programs, generated helper modules ---------

_KINDS = ["int", "float", "bool", "str", "tuple", "nested"]


def _random_value(rng: random.Random, kind: str) -> str:
    return {
        "int": lambda: str(rng.randint(-5, 9)),
        "float": lambda: repr(rng.choice([0.5, 1.5, 2.0, -1.25])),
        "bool": lambda: rng.choice(["True", "False"]),
        "str": lambda: repr(rng.choice(["a", "bb", "ccc"])),
        "tuple": lambda: repr((rng.randint(0, 3), rng.randint(0, 3))),
        "nested": lambda: repr({"k": [rng.randint(0, 3), rng.randint(1, 4)]}),
    }[kind]()


def _use(kind: str, name: str) -> str:
    ref = f"gen_helper.{name}"
    return {
        "int": f"x = x * {ref}",
        "float": f"x = x + {ref}",
        "bool": f"x = x.sin() if {ref} else x.cos()",
        "str": f"x = x * len({ref})",
        "tuple": f"x = x + {ref}[0] - {ref}[1]",
        "nested": f"x = x * {ref}['k'][1] + len({ref}['k'])",
    }[kind]


def _generated(seed: int) -> tuple[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    names = [(f"V{i}", rng.choice(_KINDS)) for i in range(6)]
    body = "\n".join(f"    {_use(kind, name)}" for name, kind in names)
    user = (f"import torch, precompile, gen_helper\n\ndef g(x):\n{body}\n    return x\n\n"
            "cg = precompile.cached(backend='eager')(g)\n\n"
            "def run():\n    x = torch.arange(3.0)\n    return [('g', cg(x), g(x))]\n")
    return user, names


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_programs_match_eager_after_mutation(scenario: Scenario, seed: int) -> None:
    user, names = _generated(seed)
    scenario.write(user)
    rng = random.Random(seed * 1000)
    helper = scenario.root / "gen_helper.py"
    helper.write_text("".join(f"{n} = {_random_value(rng, k)}\n" for n, k in names))
    scenario.run("cold").assert_ok()
    for _ in range(2):  # mutate one or more values each round; every round equals eager
        lines = helper.read_text().splitlines()
        for i in rng.sample(range(len(names)), rng.randint(1, 3)):
            lines[i] = f"{names[i][0]} = {_random_value(rng, names[i][1])}"
        helper.write_text("\n".join(lines) + "\n")
        scenario.run("cold").assert_ok()


RESET_USER = """
import torch, precompile
from torch._dynamo.utils import counters

def f(x):
    return x.sin() + 1

cf = precompile.cached(backend="eager")(f)
EXTRA = {}

def run():
    x = torch.ones(3)
    out = [("cached", cf(x), f(x))]
    torch._dynamo.reset()
    before = counters["frames"]["total"]
    plain = torch.compile(f, backend="eager")
    out.append(("plain", plain(x), f(x)))
    EXTRA["plain_traced"] = counters["frames"]["total"] - before
    out.append(("cached_after_reset", cf(x), f(x)))
    return out
"""


def test_dynamo_reset_forgets_installed_entries(scenario: Scenario) -> None:
    """After ``torch._dynamo.reset()`` a process compiles as if it had just started: a plain
    ``torch.compile`` of the function traces it, and the decorated function takes the
    warm path again."""
    scenario.write(RESET_USER)
    cold = scenario.run("cold").assert_ok()
    assert cold.result["extra"]["plain_traced"] == 1, cold.result
    again = scenario.run("cold").assert_ok()
    assert again.stats["hits"] == 2, again.stats  # before and after the reset
    assert again.result["extra"]["plain_traced"] == 1, again.result
