"""Contract: every public name works.

Each name in ``precompile.__all__`` imports in a fresh process (the lazy table points at
modules that exist), every ``precompile`` command answers ``--help``, a pickle of a
compiled module written before the record/ folder existed still loads (its recorder
stand-in is found under the old module names), and a stored package names no precompile
module but the engine layer's, so moving modules never strands a package.
"""
from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import pytest

import precompile
from conftest import Scenario
from precompile.cli.parser import build_parser

_SCRIPT = r"""
import contextlib, io, json, precompile
from precompile import cli
from precompile.cli.parser import build_parser
names = {name: type(getattr(precompile, name)).__name__ for name in precompile.__all__}
helps = {}
for command in build_parser()._subparsers._group_actions[0].choices:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main([command, "--help"])
        except SystemExit as e:
            helps[command] = (e.code, out.getvalue()[:200])
print(json.dumps({"names": names, "helps": helps}))
"""


def _commands() -> list[str]:
    return sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.fixture(scope="module")
def fresh_process() -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_name_in_all_imports(fresh_process: dict) -> None:
    assert sorted(fresh_process["names"]) == sorted(precompile.__all__)
    assert fresh_process["names"]["CompilePackage"] == "type"
    assert fresh_process["names"]["errors"] == "module"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(fresh_process: dict, command: str) -> None:
    code, text = fresh_process["helps"][command]
    assert code == 0 and text.startswith("usage: precompile " + command), (code, text)


@pytest.mark.parametrize("old_module", ["precompile.recorder_hook", "precompile.recorder"])
def test_old_pickles_find_the_recorder_stand_in(old_module: str) -> None:
    # protocol 0: GLOBAL old_module._no_recorder, called with no arguments
    data = f"c{old_module}\n_no_recorder\n(tR.".encode()
    assert pickle.loads(data) is None


PROGRAM = """
import torch, precompile

def helper(x):
    return torch.relu(x) * 2

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x)
        print("graph break")
        return helper(y) + 1

torch.manual_seed(0)
m = M()
compiled = precompile.cached(m, backend="eager")

def run():
    x = torch.randn(3, 4)
    return [("m", compiled(x), m(x))]
"""


def test_stored_packages_name_precompile_only_through_the_engine_layer(
        scenario: Scenario) -> None:
    """A package written today must load after the library's modules move: whatever it
    pickles may name ``precompile._torch`` (kept importable across releases), nothing else
    of precompile's."""
    scenario.write(PROGRAM)
    scenario.run("cold").assert_ok()
    names = {m.decode() for p in scenario.packages()
             for m in re.findall(rb"precompile(?:\.[A-Za-z_]\w*)+", p.read_bytes())}
    assert names, "the package pickles no precompile name: this test checks nothing"
    assert all(n.startswith("precompile._torch.") for n in names), names
