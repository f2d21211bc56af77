"""The entry Dynamo is compiling for a recorder, and how it ends up a bypass instead of stored.

Dynamo tells the recorder about one compile over several calls (import sources, backend ids,
identity guards...) before ``add_guarded_code`` hands over the entry: :class:`PendingEntry`
collects them, one per frame on the recorder's stack (a frame Dynamo compiles while
compiling another sits on top of it).

Every recorder step runs inside the user's call, so none may raise. An entry another process
could not rebuild, or one whose recording failed, is a *bypass*: not stored, reported once
with its reason (the log, ``stats()``, the package's ``bypasses``), and the call goes on
exactly as under plain torch.compile. This module is that contract (:func:`never_raises`,
:func:`report_bypass`), kept apart from the protocol steps (``recorder.py``) so that every
way an entry can fail to be stored is reported the same way, in one place.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .. import _torch
from ..counters import STATS
from ..package.model import FrameRecord, GuardedEntry, IdentityCheck

log = logging.getLogger("precompile")

Step = Callable[..., Any]  # a recorder method Dynamo calls


@dataclasses.dataclass
class PendingEntry:
    """What Dynamo told us about the frame being compiled right now."""

    frame: FrameRecord
    globals_before: frozenset[str]
    import_sources: dict[str, str] = dataclasses.field(default_factory=dict)
    backend_ids: list[str] = dataclasses.field(default_factory=list)
    identity_checks: list[IdentityCheck] = dataclasses.field(default_factory=list)
    bypass_reason: str | None = None
    added: list[GuardedEntry] = dataclasses.field(default_factory=list)  # entries stored
    live_only: list[int] = dataclasses.field(default_factory=list)  # see guard_filter.py
    # _init_group calls Dynamo made on live optimizers while tracing (first_step.HeardCall)
    optimizer_calls: list[tuple[Any, str, list[list[Any]], int]] = dataclasses.field(
        default_factory=list)
    reported: bool = False  # the bypass is in stats() already
    # global name -> each marked-constant call Dynamo answered under it (constant_calls.py):
    # a ConstantCall, or why that call cannot be repeated in another process
    constant_calls: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    # id(f.__globals__) -> the guard source of a function f an identity guard pinned: how a
    # scope no module owns (``___unnamed_scope_<id>``) is found again (storable.py)
    globals_sources: dict[int, str] = dataclasses.field(default_factory=dict)


def runs_eagerly_after(pending: PendingEntry, error: BaseException | None,
                       skip_on_soft_failure: bool) -> bool:
    """Whether the compile ended without an entry (stored or bypassed) and Dynamo runs the
    frame eagerly from now on: nothing to compile, or an ``error`` it answers by skipping
    the frame (without fullgraph: ``skip_on_soft_failure``)."""
    if pending.added or pending.bypass_reason is not None:
        return False
    return error is None or (skip_on_soft_failure and _torch.dynamo_skips_frame_after(error))


class Recording(Protocol):
    """What reporting a bypass needs of the recorder (``recorder.CompilePackage``)."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def bypasses(self) -> list[str]: ...

    @property
    def current_entry(self) -> PendingEntry | None: ...


def never_raises(fallback: Step | None) -> Callable[[Step], Step]:
    """Dynamo calls the recorder in the middle of compiling the user's frame, so an exception
    here would reach the user's call. A recorder step that fails makes the entry being
    compiled a bypass with the reason (:func:`recording_failed`) and returns
    ``fallback(*args)`` (or None): the call goes on exactly as under plain torch.compile."""
    def decorate(method: Step) -> Step:
        @functools.wraps(method)
        def step(self: Recording, *args: Any) -> Any:
            try:
                return method(self, *args)
            except Exception as e:  # noqa: BLE001 - see docstring
                recording_failed(self, method.__name__, e)
                return fallback(*args) if fallback is not None else None
        return step
    return decorate


def recording_failed(recorder: Recording, step: str, error: Exception) -> None:
    """A recorder step raised: never store the entry it belongs to, and say why."""
    reason = f"recording failed in {step} ({type(error).__name__}: {error})"
    log.debug("precompile: %s", reason, exc_info=True)
    pending = recorder.current_entry
    if pending is None:
        STATS.bypasses += 1
        STATS.note_miss(f"not stored: {reason}")
        return
    if pending.bypass_reason is None:
        pending.bypass_reason = reason
    if pending.added:  # stored before a later step failed (recording its inlined sources)
        _unstore(recorder, pending)
        report_bypass(recorder, pending)
    elif step == "add_guarded_code":  # report_bypass says it once, whichever step failed
        report_bypass(recorder, pending)
    # otherwise add_guarded_code reports the reason when Dynamo gets there


def _unstore(recorder: Recording, pending: PendingEntry) -> None:
    """Take back the entries ``pending`` already added to its frame."""
    with recorder.lock:
        pending.frame.entries = [e for e in pending.frame.entries if e not in pending.added]
        pending.added.clear()


def report_bypass(recorder: Recording, pending: PendingEntry) -> None:
    """Report that ``pending`` is not stored, with its ``bypass_reason``; once per entry."""
    if pending.reported:
        return
    pending.reported = True
    reason = f"{pending.frame.qualname}: {pending.bypass_reason}"
    log.info("precompile: not storing an entry of %s", reason)
    STATS.bypasses += 1
    STATS.note_miss(f"not stored: {reason}")
    with recorder.lock:
        recorder.bypasses.append(reason)
