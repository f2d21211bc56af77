"""A package is used only under the key it was written for, as users hit it: one signed for
one configuration, copied over the package of another, is refused by a fresh process (a
miss with the reason, results equal to eager), never installed for the configuration it
was not compiled for."""
from __future__ import annotations

import shutil

import pytest

from conftest import Scenario

SOURCE = """
import os, torch, precompile

@precompile.cached(backend="eager", dynamic=os.environ["DYN"] == "1")
def f(x):
    return torch.sin(x) * 2 + x.sum()

def run():
    x = torch.randn(8)
    return [("f", f(x), torch.sin(x) * 2 + x.sum())]
"""


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_a_signed_package_is_not_served_under_another_configurations_key(
        scenario: Scenario) -> None:
    scenario.write(SOURCE)
    scenario.env_extra["PRECOMPILE_SIGNING_KEY"] = "the-key"
    scenario.run("cold", DYN="1").assert_ok()
    (dynamic_pkg,) = scenario.packages()
    scenario.run("cold", DYN="0").assert_ok()
    (static_pkg,) = set(scenario.packages()) - {dynamic_pkg}
    scenario.run("warm", DYN="0").assert_warm()  # its own package: a hit
    shutil.copy(dynamic_pkg, static_pkg)  # genuinely signed, but for dynamic=True
    run = scenario.run("refused", DYN="0").assert_ok()  # not "warm": it must compile
    assert run.stats["hits"] == 0 and run.stats["load_errors"] == 1, run.describe()
    assert run.frames >= 1, run.describe()  # compiled for itself instead
    assert any("was written for key" in r for r in run.stats["miss_reasons"]), run.describe()
