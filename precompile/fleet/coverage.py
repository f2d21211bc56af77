"""Coverage: would the installed entries run each signature without compiling?

The question a rollout asks before it starts replicas: for every shape bucket the fleet
will call, does the cache hold an entry that accepts it? This answers without running the
model: it installs the stored package as a first call would (key, fetch, verify, install),
builds example inputs for each signature, binds them to the first frame's locals, and asks
every guarded entry on that frame (``_torch.check_entries``: Dynamo's guard managers, the
same check the frame hook runs) under the signature's autograd mode. A miss names the
guard that failed in each entry.

What cannot be checked without running: frames after a graph break (resume functions) and
functions Dynamo compiled as their own frames see locals that only exist once the code
before them has run. When a package holds such frames, a signature whose first frame is
covered is reported ``unchecked`` with their names, not ``covered`` (statuses: ``report``).
"""
from __future__ import annotations

from typing import Any

from .. import _torch
from ..errors import PackageError, WarmupError
from .report import COVERAGE, COVERED, FAILED, MISS, UNCHECKED, FleetReport, SignatureReport
from .target import FleetTarget, fleet_target, first_frame, first_function
from ..package.model import ROLE_MAIN
from ..identity.names import code_fingerprint
from .signatures import Signature, Spec, as_spec, build_inputs, mode_context, size_variants

_MAX_PART = 240


def coverage(fn_or_module: Any, signatures: Any, **options: Any) -> FleetReport:
    """Whether the installed entries of ``fn_or_module`` accept every signature, without
    running it. ``signatures``: a Spec, a spec file path, its JSON document, or a list of
    signature dicts (see ``precompile.fleet.signatures``). ``options`` wrap a plain function or
    module as ``precompile.cached`` would (``cache_dir``, ``store``, ``backend``, ...)."""
    spec = as_spec(signatures)
    target = fleet_target(fn_or_module, spec.device, spec.seed, **options)
    note = install_stored(target, spec)
    results = [check_signature(target, sig, spec) for sig in spec.signatures]
    return FleetReport(COVERAGE, target.impl.label(), store_url(target), results,
                       install_note=note)


def install_stored(target: FleetTarget, spec: Spec) -> str | None:
    """The first call's warm path, run with the first signature's inputs (their devices
    are part of the key) and without calling; why nothing was installed, or None."""
    impl = target.impl
    sig = spec.signatures[0]
    try:
        with mode_context(sig.mode):
            args, kwargs = build_inputs(sig, spec)
            impl.prepare(args, kwargs)
    except PackageError as e:  # strict mode raises its miss
        return str(e)
    if impl.installation is None or not impl.installation.installed_entries:
        return impl.last_miss or "no entry installed"
    return None


def check_signature(target: FleetTarget, sig: Signature, spec: Spec) -> SignatureReport:
    """One signature against every entry on the function's first frame, at its example
    sizes and at the ends of each dynamic dim's range."""
    described = sig.describe()
    try:
        reasons = _misses(target, sig, spec)
    except (WarmupError, RuntimeError, TypeError, ValueError) as e:
        return SignatureReport(sig.name, described, FAILED, [error_line(e)])
    if reasons:
        return SignatureReport(sig.name, described, MISS, reasons)
    later = later_frames(target)
    if later:
        return SignatureReport(sig.name, described, UNCHECKED, [
            f"the function's own frame is covered; {len(later)} frame(s) after graph breaks "
            f"are checked only when they run: {', '.join(later)}"])
    return SignatureReport(sig.name, described, COVERED)


def _misses(target: FleetTarget, sig: Signature, spec: Spec) -> list[str]:
    """Why each size variant that no entry accepts is refused (empty: every variant is
    accepted). Raises what building or binding the inputs raises: the signature cannot be
    checked at all."""
    reasons = []
    for label, sizes in size_variants(sig):
        verdict = _verdict(target, sig, spec, sizes)
        if not verdict.accepted:
            reasons.append(_miss_reason(label, verdict))
    return reasons


def _verdict(target: FleetTarget, sig: Signature, spec: Spec,
             sizes: dict[tuple[Any, int], int]) -> _torch.EntryVerdict:
    with mode_context(sig.mode):
        args, kwargs = build_inputs(sig, spec, sizes)
        code, f_locals = first_frame(target.impl, args, kwargs)
        return _torch.check_entries(code, f_locals)


def _miss_reason(label: str, verdict: _torch.EntryVerdict) -> str:
    if not verdict.entries:
        return f"{label}: no compiled entry for the function at all"
    failing = "; ".join(f"entry {i}: {_clip(r)}" for i, r in enumerate(verdict.rejections, 1))
    return f"{label}: {failing}"


def later_frames(target: FleetTarget) -> list[str]:
    """Names of the frames with entries other than the function's own first frame
    (graph-break resume functions, functions compiled as their own frames)."""
    code = first_function(target.impl.target)[0].__code__
    first = (code.co_qualname, code_fingerprint(code))
    return sorted({f.qualname for f in target.impl.package.frames
                   if f.role != ROLE_MAIN and f.entries and (f.qualname, f.fingerprint) != first})


def _clip(parts: list[str]) -> str:
    """An entry's failing guards, bounded."""
    text = "; ".join(parts)
    return text if len(text) <= _MAX_PART else text[:_MAX_PART - 3] + "..."


def error_line(e: BaseException) -> str:
    """Why a signature failed, as a report line: the error's type and first line, bounded."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:_MAX_PART]


def store_url(target: FleetTarget) -> str:
    store = target.impl.store
    return store.url if store is not None else "no store"
