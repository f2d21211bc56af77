"""Dynamo's per-code cache of precompiled entries (eval_frame): installing, resetting, skipping,
asking installed entries why they rejected a frame, and whether any entry would accept one."""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .guard_parity import without_user_stack

log = logging.getLogger("precompile")
_RESET_LISTENERS: list[Callable[[], None]] = []


def failed_precompiled_guards(code: types.CodeType) -> list[str]:
    """Why each precompiled entry installed on ``code`` rejected the frame Dynamo is about to
    compile. Dynamo reports recompile reasons for its own cache entries only; this asks the
    installed guard managers with the frame's locals (found on the convert_frame stack)."""
    from torch._C._dynamo.eval_frame import _debug_get_precompile_entries

    entries = _debug_get_precompile_entries(code)
    f_locals = _compiling_frame_locals(code) if entries else None
    if f_locals is None:
        return []
    reasons = (_rejection(entry, f_locals) for entry in entries)
    return [reason for reason in reasons if reason is not None]


def _compiling_frame_locals(code: types.CodeType) -> dict[str, Any] | None:
    """The locals of the frame of ``code`` that Dynamo is converting: convert_frame's
    callers hold it as their local ``frame``."""
    caller = sys._getframe(2)
    while caller is not None:
        candidate = caller.f_locals.get("frame")
        if getattr(candidate, "f_code", None) is code:
            return candidate.f_locals
        caller = caller.f_back
    return None


def _rejection(entry: Any, f_locals: dict[str, Any]) -> str | None:
    """The failing guard code parts of one entry, or None if asking failed (diagnostics only:
    a guard manager that cannot explain itself is left out)."""
    parts = _failing_parts(entry, f_locals)
    return None if parts is None else "; ".join(parts) or "guards failed"


def _failing_parts(entry: Any, f_locals: dict[str, Any]) -> list[str] | None:
    # ``check_verbose`` can leave the thread's torch-function state changed (measured: an
    # entry guarded through a module since swapped in ``sys.modules``, depending on guard
    # order); Dynamo, compiling this frame, then found its global-state guard failing on the
    # frame it was built for. Restored whatever happens.
    get_state = getattr(torch._C, "_get_torch_function_state", None)
    state = get_state() if get_state is not None else None
    try:
        info = entry.guard_manager.check_verbose(f_locals)
    except Exception:  # noqa: BLE001 - diagnostics only
        return None
    finally:
        if state is not None:
            torch._C._set_torch_function_state(state)
    parts = (without_user_stack(p).strip() for p in getattr(info, "verbose_code_parts", []))
    return [p for p in parts if p]


@dataclasses.dataclass
class EntryVerdict:
    """Whether an entry on a code object accepts a frame's locals, without running it."""

    accepted: bool
    entries: int  # entries asked: precompiled ones and Dynamo's own
    rejections: list[list[str]]  # per rejecting entry: its failing guards' code


def check_entries(code: types.CodeType, f_locals: dict[str, Any]) -> EntryVerdict:
    """Ask every guarded entry on ``code`` (installed precompiled entries, then Dynamo's own
    cache entries compiled in this process) whether it accepts ``f_locals``, as Dynamo's frame
    hook would before running the frame. Runs guards only (the C++ guard manager's
    ``check``), never the function: the caller sets up the global state (grad mode)."""
    from torch._C._dynamo.eval_frame import (
        _debug_get_cache_entry_list,
        _debug_get_precompile_entries,
    )

    entries = [*_debug_get_precompile_entries(code), *_debug_get_cache_entry_list(code)]
    rejections = []
    for entry in entries:
        if entry.guard_manager.check(f_locals):
            return EntryVerdict(True, len(entries), [])
        rejections.append(_failing_parts(entry, f_locals) or ["guards failed (no details)"])
    return EntryVerdict(False, len(entries), rejections)


def add_call_guard(guard_manager: Any, check: Callable[[Any], bool],
                   description: list[str]) -> None:
    """Add a Python check of the frame's locals to a loaded entry's guards (the same hook
    Dynamo uses for its own lambda guards)."""
    guard_manager.root.add_lambda_guard(check, description, None)


def add_epilogue_guard(guard_manager: Any, check: Callable[[Any], bool],
                       description: list[str]) -> None:
    """Add a Python check of the frame's locals that runs only after every other guard of
    the entry passed (Dynamo's epilogue lambda guards): for checks too costly to run on
    frames that other guards reject anyway."""
    guard_manager.root.add_epilogue_lambda_guard(check, description, None)


def install_entry(code: types.CodeType, guard_manager: Any, dynamo_code: types.CodeType) -> None:
    """Attach one guarded entry to ``code`` (eval_frame.c ExtraState precompile entries)."""
    torch._C._dynamo.eval_frame._load_precompile_entry(code, guard_manager, dynamo_code)


class HitCounter:
    """Counts the calls one installed entry accepted.

    It is the last guard of the entry (an epilogue lambda guard: Dynamo runs those only after
    every other guard of the entry passed), so a failing entry never reaches it. The guard is
    ``partial(next, itertools.count(1))``: a C call that returns a true value and runs no
    Python bytecode, so it costs well under a microsecond and can never let another thread
    in while Dynamo walks the entry list. Reading the count takes one ``next`` too; ``take``
    subtracts its own reads.
    """

    def __init__(self, guard_manager: Any) -> None:
        self._count = itertools.count(1)
        self._reads = 0
        self._taken = 0
        guard_manager.root.add_epilogue_lambda_guard(
            functools.partial(next, self._count), ["precompile: count this entry's hits"], None)

    def take(self) -> int:
        """Hits since the last ``take``."""
        self._reads += 1
        hits = next(self._count) - self._reads
        new, self._taken = hits - self._taken, hits
        return new


def reset_entries(code: types.CodeType) -> None:
    torch._C._dynamo.eval_frame._reset_precompile_entries(code)


def skip_code(code: types.CodeType) -> None:
    """Dynamo found nothing to compile in this frame last time: never trace it again."""
    torch._dynamo.eval_frame.skip_code(code)


def reserve_global_names(names: Sequence[str]) -> None:
    """Keep Dynamo from generating global names that an installed package already uses.

    Dynamo numbers the globals it installs (``__builtins_dict___0``, ``__resume_at_30_1``)
    with one per-process counter and asserts a new name is free. A package from another
    process brings its numbers along, so move the counter past every number it uses.
    """
    import itertools
    import re

    from torch._dynamo import bytecode_transformation as bt

    numbers = [int(m.group(1)) for n in names if (m := re.search(r"_(\d+)$", n))]
    if not numbers:
        return
    current = next(bt._unique_id_counter)
    bt._unique_id_counter = itertools.count(max(current, max(numbers) + 1))


def on_dynamo_reset(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever ``torch._dynamo.reset()`` (or ``torch.compiler.reset()``)
    clears Dynamo's code caches. Dynamo's reset leaves precompiled entries on their code
    objects, so without this a reset process would keep running stored code that a new
    process (which reset is meant to imitate) would have checked against its key first."""
    import torch._dynamo as dynamo

    if not _RESET_LISTENERS:
        original = dynamo.reset_code_caches

        def reset_code_caches() -> None:
            original()
            for notify in list(_RESET_LISTENERS):
                try:
                    notify()
                except Exception:  # noqa: BLE001 - reset is the user's call: never fail it
                    log.debug("precompile: reset listener failed", exc_info=True)

        dynamo.reset_code_caches = reset_code_caches  # reset() looks it up at call time
    if listener not in _RESET_LISTENERS:
        _RESET_LISTENERS.append(listener)
