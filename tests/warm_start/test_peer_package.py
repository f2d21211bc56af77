"""PyTorch's own package tests as a peer suite: the user programs of torch's
``test/dynamo/test_package.py`` (``TestPackage`` and ``TestPrecompilePackage``), rewritten as
precompile scenarios and run the way users hit them.

Each scenario module runs three fresh processes against one cache: a cold one that compiles
and stores every program; a warm one (``fail_on_recompile``) that must trace nothing, where
torch's own loaded guards pass; and one with the inputs and state torch's tests use to make
its guards fail (a new shape, another config value, a rebound global, an edited helper), where
every call must equal eager and every call named ``*_new`` must trace while the others still
hit. ``check`` records, per call, how many frames precompile traced for it
(``precompile.stats()["frames_traced"]``). The programs torch's file holds that say nothing
about precompile's public API are listed, with the reason, in the README ("PyTorch's package
tests as a peer suite").
"""
from __future__ import annotations

from conftest import Run, Scenario

# What every scenario module starts with: ``check(name, compiled_call, eager_call)``.
PRELUDE = """
import functools, os, sys, types
import torch, precompile

NEW = os.environ.get("PEER_MODE") == "new"
EXTRA = {"traced": {}}
OUT = []

def check(name, call, eager):
    before = precompile.stats()["frames_traced"]
    got = call()
    traced = precompile.stats()["frames_traced"] - before
    EXTRA["traced"][name] = EXTRA["traced"].get(name, 0) + traced
    OUT.append((name, got, eager()))

def new(name, changed=True):
    return name + "_new" if NEW and changed else name

def extra(*shape):  # inputs only the changed run uses: the shared draws stay the same
    return torch.randn(*shape, generator=torch.Generator().manual_seed(9))

cached = precompile.cached(backend="eager")
static = precompile.cached(backend="eager", dynamic=False)
"""

# TestPackage: one function per program (torch's test names in the comments).
TEST_PACKAGE = PRELUDE + """
import peer_helper, peer_child
import peer_pkg.helper

def basic(x):                                   # test_basic_fn
    return x + 1

def sin_cos(x):                                 # test_lazy_backward, *_recompiles
    return x.sin() + x.cos()

def cos_plus(x):                                # test_dynamo_cache_manual_load
    return x.cos() + x

def bomb(x, l, r):                              # test_graph_break_bomb
    if l > r:
        return x.sum()
    mid = (l + r) // 2
    if x.sum() == mid:
        return x.sum()
    elif x.sum() < mid:
        return bomb(x, l, mid)
    else:
        return bomb(x, mid + 1, r)

def add_shape(x):                               # test_dynamic_shape
    return x + x.shape[0]

def via_helper(x):                              # test_file_change
    return peer_helper.add(x, 1)

def partial_backend(x):                         # test_graph_break_partial_backend
    y = x.sin()
    torch._dynamo.graph_break()
    return x.sin() + y

def compute_loss_helper(x):
    return x.sum() / x.numel()

def backward_inside(x, mod):                    # test_call_function_from_resume
    pred = mod(x)
    compute_loss_helper(pred).backward()
    return None

def with_generator(set_of_x):                   # test_code_with_generator
    if not all(isinstance(s, torch.Tensor) for s in set_of_x):
        raise TypeError("expected tensors")
    return torch.cat(set_of_x, dim=0)

class PrintNN(torch.nn.Module):                 # *_graph_breaks_from_print_model_as_fn
    def forward(self, x):
        x = torch.nn.functional.relu(x)
        x *= x
        x /= 2
        print(x.sum().item())
        x += 1
        return x

def resume_branch(x):                           # test_install_survives_stale_cleanup_hooks
    y = x + x.shape[0]
    if y.sum() > 0:
        return y * 2
    return y

def global_child(x):                            # test_uninstall_keeps_a_global_it_did_not_bind
    return peer_child.CHILD(x)

def _double_output(module, args, out):           # *_nn_hook_guards_read_the_live_entry_...
    return out * 2

def _triple_output(module, args, out):
    return out * 3

def hooked_child(x):
    return peer_child.CHILD(x) + 1

def dotted_import(x):                           # *_of_a_dotted_name_is_the_module_...
    import peer_pkg.helper
    return x + peer_pkg.helper.VALUE

def from_import(x):
    from peer_pkg.helper import VALUE
    return x + VALUE

def import_in_function(x):                      # *_rebind_makes_a_stale_artifact_visible
    import peer_shim as shim
    return x * shim.VALUE

def _bm_target(self, x):                        # *_bound_method_name_guard_survives_func_...
    return x

@functools.wraps(_bm_target)
def _bm_wrapper(self, x):
    return x * 3

class _BMRecv:
    pass

class BoundMethodName(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.other = _bm_wrapper                # reaches the function before the method
        self.cb = types.MethodType(_bm_wrapper, _BMRecv())
    def forward(self, x):
        if self.cb.__name__ == "_bm_target":
            x = x + 1
        return x * 2

class UnpicklableConfig:                        # test_bypassed_guards_keep_the_frames_...
    scale = 2.0
    def __reduce__(self):
        raise RuntimeError("config cannot pickle")

class ConfigThatCannotPickle:
    scale = 2.0
    def __reduce__(self):
        raise AttributeError("config cannot pickle")

def optional_cfg(x, cfg=None):
    if cfg is not None:
        return x.sin() * cfg.scale
    return x.sin()

def default_cfg(x, cfg=UnpicklableConfig()):   # test_unserializable_guard_bypasses_the_package
    if cfg.scale == 2.0:
        x = x + 1
    return x.sin()

DYN_ROWS = torch.randn(4, 3)                    # *_shape_guard_on_a_global_reads_the_live_...
torch._dynamo.mark_dynamic(DYN_ROWS, 0)

def global_dyn_rows(x):
    return x * 2 + DYN_ROWS.sum(0)

def run():
    global DYN_ROWS
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    x = r(3, 2)
    for name, fn, args, changed in [
            ("basic", basic, (x,), False), ("sin_cos", sin_cos, (x,), False),
            ("cos_plus", cos_plus, (r(5, 2),), False), ("via_helper", via_helper, (x,), True),
            ("resume_branch", resume_branch, (x,), False),
            ("global_child", global_child, (r(3),), False),
            ("dotted_import", dotted_import, (x,), False),
            ("from_import", from_import, (x,), False),
            ("import_in_function", import_in_function, (x,), True)]:
        c = cached(fn)
        check(new(name, changed), lambda: c(*args), lambda: fn(*args))
    for name, fn in [("lazy_backward", sin_cos), ("partial_backend", partial_backend)]:
        c, a = cached(fn), r(3, 2).requires_grad_()
        b = a.detach().clone().requires_grad_()
        def call(c=c, a=a):
            out = c(a); out.sum().backward(); return out.detach(), a.grad
        def ref(fn=fn, b=b):
            out = fn(b); out.sum().backward(); return out.detach(), b.grad
        check(name, call, ref)
    cb = cached(bomb)
    for n in range(11 if NEW else 10):
        check(new("bomb", n == 10), lambda: cb(torch.tensor(n), 0, 9),
              lambda: bomb(torch.tensor(n), 0, 9))
    cd = cached(add_shape)
    x3 = r(3, 2)
    torch._dynamo.mark_dynamic(x3, 0, min=3, max=5)
    for rows, t in [(3, x3), (5, r(5, 2))] + ([(7, extra(7, 2))] if NEW else []):
        check(new("dynamic_range", rows == 7), lambda: cd(t), lambda: add_shape(t))
    ca = cached(sin_cos)
    for rows in (3, 5, 7):                      # automatic dynamic after one recompile
        t = r(rows, 2)
        check("auto_dynamic", lambda: ca(t), lambda: sin_cos(t))
    torch.manual_seed(1)
    lin, lin_ref = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    lin_ref.load_state_dict(lin.state_dict())
    cbi, xb = cached(backward_inside), r(3, 2)
    check("backward_inside", lambda: (cbi(xb, lin), lin.weight.grad),
          lambda: (backward_inside(xb, lin_ref), lin_ref.weight.grad))
    cg, xs = cached(with_generator), [r(3, 2) for _ in range(3)]
    check("generator", lambda: cg(xs), lambda: with_generator(xs))
    pm = PrintNN()
    cp, xp = cached(pm), torch.rand(10, generator=g)
    check("print_item", lambda: cp(xp.clone()), lambda: pm(xp.clone()))
    bm = BoundMethodName()
    cbm = cached(bm)
    if NEW:
        _bm_wrapper.__name__ = "renamed"
    check(new("bound_method_name"), lambda: cbm(x), lambda: bm(x))
    co = cached(optional_cfg)
    check("bypassed_variant_first", lambda: co(x), lambda: optional_cfg(x))
    if NEW:
        for cls in (UnpicklableConfig, ConfigThatCannotPickle):
            cfg = cls()
            check(new("bypassed_variant"), lambda: co(x, cfg), lambda: optional_cfg(x, cfg))
        cdc = cached(default_cfg)
        check(new("unpicklable_default"), lambda: cdc(x), lambda: default_cfg(x))
    cgr, xr = cached(global_dyn_rows), r(3)
    check("global_dyn_rows", lambda: cgr(xr), lambda: global_dyn_rows(xr))
    DYN_ROWS = r(7, 3)
    check("global_dyn_rows", lambda: cgr(xr), lambda: global_dyn_rows(xr))
    if NEW:
        DYN_ROWS = extra(1, 3)                      # torch's guard: 2 <= G['DYN_ROWS'].size()[0]
        check(new("global_dyn_rows"), lambda: cgr(xr), lambda: global_dyn_rows(xr))
    handle = torch.nn.modules.module.register_module_forward_hook(
        _triple_output if NEW else _double_output)
    cgh, x3 = cached(hooked_child), r(3)
    check(new("global_hook"), lambda: cgh(x3), lambda: hooked_child(x3))
    handle.remove()
    return OUT
"""

# TestPrecompilePackage: torch compiles these with dynamic=False.
TEST_PRECOMPILE_PACKAGE = PRELUDE + """
def staged(x):                                  # test_graph_breaks_and_recompiles_round_trip
    x = x * 2
    torch._dynamo.graph_break()
    x = x + 3
    torch._dynamo.graph_break()
    return x.sum()

class Block(torch.nn.Module):
    def __init__(self, i):
        super().__init__()
        self.i = i
    def forward(self, x):
        x = x * 2 + self.i
        torch._dynamo.graph_break()
        return x

class Stack(torch.nn.Module):                   # test_raised_recompile_limit_is_complete
    def __init__(self, n):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(i) for i in range(n)])
    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x.sum()

CONFIG = {"mode": "sum"}

def global_dict(x):                             # test_global_dict_conditional_guard_round_trip
    if CONFIG["mode"] == "sum":
        x = x * 2
    else:
        x = x * 3
    torch._dynamo.graph_break()
    if CONFIG["mode"] == "sum":
        return x.sum()
    return x.mean() * 10.0

def local_dict(x, cfg):                         # test_local_dict_conditional_guard_round_trip
    if cfg["op"] == "sin":
        x = x.sin()
    else:
        x = x.cos()
    torch._dynamo.graph_break()
    return x.sum() * cfg["scale"]

def nested_dict(x, cfg):                        # test_nested_dict_guards_round_trip
    if "alpha" in cfg and cfg["alpha"]["kind"] == "wide":
        x = x * len(cfg["alpha"]["dims"])
    else:
        x = x + 1
    torch._dynamo.graph_break()
    total = 0
    for k in sorted(cfg):
        total += cfg[k]["weight"]
    return x.sum() * total

def _user_act(t):
    return -t

def _other_act(t):
    return t * 5

class SelfAct(torch.nn.Module):                 # test_risky_drop_detected_through_a_module_...
    def __init__(self, act):                    # test_torch_owned_drops_are_not_risky
        super().__init__()                      # test_two_packages_on_a_shared_frame_can_...
        self.act = act
    def forward(self, x):
        y = self.act(x)
        torch._dynamo.graph_break()
        return (y + 1).sum()

class ValuePinned(torch.nn.Module):             # test_summary_reports_value_pinned_guards
    def forward(self, x):
        scale = x.abs().max().item()
        y = x * 2 if scale > 0.5 else x * 3
        return y.sum()

def _sin(t):
    return t.sin()

def _cos(t):
    return t.cos()

ACTIVATION = _sin

def global_function_ref(x):                     # test_save_refuses_risky_dropped_identity_guard
    y = ACTIVATION(x) + 1
    torch._dynamo.graph_break()
    return (y * 10).sum()

torch._dynamo.config.recompile_limit = 64       # Stack: 5 blocks x 3 shapes on one forward

def run():
    global ACTIVATION
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    cs = static(staged)
    for shape in [(4, 8), (5, 8), (6, 8)] + ([(9, 8)] if NEW else []):
        t = extra(*shape) if shape == (9, 8) else r(*shape)
        check(new("staged", shape == (9, 8)), lambda: cs(t), lambda: staged(t))
    st = Stack(5)
    cst = static(st)
    for shape in [(4, 8), (5, 8), (6, 8)] + ([(7, 8)] if NEW else []):
        t = extra(*shape) if shape == (7, 8) else r(*shape)
        check(new("stack", shape == (7, 8)), lambda: cst(t), lambda: st(t))
    cgd, x = static(global_dict), r(4, 8)
    for mode in ["sum", "mean"] + (["uncaptured"] if NEW else []):
        CONFIG["mode"] = mode
        check(new("global_dict", mode == "uncaptured"), lambda: cgd(x), lambda: global_dict(x))
    cld = static(local_dict)
    for cfg in [{"op": "sin", "scale": 2}, {"op": "cos", "scale": 5}] + (
            [{"op": "tan", "scale": 1}] if NEW else []):
        check(new("local_dict", cfg["op"] == "tan"), lambda: cld(x, cfg),
              lambda: local_dict(x, cfg))
    cnd = static(nested_dict)
    cfgs = [{"alpha": {"kind": "wide", "dims": [1, 2], "weight": 3}},
            {"beta": {"kind": "narrow", "dims": [1], "weight": 7}}]
    for cfg in cfgs + ([{"gamma": {"kind": "wide", "dims": [1], "weight": 2}}] if NEW else []):
        check(new("nested_dict", "gamma" in cfg), lambda: cnd(x, cfg),
              lambda: nested_dict(x, cfg))
    x34 = r(3, 4)
    with torch.no_grad():
        for name, act, changed in [("self_act_user", _other_act if NEW else _user_act, True),
                                   ("self_act_relu", torch.relu, False),
                                   ("self_act_sigmoid", torch.sigmoid, False)]:
            m = SelfAct(act)
            cm = static(m)
            check(new(name, changed), lambda: cm(x34), lambda: m(x34))
        vp = ValuePinned()
        cvp, xv = static(vp), x34 * (0.1 if NEW else 1.0)
        check(new("value_pinned"), lambda: cvp(xv), lambda: vp(xv))
    if NEW:
        ACTIVATION = _cos
    cgf = static(global_function_ref)
    check(new("global_function_ref"), lambda: cgf(x), lambda: global_function_ref(x))
    return OUT
"""

HELPERS = {
    "peer_helper.py": ("def add(x, y):\n    return x + y\n",
                       "def add(x, y):\n    return x - y\n"),
    "peer_shim.py": ("VALUE = 2\n", "VALUE = 7\n"),
    "peer_child.py": ("import torch\nclass Child(torch.nn.Module):\n"
                      "    def forward(self, x):\n        return x.sin()\nCHILD = Child()\n",) * 2,
    "peer_pkg/__init__.py": ("",) * 2,
    "peer_pkg/helper.py": ("VALUE = 3\n",) * 2,
}


def _write_helpers(scenario: Scenario, version: int) -> None:
    (scenario.root / "peer_pkg").mkdir(exist_ok=True)
    for name, sources in HELPERS.items():
        (scenario.root / name).write_text(sources[version])


def _cold_warm_changed(scenario: Scenario, program: str) -> Run:
    """Cold (every program stored), warm (nothing traced), then torch's failing inputs and
    edited helpers (eager's answers; exactly the ``*_new`` calls trace)."""
    scenario.write(program)
    _write_helpers(scenario, 0)
    cold = scenario.run("cold").assert_ok()
    unstored = [m for m in cold.stats["miss_reasons"] if "first compile" not in m]
    assert not unstored and cold.stats["bypasses"] == 0, unstored
    scenario.run("warm").assert_warm()
    _write_helpers(scenario, 1)
    changed = scenario.run("cold", PEER_MODE="new").assert_ok()
    traced = changed.result["extra"]["traced"]
    stale = [name for name, n in traced.items() if name.endswith("_new") and n == 0]
    retraced = {name: n for name, n in traced.items() if not name.endswith("_new") and n}
    assert not stale, f"served without a recompile where torch's guards fail: {stale}"
    assert not retraced, f"traced again where torch's guards pass: {retraced}"
    return changed


def test_test_package_programs(scenario: Scenario) -> None:
    changed = _cold_warm_changed(scenario, TEST_PACKAGE)
    # The configs that cannot pickle (a bypass upstream) are stored as stand-ins and their
    # guards checked in the next process (precompile/_torch/standins.py).
    assert changed.stats["bypasses"] == 0, changed.stats["miss_reasons"]


def test_test_precompile_package_programs(scenario: Scenario) -> None:
    _cold_warm_changed(scenario, TEST_PRECOMPILE_PACKAGE)


# TestPrecompilePackage's save and load rules, through precompile.save / precompile.load. The
# package file travels between processes; ``staged`` lives in a helper the last run edits.
SAVE_LOAD = """
import os, sys, torch, precompile
from precompile.errors import PackageError
import drift_mod

PKG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "staged.pcpkg")
SHAPES = [(4, 8), (5, 8), (6, 8)]
EXTRA = {}

def local_dict(x, cfg):
    return x.sum() * cfg["scale"]

def refused(call):
    try:
        call()
    except PackageError as e:
        return type(e).__name__
    return None

def run():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(*s, generator=g) for s in SHAPES]
    if not os.path.exists(PKG):                 # the capturing process
        c = precompile.cached(backend="eager", dynamic=False)(drift_mod.staged)
        out = [(f"staged{i}", c(x), drift_mod.staged(x)) for i, x in enumerate(xs)]
        precompile.save(c, PKG)                 # test_save_rejects_capture_that_ran_nothing:
        never = precompile.cached(backend="eager")(local_dict)
        EXTRA["save_nothing"] = refused(lambda: precompile.save(never, "/nonexistent"))
        return out
    # test_load_rejects_artifact_from_a_different_callable
    EXTRA["other_callable"] = refused(lambda: precompile.load(local_dict, PKG))
    why = refused(lambda: precompile.load(drift_mod.staged, PKG))
    EXTRA["load"] = why                         # test_stale_artifact_rejected_when_source_drifts
    if why:
        return []
    loaded = precompile.load(drift_mod.staged, PKG)
    out = [(f"staged{i}", loaded(x), drift_mod.staged(x)) for i, x in enumerate(xs)]
    try:                                        # a shape never captured must not match
        loaded(torch.randn(9, 8))
        EXTRA["new_shape"] = "served"
    except RuntimeError as e:
        EXTRA["new_shape"] = "recompile" if "fail_on_recompile" in str(e) else repr(e)
    return out
"""

DRIFT = """import torch

def staged(x):
    x = x * 2
    torch._dynamo.graph_break()
    x = x + {add}
    torch._dynamo.graph_break()
    return x.sum()
"""


def test_save_and_load_round_trip_and_refusals(scenario: Scenario) -> None:
    scenario.write(SAVE_LOAD)
    (scenario.root / "drift_mod.py").write_text(DRIFT.format(add=3))
    cold = scenario.run("cold").assert_ok()
    assert cold.result["extra"]["save_nothing"] == "PackageError"
    assert (scenario.root / "staged.pcpkg").exists()
    warm = scenario.run("warm").assert_warm()
    extra = warm.result["extra"]
    assert extra["load"] is None and extra["new_shape"] == "recompile", extra
    assert extra["other_callable"] == "SourceChangedError", extra
    (scenario.root / "drift_mod.py").write_text(DRIFT.format(add=4))
    drifted = scenario.run("cold").assert_ok()
    assert drifted.result["extra"]["load"] == "SourceChangedError", drifted.result["extra"]


# test_classmethod_qualname: random numbers drawn inside the graph, a device context around an
# inlined method, classmethods called from the class and from an instance.
QUALNAME = """
import torch, precompile

class Sampler:
    def __init__(self, val, mask, prob):
        self.val, self.mask, self.prob = val, mask, prob
    @classmethod
    def used(cls, x):
        prob = torch.sigmoid(x)
        thresh = torch.rand(1, device=x.device)
        return cls(x, (prob > thresh).to(torch.bool), prob)
    @classmethod
    def not_used(cls, x):
        prob = torch.sigmoid(x)
        thresh = torch.rand(1, device=x.device)
        return cls(x, (prob > thresh).to(torch.bool), prob)
    def halve(self, x):
        return x / 2

class QualNameNet(torch.nn.Module):
    def no_args(self):
        return torch.randn([1, 2, 3, 4])
    def with_args(self, x):
        return x + 1
    def forward(self, x):
        x *= x
        with torch.device(x.device):
            y = self.no_args()
        sampler = Sampler.used(x)
        x = torch.where(torch.rand_like(x) < sampler.prob, sampler.val, x) + y.sum()
        x = sampler.halve(x)
        other = sampler.not_used(x)
        x = other.halve(x)
        x += y.sum()
        return self.with_args(x)

def run():
    net = QualNameNet()
    compiled = precompile.cached(backend="eager")(net.forward)
    x = torch.rand(10, generator=torch.Generator().manual_seed(0))
    def seeded(f):
        torch.manual_seed(3)
        return f(x.clone())
    return [("qualname", seeded(compiled), seeded(net.forward))]
"""


def test_classmethod_qualname_draws_the_numbers_eager_draws(scenario: Scenario) -> None:
    """A program that seeds and then calls: loading the stored eager graphs (which retraces
    them with torch.fx) must not draw from the global generator. ``no_args`` was compiled
    under the ``torch.device`` mode, and its guards cannot be rebuilt outside that mode: it
    is not installed and retraces (README, "Limits (today)")."""
    scenario.write(QUALNAME)
    scenario.run("cold").assert_ok()
    again = scenario.run("cold").assert_ok()
    assert again.stats["hits"] == 1 and again.stats["frames_traced"] == 1, again.stats


# test_automatic_dynamo_import_source_guard: ``pytree.tree_is_leaf`` guards through
# ``__import__('torch')`` (Dynamo's ImportSource).
IMPORT_SOURCE = PRELUDE + """
def tree_leaf(x):
    if torch.utils._pytree.tree_is_leaf(x):
        return torch.nn.functional.relu(x) + x.sin()
    return x

def run():
    c, x = cached(tree_leaf), torch.randn(3, 2)
    check("tree_leaf", lambda: c(x), lambda: tree_leaf(x))
    return OUT
"""


def test_import_source_guard(scenario: Scenario) -> None:
    scenario.write(IMPORT_SOURCE)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.stats["miss_reasons"]
    scenario.run("warm").assert_warm()


# test_bypass_before_guards_keeps_the_frames_earlier_variant: under ``prepare_freezing`` a
# graph that holds a named parameter is bypassed before its guards are built; the frame's
# other variant is still stored and served.
FREEZING = PRELUDE + """
torch._dynamo.config.prepare_freezing = True

class StaticParamModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3))
    def forward(self, x, use_w=False):
        if use_w:
            return (x * self.w).sin()
        return x.sin()

def run():
    torch.manual_seed(0)
    mod = StaticParamModule()
    torch._dynamo.mark_static_address(mod.w, guard=False)
    c, x = precompile.cached(mod, backend="eager"), torch.randn(3)
    check("plain", lambda: c(x), lambda: mod(x))
    check("use_w", lambda: c(x, use_w=True), lambda: mod(x, use_w=True))
    return OUT
"""


def test_bypass_before_guards_keeps_the_earlier_variant(scenario: Scenario) -> None:
    scenario.write(FREEZING)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 1, cold.stats["miss_reasons"]
    again = scenario.run("cold").assert_ok()
    assert again.result["extra"]["traced"] == {"plain": 0, "use_w": 1}, again.result["extra"]
