"""Warm-up from a spec: compile every shape bucket ahead of time, without real data.

For each signature of a spec (``precompile.fleet.signatures``): skip it when an installed entry
already accepts it (the same guard check as ``coverage``), else build example inputs
(seeded random or zeros), mark its dynamic dims, call the function under the signature's
autograd mode so Dynamo compiles it, and check afterwards that an entry now accepts it
and that what was compiled can be stored. Everything compiled goes into the function's one
package, saved at the end. A CI job runs this once; every replica then installs the
package and serves every bucket with zero frames traced.

A signature is reported ``failed`` (the run goes on with the next) when the call raises,
when what it compiled cannot be stored (a bypass, with its reason), or when no entry
accepts it even after compiling (Dynamo's recompile limit, a guard on something the spec
does not control); the reason says which.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .. import _torch
from ..counters import STATS, printable
from .coverage import check_signature, error_line, install_stored, store_url
from .report import COMPILED, COVERED, FAILED, MISS, WARMUP, FleetReport, SignatureReport
from .target import FleetTarget, fleet_target
from .signatures import Signature, Spec, as_spec, build_inputs, mode_context, tensor_inputs


class Progress:
    """A plain-text progress bar on stderr: one line when a signature starts, one when it
    ends (compile logs may come in between, so nothing is redrawn in place)."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 20) -> None:
        self.total, self.stream, self.width = total, stream, width
        self.done = 0

    def _line(self, text: str) -> None:
        if self.stream is None:
            return
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        print(f"precompile warmup [{bar}] {self.done}/{self.total} {printable(text)}",
              file=self.stream, flush=True)

    def start(self, sig: Signature) -> None:
        self._line(f"{sig.name}: checking")

    def finish(self, result: SignatureReport) -> None:
        self.done += 1
        detail = f" ({'; '.join(result.reasons)})" if result.reasons else ""
        self._line(f"{result.name}: {result.status} in {result.seconds:.1f}s{detail}")


def warmup(fn_or_module: Any, signatures: Any, *, progress: bool | TextIO = True,
           **options: Any) -> FleetReport:
    """Compile ``fn_or_module`` for every signature an installed entry does not already
    accept, and save its package. ``signatures``: a Spec, a spec file path, its JSON
    document, or a list of signature dicts (``precompile.fleet.signatures``). ``progress``: a
    bar on stderr (or the given stream; False for none). ``options`` wrap a plain function
    or module as ``precompile.cached`` would (``cache_dir``, ``store``, ``backend``,
    ``dynamic``, ``mode``, ...); a meta-device model is materialized with made-up weights
    (``precompile.fleet.target``)."""
    spec = as_spec(signatures)
    target = fleet_target(fn_or_module, spec.device, spec.seed, **options)
    stream = sys.stderr if progress is True else (progress or None)
    saves_before = STATS.saves
    install_stored(target, spec)
    results = _warm_each(target, spec, Progress(len(spec.signatures), stream))
    saved = _save(target, saves_before, any(r.status == COMPILED for r in results))
    report = FleetReport(WARMUP, target.impl.label(), store_url(target), results, saved,
                         target.materialized)
    if stream is not None:
        print(report.summary(), file=stream, flush=True)
    return report


def _warm_each(target: FleetTarget, spec: Spec, bar: Progress) -> list[SignatureReport]:
    """Every signature in turn, each timed, with a progress line as it starts and ends."""
    results = []
    for sig in spec.signatures:
        bar.start(sig)
        t0 = time.perf_counter()
        result = warm_one(target, sig, spec)
        result.seconds = time.perf_counter() - t0
        bar.finish(result)
        results.append(result)
    return results


def warm_one(target: FleetTarget, sig: Signature, spec: Spec) -> SignatureReport:
    """Check one signature; compile it if no entry accepts it (a check that finds it
    covered, or that fails, is the warm-up's report as it is)."""
    before = check_signature(target, sig, spec)
    if before.status in (COVERED, FAILED):
        return before
    return _compile_one(target, sig, spec, before.signature)


def _compile_one(target: FleetTarget, sig: Signature, spec: Spec,
                 described: str) -> SignatureReport:
    """Compile a signature no entry accepts: COMPILED once an entry is stored that accepts
    it, COVERED when the call traced nothing after all, FAILED with the reason otherwise."""
    traced = STATS.frames_traced
    bypassed = len(target.impl.package.bypasses)
    try:
        _call(target, sig, spec)
    except Exception as e:  # noqa: BLE001 - one failing bucket must not stop the others
        return SignatureReport(sig.name, described, FAILED, [error_line(e)])
    new_bypasses = target.impl.package.bypasses[bypassed:]
    if new_bypasses:
        return SignatureReport(sig.name, described, FAILED,
                               ["compiled but cannot be stored: " + "; ".join(new_bypasses)])
    after = check_signature(target, sig, spec)
    if after.status == MISS:
        return SignatureReport(sig.name, described, FAILED, ["compiled, but no entry accepts "
                               "it afterwards: " + "; ".join(after.reasons)])
    if STATS.frames_traced == traced:  # every frame, graph-break resumes included, was warm
        return SignatureReport(sig.name, described, COVERED)
    return SignatureReport(sig.name, described, COMPILED)


def _call(target: FleetTarget, sig: Signature, spec: Spec) -> None:
    """Run the function on example inputs, dynamic dims marked, so Dynamo compiles it."""
    with mode_context(sig.mode):
        args, kwargs = build_inputs(sig, spec)
        for where, x in tensor_inputs(sig):
            value = args[where] if isinstance(where, int) else kwargs[where]
            for d in x.dynamic:
                _torch.mark_dynamic(value, d.dim, min=d.min, max=d.max)
        target.fn(*args, **kwargs)


def _save(target: FleetTarget, saves_before: int, compiled: bool) -> bool:
    """Write the package now; False if something compiled here was never written."""
    target.impl.save_now()
    return not compiled or STATS.saves > saves_before


__all__ = ["warmup", "warm_one", "Progress"]
