"""The pytest plugin, run in pytest subprocesses on a suite that really compiles: its summary
line counts a cold run and then a warm one, ``--precompile-strict`` fails a run on any miss,
its options show in ``--help``, and under xdist the workers' counts are added up."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# pytester restores sys.modules after each test, dropping modules first imported during it.
# torch cannot be imported twice in one process, so import it (and precompile) up front.
import precompile.api  # noqa: E402,F401
import torch  # noqa: E402,F401

pytest_plugins = ["pytester"]

SUITE = '''
import os
import pytest
import torch
import precompile
from precompile.errors import PackageError

@precompile.cached(backend="eager")
def f(x):
    y = x.sin()
    print("graph break")
    return y + 1

def test_f():
    assert os.environ["PRECOMPILE_CACHE_DIR"] == os.path.abspath(os.environ["EXPECT_CACHE"])
    x = torch.ones(3)
    if os.environ.get("EXPECT_MISS"):
        assert os.environ["PRECOMPILE_STRICT"] == "1"
        with pytest.raises(PackageError):  # strict: a miss raises instead of compiling
            f(x)
    else:
        assert torch.equal(f(x), x.sin() + 1)
'''

PLUGIN = ("-p", "precompile.pytest_plugin", "-p", "no:cacheprovider")


@pytest.fixture
def suite(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch = clean_env
    monkeypatch.delenv("EXPECT_MISS", raising=False)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    pytester.makepyfile(test_compiled=SUITE)
    return pytester


def test_summary_line_cold_then_warm_strict(suite: pytest.Pytester,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stats_file = suite.path / "stats.json"
    monkeypatch.setenv("PRECOMPILE_STATS_FILE", str(stats_file))
    monkeypatch.setenv("EXPECT_CACHE", "cache")
    cold = suite.runpytest_subprocess(*PLUGIN, "--precompile-cache", "cache")
    cold.assert_outcomes(passed=1)
    # saves: 1, or 2 when the background saver wrote between the two frames' compiles
    cold.stdout.fnmatch_lines([
        "precompile: 0 hits, 1 misses, [12] saves, frames traced 2",
        "  miss: test_compiled:f: no package under key f-* (first compile)",
    ])
    assert list((suite.path / "cache").glob("f-*.pcpkg"))
    written = json.loads(stats_file.read_text())
    assert written["stats"]["misses"] == 1 and written["stats"]["saves"] >= 1

    warm = suite.runpytest_subprocess(*PLUGIN, "--precompile-cache", "cache",
                                      "--precompile-strict")
    warm.assert_outcomes(passed=1)
    assert warm.ret == 0
    warm.stdout.fnmatch_lines(["precompile: 1 hits, 0 misses, 0 saves, frames traced 0*"])


def test_strict_fails_the_run_on_any_miss(suite: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPECT_CACHE", "empty-cache")
    monkeypatch.setenv("EXPECT_MISS", "1")
    result = suite.runpytest_subprocess(*PLUGIN, "--precompile-cache", "empty-cache",
                                        "--precompile-strict")
    result.assert_outcomes(passed=1)  # the test itself expected the miss ...
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ... but the run fails
    result.stdout.fnmatch_lines([
        "precompile: 0 hits, 1 misses, 0 saves, frames traced 0",
        "*--precompile-strict: 1 cache misses, failing the run*",
    ])


def test_options_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*PLUGIN, "--help")
    result.stdout.fnmatch_lines(["*--precompile-cache=DIR*", "*--precompile-strict*"])
    assert not Path(pytester.path / "cache").exists()


XDIST_SUITE = '''
import torch
import precompile

@precompile.cached(backend="eager")
def g(x):
    return x * 3

@precompile.cached(backend="eager")
def h(x):
    return x - 2

def test_g():
    assert torch.equal(g(torch.ones(2)), torch.full((2,), 3.0))

def test_h():
    assert torch.equal(h(torch.ones(2)), torch.full((2,), -1.0))
'''


@pytest.mark.slow  # one of the slowest quick tests: make test stays under 10 minutes
def test_xdist_workers_are_added_up(pytester: pytest.Pytester,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Under pytest-xdist the controller reports (and --precompile-strict judges) the sum of
    its workers' counters, not its own empty ones."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_two=XDIST_SUITE)
    cold = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "--precompile-cache", "cache")
    cold.assert_outcomes(passed=2)
    cold.stdout.fnmatch_lines(["precompile: 0 hits, 2 misses, 2 saves, frames traced 2*"])
    warm = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "--precompile-cache", "cache",
                                         "--precompile-strict")
    assert warm.ret == 0
    warm.stdout.fnmatch_lines(["precompile: 2 hits, 0 misses, 0 saves, frames traced 0*"])
