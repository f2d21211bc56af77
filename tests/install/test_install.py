"""Contract: installing a package adds only its own entries and globals and is undone
without a trace; a global rebound since the package was written never runs the stale entry;
a package compiled for another GPU is refused as an incompatibility that names it."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import Scenario

REBOUND = """
import torch, precompile

def act(x):
    return x.{op}()

@precompile.cached(backend="eager")
def f(x):
    return act(x) * 2

{rebind}

def run():
    x = torch.linspace(-2, 2, 7)
    return [("f", f(x), act(x) * 2)]
"""


def test_rebound_global_does_not_run_stale_entry(scenario: Scenario) -> None:
    scenario.write(REBOUND.format(op="relu", rebind=""))
    scenario.run("cold").assert_ok()
    # Same source for `act` and `f`, but the global `act` now names another function.
    scenario.write(REBOUND.format(op="relu", rebind="def act(x):\n    return x.sigmoid()"))
    run = scenario.run("cold").assert_ok()
    assert run.frames == 1, run.describe()
    reasons = " ".join(run.stats["miss_reasons"])
    assert "G['act']" in reasons or "changed" in reasons, reasons


def test_install_then_uninstall_leaves_module_clean(tmp_path) -> None:
    script = tmp_path / "clean.py"
    script.write_text(textwrap.dedent("""
        import sys, torch, precompile
        from precompile.install import installation as inst_mod
        from precompile.api import verify

        @precompile.cached(backend="eager", store="memory://t")
        def f(x):
            y = x + 1
            print("break")
            return y * 2

        before = set(globals())
        f(torch.ones(2))
        precompile.flush()
        impl = f._precompile
        from precompile.format import envelope as format
        data = impl.store.get(impl.package.key)
        env = format.decode(data)
        pkg = verify(env, impl.main_code, impl.module, impl.package.factors)
        torch._dynamo.reset()
        for name in set(globals()) - before:      # what Dynamo itself installed
            if name.startswith("__"):
                del globals()[name]
        clean = set(globals())
        inst = inst_mod.install(pkg)
        added = set(globals()) - clean
        assert inst.installed_entries == 2, inst
        assert any(n.startswith("__compiled_fn") for n in added), added
        assert any(n.startswith("__resume_at") for n in added), added
        inst.uninstall()
        dunder = lambda names: {n for n in names if n.startswith("__")}
        assert dunder(globals()) == dunder(clean), dunder(globals()) ^ dunder(clean)
        print("CLEAN-OK")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert "CLEAN-OK" in out.stdout, out.stdout + out.stderr


def test_gpu_mismatch_is_a_clear_incompatibility(monkeypatch) -> None:
    """GPU metadata check (CPU-checkable half; a GPU run must prove the rest)."""
    import precompile
    from precompile import _torch
    from precompile.format import envelope as fmt
    from precompile.api import verify
    from precompile.errors import IncompatibleError

    @precompile.cached(backend="eager", store="memory://gpu-test")
    def f(x):
        return x + 1

    impl = f._precompile
    impl.package.key, impl.package.factors = "k", {"python": "x", "torch": "y", "platform": "z",
                                                   "code": "c", "function": "m:f"}
    env = fmt.Envelope(meta={"factors": dict(impl.package.factors),
                             "gpus": {"cuda": {"gpu_name": "NVIDIA H100", "capability": [9, 0]}}},
                       manifest={}, blobs={})
    monkeypatch.setattr(_torch, "gpu_info", lambda d: {"gpu_name": "NVIDIA A100",
                                                        "capability": [8, 0]})
    with pytest.raises(IncompatibleError, match="H100"):
        verify(env, impl.main_code, impl.module, impl.package.factors)
