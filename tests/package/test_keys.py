"""Contract: a package's key is made of content, never of the process: the same code,
settings and environment give the same key in any process, a code change (not a moved line)
gives another, and the store a key is looked up in follows argument, then
``PRECOMPILE_CACHE_DIR``, then ``~/.cache/precompile``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import scrubbed_environ

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
