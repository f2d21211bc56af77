"""pytest plugin: run a test suite against one precompile cache and report what it did.

    pytest -p precompile.pytest_plugin --precompile-cache .precompile-cache [--precompile-strict]

``--precompile-cache DIR``  every ``@precompile.cached`` function uses DIR (sets
                            ``PRECOMPILE_CACHE_DIR`` before conftest files and test modules
                            are imported, and hides ``PRECOMPILE_CACHE_URL`` for the run).
``--precompile-strict``     sets ``PRECOMPILE_STRICT=1`` (a miss raises instead of compiling)
                            and fails the run if anything missed at all, e.g. a CI job that
                            must run entirely from a cache an earlier job filled.

At the end of the session it prints::

    precompile: 3 hits, 1 misses, 1 saves, frames traced 2
      miss: mymod:f: no package under key f-... (first compile)

and, when ``$PRECOMPILE_STATS_FILE`` is set, writes the counters there as JSON for
``precompile stats``. Under pytest-xdist the workers' counters are added up on the controller.
Environment changes are undone when pytest finishes (so in-process ``pytester`` runs do not
leak them).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

CACHE_ENV = "PRECOMPILE_CACHE_DIR"
URL_ENV = "PRECOMPILE_CACHE_URL"
STRICT_ENV = "PRECOMPILE_STRICT"
_WORKER_KEY = "precompile_stats"


@dataclasses.dataclass
class _State:
    saved_env: dict[str, str | None] = dataclasses.field(default_factory=dict)
    baseline: dict[str, Any] = dataclasses.field(default_factory=dict)  # counters at start
    workers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    totals: dict[str, Any] | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    strict_failed: bool = False


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("precompile", "precompile warm-start cache")
    group.addoption("--precompile-cache", metavar="DIR", default=None,
                    help="cache directory for every @precompile.cached function in this run "
                         f"(sets ${CACHE_ENV})")
    group.addoption("--precompile-strict", action="store_true", default=False,
                    help=f"set ${STRICT_ENV}=1 and fail the run if any precompile cache miss "
                         "happened")


def _state(config: pytest.Config) -> _State:
    if _STATE not in config.stash:
        config.stash[_STATE] = _State()
    return config.stash[_STATE]


def _set_env(state: _State, name: str, value: str | None) -> None:
    """Set (None: unset) a variable, keeping its first value to restore at the end."""
    state.saved_env.setdefault(name, os.environ.get(name))
    _put_env(name, value)


def _put_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _apply_options(config: pytest.Config, cache: str | None, strict: bool) -> None:
    state = _state(config)
    if cache:
        base = str(config.invocation_params.dir)
        path = os.path.abspath(os.path.join(base, os.path.expanduser(cache)))
        _set_env(state, CACHE_ENV, path)
        _set_env(state, URL_ENV, None)  # it would take precedence over the directory
    if strict:
        _set_env(state, STRICT_ENV, "1")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    # Runs before conftest.py files import (only for plugins given with -p or installed):
    # a conftest that decorates at import time must see the cache directory already.
    ns = early_config.known_args_namespace
    _apply_options(early_config, getattr(ns, "precompile_cache", None),
                   bool(getattr(ns, "precompile_strict", False)))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _apply_options(config, config.getoption("precompile_cache"),
                   bool(config.getoption("precompile_strict")))
    _state(config).baseline = _stats()


def pytest_unconfigure(config: pytest.Config) -> None:
    state = _state(config)
    for name, value in state.saved_env.items():
        _put_env(name, value)
    state.saved_env.clear()


def _stats() -> dict[str, Any]:
    import precompile

    return precompile.stats()


def _delta(now: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """This session's share of the process-wide counters."""
    return {name: _counter_delta(name, value, base.get(name)) for name, value in now.items()}


def _counter_delta(name: str, value: Any, before: Any) -> Any:
    """One counter's growth since ``before``: new miss reasons, a number's difference, or
    (anything else) the value as it is now."""
    if name == "miss_reasons":
        seen = set(before or [])
        return [r for r in value if r not in seen]
    if isinstance(value, (int, float)) and isinstance(before, (int, float)):
        return value - before
    return value


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: a worker finished; keep its counters."""
    stats = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if isinstance(stats, dict):
        _state(node.config).workers.append(stats)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import precompile
    from precompile import auto_report

    config = session.config
    state = _state(config)
    try:
        precompile.flush(timeout=120)  # count (and finish) the saves of this session
    except Exception as e:  # noqa: BLE001 - reporting must never break the run
        state.errors.append(f"saving packages failed: {type(e).__name__}: {e}")
    mine = _delta(_stats(), state.baseline)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        workeroutput[_WORKER_KEY] = mine
        return
    # the workers' counters add up as the processes of a PRECOMPILE_AUTO run do
    state.totals = totals = auto_report.totals([mine, *state.workers])
    if config.getoption("precompile_strict") and totals.get("misses", 0) > 0:
        _fail_strict(session, state)
    _write_stats_file(state, totals)


def _fail_strict(session: pytest.Session, state: _State) -> None:
    """--precompile-strict and a miss: the run fails, unless it already failed otherwise."""
    state.strict_failed = True
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_stats_file(state: _State, totals: dict[str, Any]) -> None:
    """The session's counters into ``$PRECOMPILE_STATS_FILE`` when set (``precompile
    stats --file`` reads it); a file that cannot be written is a reported error."""
    from precompile import settings

    stats_file = settings.text(settings.STATS_FILE)
    if not stats_file:
        return
    from precompile.counters import write_stats_file

    try:
        write_stats_file(stats_file, totals, source="pytest")
    except OSError as e:
        state.errors.append(f"cannot write {stats_file}: {e}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    state = _state(config)
    if state.totals is None:  # nothing to report: an xdist worker, or no session ran
        return
    from precompile.counters import printable, stats_summary_lines

    write = terminalreporter.write_line
    for line in stats_summary_lines(state.totals):
        write(line)
    for error in state.errors:
        write(f"precompile: {printable(error)}", yellow=True)
    if state.strict_failed:
        write(f"precompile: --precompile-strict: {state.totals.get('misses', 0)} cache "
              "misses, failing the run", red=True, bold=True)
