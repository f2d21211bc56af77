"""Never a stale result II: a model changes between processes in ways Dynamo does not check
inside one process (issue 28; ``precompile/_torch/in_process_assumptions.py``).

Each scenario records in one process, checks that an unchanged process still warm-starts with
nothing traced, then changes the model (hooks, parameters, buffers, submodules, modes) before
the first call of a fresh process and requires eager's answer there, with the reason in
``stats()``. No strict mode after a change: a recompile (or another entry) is the right
outcome.
"""
from __future__ import annotations

import shutil
import textwrap
import pytest

from conftest import Run, Scenario

HOOKS_HELPER = """
import torch
torch.manual_seed(1)
HEAD = torch.nn.Linear(3, 3)

def act(x, k={k}):
    return x * k
"""

# HOOKS (comma-separated) says which hooks this process registers before its first call.
HOOKS_USER = """
import os, torch, precompile, helper
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))

def scale(m, i, o):
    return o * 10

def shift(m, i, o):
    return o - 3

def double_input(m, args):
    return (args[0] * 2,)

def linear_only(m, i, o):
    return o + 5 if isinstance(m, torch.nn.Linear) else o

HOOKS = set(filter(None, os.environ.get("HOOKS", "").split(",")))
if "recorded" in HOOKS:
    net[2].register_forward_hook(scale)
if "replaced" in HOOKS:
    net[2].register_forward_hook(shift)
if "submodule" in HOOKS:
    net[0].register_forward_hook(scale)
if "pre" in HOOKS:
    net[0].register_forward_pre_hook(double_input)
if "through_global" in HOOKS:
    helper.HEAD.register_forward_pre_hook(double_input)
if "global" in HOOKS:
    torch.nn.modules.module.register_module_forward_hook(linear_only)

def through_global(x):
    return helper.act(helper.HEAD(x).relu())

cnet = precompile.cached(torch.compile(net, backend="eager"))
cglobal = precompile.cached(backend="eager")(through_global)

def run():
    x = torch.ones(2, 3)
    return [("net", cnet(x), net(x)), ("through_global", cglobal(x), through_global(x))]
"""


def _reasons(run: Run) -> str:
    return "\n".join(run.stats["miss_reasons"] + run.stats["recompile_reasons"])


class _Snapshot:
    """The cache as the unchanged processes left it, put back before each change, so every
    change meets exactly the recorded entries (a changed process saves entries of its own)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.saved = scenario.root / "cache-recorded"
        shutil.copytree(scenario.cache, self.saved)

    def restore(self) -> None:
        shutil.rmtree(self.scenario.cache)
        shutil.copytree(self.saved, self.scenario.cache)


# change -> what its miss reason names
HOOK_CHANGES = {
    "recorded,submodule": "L['fn']._modules['0']._forward_hooks holds other hooks",
    "recorded,pre": "L['fn']._modules['0']._forward_pre_hooks holds other hooks",
    "recorded,through_global": "G['helper'].HEAD._forward_pre_hooks holds other hooks",
    "recorded,global": "_global_forward_hooks holds other hooks",
    "replaced": "_forward_hooks",
    "": "_forward_hooks",
}


def test_hooks_changed_between_processes(scenario: Scenario) -> None:
    """Hooks added on a submodule of the compiled model, on a module reached through a
    global, globally; a recorded hook removed or replaced by another function."""
    scenario.write(HOOKS_USER)
    (scenario.root / "helper.py").write_text(textwrap.dedent(HOOKS_HELPER.format(k=2)))
    scenario.run("cold", HOOKS="recorded").assert_ok()
    scenario.run("warm", HOOKS="recorded").assert_warm()
    snapshot = _Snapshot(scenario)
    for hooks, named in HOOK_CHANGES.items():
        snapshot.restore()
        changed = scenario.run("cold", HOOKS=hooks).assert_ok()
        assert changed.stats["frames_traced"] >= 1, (hooks, changed.stats)
        assert named in _reasons(changed), (hooks, _reasons(changed))


def test_constant_default_changed_between_processes(scenario: Scenario) -> None:
    """``skip_guards_on_constant_func_defaults``: a default argument of an inlined helper
    changes in its source between processes."""
    scenario.write(HOOKS_USER)
    helper = scenario.root / "helper.py"
    helper.write_text(textwrap.dedent(HOOKS_HELPER.format(k=2)))
    scenario.run("cold").assert_ok()
    helper.write_text(textwrap.dedent(HOOKS_HELPER.format(k=7)))
    changed = scenario.run("cold").assert_ok()
    assert "helper.py" in _reasons(changed) or changed.stats["misses"] >= 1, changed.stats


STATE_HELPER = """
import torch
torch.manual_seed(1)

class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.full({scale_shape}, 2.0, dtype=torch.{dtype}))

    def forward(self, x):
        return x * self.scale

HEAD = torch.nn.Linear(3, 3, bias={bias})
SCALED = Scaled()
"""

STATE_USER = """
import torch, precompile, helper

def through_globals(x):
    return helper.SCALED(helper.HEAD(x).relu())

compiled = precompile.cached(through_globals)

def run():
    x = torch.ones(2, 3)
    return [("through_globals", compiled(x), through_globals(x))]
"""

STATE = dict(scale_shape="(3,)", dtype="float32", bias=True)
STATE_CHANGES = {
    "bias removed": dict(bias=False),
    "buffer shape": dict(scale_shape="(1,)"),
    "buffer dtype": dict(dtype="float64"),
}


def test_parameters_and_buffers_changed_between_processes(scenario: Scenario) -> None:
    """``skip_tensor_guards_with_matching_dict_tags``: modules reached through globals lose
    a parameter or get a buffer of another shape or dtype; Inductor's entry would raise
    ``TypeError: expected Tensor()`` or compute with the old layout."""
    scenario.write(STATE_USER)
    helper = scenario.root / "helper.py"
    helper.write_text(textwrap.dedent(STATE_HELPER.format(**STATE)))
    scenario.run("cold").assert_ok()
    scenario.run("warm").assert_warm()
    snapshot = _Snapshot(scenario)
    for name, change in STATE_CHANGES.items():
        snapshot.restore()
        helper.write_text(textwrap.dedent(STATE_HELPER.format(**{**STATE, **change})))
        changed = scenario.run("cold").assert_ok()
        assert changed.stats["frames_traced"] >= 1, (name, changed.stats)
        assert "helper'].HEAD" in _reasons(changed) or "SCALED" in _reasons(changed), (
            name, _reasons(changed))
