"""Keys are content-based and process-independent; installs are clean and undoable; a
global rebound since the package was written never runs the stale entry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import Scenario, scrubbed_environ

KEY_SCRIPT = """
import json, torch, precompile
from precompile import _torch
from precompile.package import keys as keys

def f(x):
    return x + 1

factors = keys.key_factors(f.__code__, __name__, "eager[]", dynamic=None, fullgraph=False,
                           device_types=["cpu"])
print(json.dumps({"key": keys.package_key(factors), "factors": factors}))
"""


def _key_in_fresh_process(tmp_path, **env) -> dict:
    script = tmp_path / "keyscript.py"
    script.write_text(KEY_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=scrubbed_environ(**env), check=True, cwd=str(tmp_path))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_keys_hold_nothing_per_process(tmp_path) -> None:
    a = _key_in_fresh_process(tmp_path, RANK="0", TMPDIR="/tmp")
    b = _key_in_fresh_process(tmp_path, RANK="3", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "x"))
    assert a["key"] == b["key"]
    blob = json.dumps(a["factors"])
    assert str(os.getpid()) not in blob and str(tmp_path) not in blob
    c = _key_in_fresh_process(tmp_path, TORCHINDUCTOR_MAX_AUTOTUNE="1")
    assert c["key"] != a["key"] and "TORCHINDUCTOR_MAX_AUTOTUNE" in c["factors"]["env"]


def test_code_fingerprint_ignores_position_not_behaviour() -> None:
    from precompile.package.keys import code_fingerprint

    ns1: dict = {}
    ns2: dict = {}
    ns3: dict = {}
    exec("def f(x):\n    return x + 1\n", ns1)
    exec("\n\n\ndef f(x):\n    return x + 1\n", ns2)
    exec("def f(x):\n    return x + 2\n", ns3)
    assert code_fingerprint(ns1["f"].__code__) == code_fingerprint(ns2["f"].__code__)
    assert code_fingerprint(ns1["f"].__code__) != code_fingerprint(ns3["f"].__code__)


def test_cache_dir_precedence(tmp_path, clean_env) -> None:
    from precompile.api import default_store

    monkeypatch = clean_env
    monkeypatch.setenv("PRECOMPILE_CACHE_DIR", str(tmp_path / "env"))
    assert default_store().url == str(tmp_path / "env")
    assert default_store(cache_dir=tmp_path / "arg").url == str(tmp_path / "arg")
    monkeypatch.delenv("PRECOMPILE_CACHE_DIR")
    assert default_store().url == os.path.expanduser("~/.cache/precompile")


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
