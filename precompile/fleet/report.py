"""What ``warmup`` and ``coverage`` report: one status per signature, in one vocabulary.

* ``covered``: an installed entry accepts it; nothing compiles on that call;
* ``compiled``: warm-up compiled it and the package now holds the entry;
* ``miss``: no entry accepts it (the failing guard of each entry says why);
* ``unchecked``: the function's own frame is covered; frames after graph breaks are
  checked only when they run;
* ``failed``: it could not be checked or compiled (the signature does not fit the
  function, the compile raised, or what it compiled cannot be stored).

Warm-up reports covered, compiled or failed; coverage reports covered, miss, unchecked or
failed. Either report is ``ok`` when nothing failed, nothing misses and the package was saved.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..counters import printable

COVERED, COMPILED, MISS, UNCHECKED, FAILED = "covered", "compiled", "miss", "unchecked", "failed"
WARMUP, COVERAGE = "warmup", "coverage"
_COUNTED = {WARMUP: (COMPILED, COVERED, FAILED), COVERAGE: (COVERED, MISS, UNCHECKED, FAILED)}


@dataclasses.dataclass
class SignatureReport:
    """One signature: its status, why (for anything but covered and compiled) and, for
    warm-up, how long it took."""

    name: str
    signature: str  # readable: dtypes, shapes (dynamic dims starred), mode
    status: str
    reasons: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FleetReport:
    """Every signature of a spec, as warm-up left it or coverage found it."""

    action: str  # WARMUP | COVERAGE
    function: str
    store: str
    results: list[SignatureReport]
    saved: bool = True  # the package holds everything compiled (or nothing needed saving)
    materialized: bool = False  # a meta-device model got made-up weights to compile with
    install_note: str | None = None  # why nothing was installed, if so

    def with_status(self, status: str) -> list[SignatureReport]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        """Nothing would compile that can be known without running (the CI gate), and
        whatever compiled was saved."""
        return self.saved and not self.with_status(MISS) and not self.with_status(FAILED)

    def counts(self) -> dict[str, int]:
        return {s: len(self.with_status(s)) for s in _COUNTED[self.action]}

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "store": self.store, "ok": self.ok,
                "saved": self.saved, "materialized": self.materialized,
                "install_note": self.install_note, "counts": self.counts(),
                "signatures": [r.to_dict() for r in self.results]}

    def summary(self) -> str:
        """For people: every field from the store or the spec made printable."""
        return "\n".join(_warmup_lines(self) if self.action == WARMUP else _coverage_lines(self))


def _warmup_lines(report: FleetReport) -> list[str]:
    counts = report.counts()
    lines = [f"warmup of {printable(report.function)} into {printable(report.store)}: "
             f"{counts[COMPILED]} compiled, "
             f"{counts[COVERED]} already covered, {counts[FAILED]} failed"]
    lines += [f"  failed {printable(r.name)}: {printable('; '.join(r.reasons))}"
              for r in report.with_status(FAILED)]
    if not report.saved:
        lines.append("  the package could not be saved (see the warning above)")
    if report.materialized:
        lines.append("  (the model was on the meta device: compiled with made-up weights)")
    return lines


def _coverage_lines(report: FleetReport) -> list[str]:
    lines = [f"{printable(report.function)} ({printable(report.store)})"]
    if report.install_note:
        lines.append(f"  nothing installed: {printable(report.install_note)}")
    for r in report.results:
        lines.append(f"  {r.status.upper():9} {printable(r.signature)}")
        lines.extend(f"            {printable(reason)}" for reason in r.reasons)
    lines.append("coverage: " + ", ".join(f"{n} {s}" for s, n in report.counts().items()))
    return lines
