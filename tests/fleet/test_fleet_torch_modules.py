"""The fleet commands on models built from torch's own module classes (``nn.Sequential``, a
subclass that keeps its ``forward``): Dynamo compiles them through a wrapper frame
(``_torch.first_frame_function``), which is the frame ``warmup`` and ``coverage`` must check.
Each step in its own fresh process, as CI and replicas run them."""
from __future__ import annotations

import json
import textwrap

import pytest

from conftest import Scenario
from conftest import run_cli as _cli

MODELS = """
import torch, precompile

class Blocks(torch.nn.Sequential):
    '''A user's subclass that keeps torch's forward.'''

def layers():
    torch.manual_seed(0)
    return [torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)]

def make_sequential():
    return precompile.cached(torch.compile(torch.nn.Sequential(*layers()), dynamic=False,
                                           backend="aot_eager"))

def make_blocks():
    return precompile.cached(Blocks(*layers()), backend="aot_eager")
"""

SPEC = {"signatures": [
    {"name": "b2", "mode": "no_grad", "inputs": [{"shape": [2, 16]}]},
    {"name": "b8", "mode": "no_grad", "inputs": [{"shape": [8, 16]}]},
    {"name": "train", "inputs": [{"shape": [4, 16]}]},
]}

SERVE = """
import torch, precompile, models

def run():
    out = []
    for name in ("make_sequential", "make_blocks"):
        model = getattr(models, name)()
        eager = model._precompile.target
        with torch.no_grad():
            for n in (2, 8):
                x = torch.randn(n, 16)
                out.append((f"{name} {n}", model(x), eager(x)))
        x = torch.randn(4, 16)
        out.append((f"{name} train", model(x), eager(x)))
    return out
"""


@pytest.mark.parametrize("factory", ["make_sequential", "make_blocks"])
def test_warmup_and_coverage_of_torch_module_classes(scenario: Scenario, factory: str) -> None:
    root = scenario.root
    (root / "models.py").write_text(textwrap.dedent(MODELS))
    (root / "spec.json").write_text(json.dumps(SPEC))
    warm = _cli(root, "warmup", f"models:{factory}", "--spec", "spec.json", "--json")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert json.loads(warm.stdout)["counts"] == {"compiled": 3, "covered": 0, "failed": 0}
    covered = _cli(root, "coverage", f"models:{factory}", "--spec", "spec.json", "--json")
    assert covered.returncode == 0, covered.stdout + covered.stderr
    assert json.loads(covered.stdout)["counts"]["covered"] == 3, covered.stdout
    again = _cli(root, "warmup", f"models:{factory}", "--spec", "spec.json", "--json")
    assert json.loads(again.stdout)["counts"]["covered"] == 3, again.stdout + again.stderr


def test_a_replica_serves_warmed_torch_module_classes(scenario: Scenario) -> None:
    root = scenario.root
    (root / "models.py").write_text(textwrap.dedent(MODELS))
    (root / "spec.json").write_text(json.dumps(SPEC))
    for factory in ("make_sequential", "make_blocks"):
        warm = _cli(root, "warmup", f"models:{factory}", "--spec", "spec.json")
        assert warm.returncode == 0, warm.stdout + warm.stderr
    Scenario(root, "serve").write(SERVE).run("warm").assert_warm()
