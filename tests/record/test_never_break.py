"""precompile never breaks a program plain torch.compile runs: whatever goes wrong while
recording is a bypass with its reason, and what precompile attaches to user objects survives
what users do with them. Fresh processes, results checked against eager."""
from __future__ import annotations

from conftest import Scenario


def test_unpicklable_object_in_guarded_scope_is_stored_by_what_its_guards_read(
        scenario: Scenario) -> None:
    """Dynamo pickles every object its guards read; torch 2.13 let a TypeError from that
    (an object holding a lock) escape into the user's call. Such an object is stored as a
    stand-in holding only what the guards read (``_torch/standins.py``), so the lock never
    reaches a pickle and the next process warm-starts."""
    scenario.write("""
        import threading, torch, precompile

        class Config:
            def __init__(self):
                self.scale = 3.0
                self.lock = threading.Lock()   # cannot be pickled

        CFG = Config()

        @precompile.cached(backend="aot_eager")
        def f(x):
            return x * CFG.scale

        def run():
            x = torch.arange(4.0)
            return [("y", f(x), x * 3.0)]
    """)
    cold = scenario.run("cold").assert_ok()
    assert cold.stats["bypasses"] == 0, cold.describe()
    scenario.run("warm").assert_warm()


def test_a_failing_recorder_step_is_a_bypass(scenario: Scenario) -> None:
    """A bug inside precompile's recorder (simulated: recording inlined sources raises, after
    the entry was added) reaches neither the call nor the store: the entry is dropped, since
    without its sources a later edit could not be detected."""
    scenario.write("""
        import torch, precompile, precompile.package.keys

        def helper(x):
            return x.sin()

        @precompile.cached(backend="aot_eager")
        def f(x):
            return helper(x) + 1

        def boom(code):
            raise RuntimeError("simulated recorder bug")

        def run():
            precompile.package.keys.source_range_for = boom
            x = torch.arange(4.0)
            return [("y", f(x), x.sin() + 1), ("again", f(x + 1), (x + 1).sin() + 1)]
    """)
    run = scenario.run("cold").assert_ok()
    reasons = " ".join(run.stats["miss_reasons"])
    assert "recording failed in add_inlined_source (RuntimeError: simulated recorder bug)" \
        in reasons, run.describe()
    assert run.stats["bypasses"] == 1, run.describe()
    assert run.stats["frames_traced"] == 1, run.describe()  # the second call used the live entry


def test_decorated_functions_survive_copy_and_pickle(scenario: Scenario) -> None:
    scenario.write("""
        import copy, pickle, torch, precompile

        @precompile.cached(backend="aot_eager")
        def f(x):
            return x.cos()

        def run():
            x = torch.arange(3.0)
            want = x.cos()
            rows = [("copy", copy.deepcopy(f)(x), want), ("first", f(x), want)]
            rows.append(("pickle_by_name", pickle.loads(pickle.dumps(f)) is f, True))
            rows.append(("copy_after", copy.copy(f)(x), want))
            return rows
    """)
    scenario.run("cold").assert_ok()
    scenario.run("warm").assert_warm()
