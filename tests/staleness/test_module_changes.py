"""Never a stale result II: a model changes between processes in ways Dynamo does not check
inside one process (``precompile/_torch/in_process_assumptions.py``).

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


ALIAS_USER = """
import os, sys, types, torch, precompile

def scaled(x):
    import alias_shim
    return x * alias_shim.VALUE

def shifted(x):
    import alias_shim
    return x + alias_shim.VALUE

c_scaled = precompile.cached(backend="eager")(scaled)
c_shifted = precompile.cached(backend="eager")(shifted)

def run():
    x = torch.ones(3)
    out = [("scaled", c_scaled(x), scaled(x))]
    if os.environ.get("SWAP"):
        new = types.ModuleType("alias_shim")
        new.VALUE = 7
        sys.modules["alias_shim"] = new
    out.append(("shifted", c_shifted(x), shifted(x)))
    out.append(("scaled_again", c_scaled(x), scaled(x)))
    return out
"""


def test_sys_modules_swap_after_an_install_then_another_import_compiles(
        scenario: Scenario) -> None:
    """The import-alias handover: an installed entry placed ``__import_alias_shim``; the
    program swaps ``sys.modules['alias_shim']`` and a second function importing it compiles
    (Dynamo asserted the alias is the module the import gives now), then the first runs
    again with the new module's value."""
    scenario.write(ALIAS_USER)
    (scenario.root / "alias_shim.py").write_text("VALUE = 2\n")
    scenario.run("cold").assert_ok()
    scenario.run("warm").assert_warm()
    swapped = scenario.run("cold", SWAP="1").assert_ok()
    assert swapped.stats["frames_traced"] >= 2, swapped.stats


# Generated models (seeded), each compiled with Inductor; the second process builds the same
# models, changes each one's structure before its first call, and must give eager's answers.
RANDOM_USER = """
import os, random, torch, precompile

class Scaled(torch.nn.Module):
    def __init__(self, d, shape=None):
        super().__init__()
        self.register_buffer("scale", torch.linspace(0.5, 2.0, d).reshape(shape or (d,)))

    def forward(self, x):
        return x * self.scale

def tenfold(module, args, out):
    return out * 10

def layer(rng, d):
    kind = rng.choice(["linear", "relu", "scaled", "norm", "tanh"])
    return {"linear": lambda: torch.nn.Linear(d, d), "relu": torch.nn.ReLU,
            "scaled": lambda: Scaled(d), "norm": lambda: torch.nn.BatchNorm1d(d),
            "tanh": torch.nn.Tanh}[kind]()

def model(seed, d=4):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, d),
                               *[layer(rng, d) for _ in range(rng.randint(1, 3))])

def mutate(net, rng, d=4):
    kind = rng.choice(["hook", "pre_hook", "no_bias", "buffer", "submodule", "eval",
                       "parametrize", "global_hook"])
    i = rng.randrange(len(net))
    if kind == "hook":
        net[i].register_forward_hook(tenfold)
    elif kind == "pre_hook":
        net[i].register_forward_pre_hook(lambda m, args: (args[0] + 1,))
    elif kind == "no_bias":
        net[0].bias = None
    elif kind == "buffer":
        net.append(Scaled(d, shape=(1, d)))
        net[-1].scale = torch.full((1,), 3.0)
    elif kind == "submodule":
        net.append(torch.nn.Linear(d, d))
    elif kind == "eval":
        net.eval()
    elif kind == "parametrize":
        torch.nn.utils.parametrizations.weight_norm(net[0])
    else:
        net[i].register_forward_hook(lambda m, i, o: o - 1, always_call=True)
    return kind

SEED = int(os.environ["SEED"])
MODELS = [model(SEED * 100 + k) for k in range(4)]
KINDS = []
if os.environ.get("MUTATE"):
    rng = random.Random(SEED)
    KINDS = [mutate(m, rng) for m in MODELS]
EXTRA = {"kinds": KINDS}
# half compiled as modules (reached from the call's locals), half through a global
COMPILED = [precompile.cached(torch.compile(m)) for m in MODELS[:2]]

def through_global_2(x):
    return MODELS[2](x)

def through_global_3(x):
    return MODELS[3](x)

COMPILED += [precompile.cached(through_global_2), precompile.cached(through_global_3)]

def run():
    x = torch.linspace(-2.0, 2.0, 12).reshape(3, 4)
    return [(f"model{k}", c(x), m(x)) for k, (c, m) in enumerate(zip(COMPILED, MODELS))]
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_models_match_eager_after_structural_changes(scenario: Scenario,
                                                                seed: int) -> None:
    scenario.write(RANDOM_USER)
    scenario.run("cold", SEED=str(seed)).assert_ok()
    changed = scenario.run("cold", SEED=str(seed), MUTATE="1").assert_ok()
    assert changed.stats["frames_traced"] >= 1, (changed.result["extra"], changed.stats)
