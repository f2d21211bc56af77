"""Identity checks that mean identity: the same library function is the same object in every
process, and a different object is never taken for it.

Dynamo guards globals by ``id()``; precompile stores a fingerprint per guarded object
(fingerprints.object_fingerprint) and compares it in the loading process (identity.py). A
fingerprint must therefore not depend on anything a process randomizes (a ``frozenset``
constant's order follows ``PYTHONHASHSEED``), and must describe every layer a decorator
added, since the wrapper is the object Dynamo pinned.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import Scenario

# Every cold and warm process below gets another hash seed: a fingerprint that depends on
# string hashing differs between them, as it does between any two real processes.
SEEDS = {"cold": "1", "warm": "2"}




FINGERPRINTS = """
import json, sys, types, warnings
warnings.simplefilter("ignore")
import torch, torch.nn.functional, torch.optim, torch.utils._pytree
import torch.nn.attention.flex_attention
from precompile.identity.fingerprints import object_fingerprint
out = {}
for name, mod in sorted(sys.modules.items()):
    if mod is None or not name.startswith(("torch", "functools", "typing", "collections")):
        continue
    for attr, value in list(vars(mod).items()):
        if callable(value) or isinstance(value, types.ModuleType):
            out[f"{name}:{attr}"] = object_fingerprint(value)
print(json.dumps(out))
"""


def test_library_fingerprints_do_not_depend_on_the_process(tmp_path) -> None:
    """Every function, class and module torch imports fingerprints the same in two processes
    with different hash seeds (before the fix 56 of them did not: their bytecode holds a ``frozenset``, e.g. flex_attention's
    ``_validate_device``: ``{"cuda", "cpu", ...}``)."""
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", FINGERPRINTS], capture_output=True,
                              text=True, env=env, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout))
    assert len(runs[0]) > 20000 and runs[0].keys() == runs[1].keys()
    differ = sorted(k for k in runs[0] if runs[0][k] != runs[1][k])
    assert not differ, differ[:20]


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_flex_attention_with_score_mod(scenario: Scenario) -> None:
    """issue 23: stored with no bypass, and the warm run refused the entry (``_validate_device
    is no longer the object it was compiled for``); torch 2.13 also could not unpickle the
    ``__import__('torch')`` source its pytree guards use outside a trace."""
    scenario.write("""
        import torch, precompile
        from torch.nn.attention.flex_attention import flex_attention

        def relative(score, b, h, q_idx, kv_idx):
            return score + (q_idx - kv_idx)

        @precompile.cached(backend="inductor")
        def attend(q, k, v):
            return flex_attention(q, k, v, score_mod=relative)

        def reference(q, k, v):  # flex_attention's eager path compiles too: plain math
            s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
            i = torch.arange(q.shape[-2])
            return torch.softmax(s + (i[:, None] - i[None, :]), -1) @ v

        def run():
            torch.manual_seed(0)
            q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
            return [("out", attend(q, k, v), reference(q, k, v))]
    """)
    _, warm = scenario.cold_then_warm(hash_seeds=(SEEDS["cold"], SEEDS["warm"]))
    warm.assert_warm()


HELPERS = """
import functools, itertools, operator, os

def deco(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper

def scaled(func):                    # another decorator around the same function
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs) * 2
    return wrapper

def kind(name):
    return 1.0 if name in {"relu", "gelu", "silu", "tanh", "sigmoid", "mish"} else 2.0

def base(x):
    return x + kind("gelu")

wrapped = deco(base) if os.environ.get("HELPER", "deco") == "deco" else scaled(base)

def twice(x):                        # bound twice: the second definition is the live one
    return x - 1

def twice(x):
    return x * kind("silu")

def summed(xs):
    return functools.reduce(operator.add, itertools.chain(xs, [xs[0]]))
"""


def _with_helpers(scenario: Scenario, body: str) -> Scenario:
    (scenario.root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    return scenario.write(body)


def test_decorated_redefined_and_substituted_functions(scenario: Scenario) -> None:
    """Globals a compiled function reaches through a module: a function decorated with
    ``functools.wraps``, one bound twice, functions Dynamo substitutes with polyfills
    (``functools.reduce``, ``itertools.chain``), set-literal constants in the function
    itself (its key) and in a helper (its identity check), in processes with other hash
    seeds."""
    _with_helpers(scenario, """
        import torch, precompile
        import helpers

        def f(x):
            if helpers.kind("tanh") > 0 and x.dtype in {torch.float32, torch.float64}:
                y = helpers.wrapped(x) + helpers.twice(x)
            else:
                y = x
            return helpers.summed([y, x.sin()])

        cf = precompile.cached(f, backend="aot_eager")

        def run():
            x = torch.linspace(-1, 1, 8)
            return [("out", cf(x), f(x))]
    """)
    _, warm = scenario.cold_then_warm(hash_seeds=(SEEDS["cold"], SEEDS["warm"]))
    warm.assert_warm()


def test_another_decorator_around_the_same_function_is_another_object(scenario: Scenario) -> None:
    """``helpers.wrapped`` is ``deco(base)`` when compiled and ``scaled(base)`` (which
    doubles) in the next process; the source Dynamo inlined did not change. The entry must
    not run (before: the fingerprint only described ``base``, and the stale graph returned
    half the right answer); the miss says which layer differs."""
    _with_helpers(scenario, """
        import torch, precompile
        import helpers

        def f(x):
            return helpers.wrapped(x).cos()

        cf = precompile.cached(f, backend="aot_eager")

        def run():
            x = torch.linspace(-1, 1, 8)
            return [("out", cf(x), f(x))]
    """)
    scenario.run("cold", HELPER="deco", PYTHONHASHSEED="0").assert_ok()
    again = scenario.run("cold", HELPER="scaled", PYTHONHASHSEED="0").assert_ok()
    reasons = " ".join(again.stats["miss_reasons"])
    assert again.stats["hits"] == 0, again.describe()
    assert "wrapped is no longer the object it was compiled for" in reasons, reasons
    assert "deco.<locals>.wrapper" in reasons and "scaled.<locals>.wrapper" in reasons, reasons


def test_same_name_other_code_says_what_differs(scenario: Scenario) -> None:
    """A helper defined in two branches of a module (one name, two bodies): the miss names
    the differing bytecode and where the live function is defined, since both print as
    ``function helpers2.act``."""
    (scenario.root / "helpers2.py").write_text(textwrap.dedent("""
        import os

        if os.environ.get("ACT") == "cube":
            def act(x):
                return x * x * x
        else:
            def act(x):
                return x * 3
    """))
    scenario.write("""
        import torch, precompile
        import helpers2

        def f(x):
            return helpers2.act(x) + 1

        cf = precompile.cached(f, backend="aot_eager")

        def run():
            x = torch.linspace(-1, 1, 8)
            return [("out", cf(x), f(x))]
    """)
    scenario.run("cold", ACT="triple").assert_ok()
    again = scenario.run("cold", ACT="cube").assert_ok()
    reasons = " ".join(again.stats["miss_reasons"])
    assert again.stats["hits"] == 0, again.describe()
    assert "same name, other bytecode" in reasons, reasons
    assert "helpers2.py:5" in reasons, reasons
