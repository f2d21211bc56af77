"""Contract: warm-up and coverage report in one shape and one status vocabulary.

Each signature is covered, compiled, miss, unchecked or failed (``precompile.fleet.report``);
a warm-up counts compiled/covered/failed, a coverage check covered/miss/unchecked/failed,
and either is ``ok`` only when nothing failed or misses and the package was saved. The
failing guards a miss names carry no Dynamo user-stack comment (stripped once, in
``_torch``).
"""
from __future__ import annotations

from precompile._torch.guard_parity import without_user_stack
from precompile.fleet import report as fr


def _report(action: str, *statuses: str, saved: bool = True) -> fr.FleetReport:
    results = [fr.SignatureReport(f"s{i}", "f32[2,3]", s, ["why"] if s != fr.COVERED else [])
               for i, s in enumerate(statuses)]
    return fr.FleetReport(action, "m:f", "/cache", results, saved=saved)


def test_warmup_counts_and_verdict() -> None:
    report = _report(fr.WARMUP, fr.COMPILED, fr.COVERED, fr.COMPILED)
    assert report.to_dict()["counts"] == {"compiled": 2, "covered": 1, "failed": 0}
    assert report.ok and "2 compiled, 1 already covered, 0 failed" in report.summary()
    assert not _report(fr.WARMUP, fr.COMPILED, saved=False).ok
    failed = _report(fr.WARMUP, fr.FAILED)
    assert not failed.ok and "failed s0: why" in failed.summary()


def test_coverage_counts_and_verdict() -> None:
    report = _report(fr.COVERAGE, fr.COVERED, fr.UNCHECKED)
    assert report.to_dict()["counts"] == {"covered": 1, "miss": 0, "unchecked": 1, "failed": 0}
    assert report.ok and report.summary().endswith(
        "coverage: 1 covered, 0 miss, 1 unchecked, 0 failed")
    assert not _report(fr.COVERAGE, fr.COVERED, fr.MISS).ok


def test_one_shape_for_both() -> None:
    keys = {"function", "store", "ok", "saved", "materialized", "install_note", "counts",
            "signatures"}
    assert set(_report(fr.WARMUP).to_dict()) == set(_report(fr.COVERAGE).to_dict()) == keys


def test_the_user_stack_comment_is_stripped() -> None:
    line = "L['x'].size()[0] == 4  # y = x * 2  # work.py:4 in fn"
    assert without_user_stack(line) == "L['x'].size()[0] == 4"
