"""The order a code object's installed entries are checked in: most-hit first, learned from
the calls this process makes, so per-call cost does not grow with the number of entries.

Dynamo checks the entries precompile attaches to a code object (``_torch.install_entry``)
one after the other in attach order, before its own cache entries, and unlike its own cache
never moves a hit to the front. With N static-shape entries, a call that matches the last
one pays N-1 failing guard checks (0.5-1.6 µs each): 4.3-4.8x plain ``torch.compile`` per
call at N=100. Torch offers no way to reorder that list except emptying it and attaching
every entry again.

So every entry of a code object with two or more entries counts its hits
(``_torch.HitCounter``: one C call on the entry that accepts a call, none on those that
fail). Every ``CHECK_EVERY`` precompiled calls the counts since the last look are compared
with the current order: when putting the most-hit entries first would have saved, over that
window, more failing checks than re-attaching all entries costs (``REATTACH_COST`` checks
per entry), the code's entries are re-attached in that order (ties keep their place). A
steady mix keeps its order and pays only the counting; a shift in traffic moves the new hot
entries to the front within one window. Every entry stays attached, so a call no entry
accepts still fails every guard and compiles.

Re-attaching is only safe while no lookup walks the list: torch 2.13 iterates it in C++
while guards (some in Python) run. It therefore happens at the start of a precompiled call,
on the calling thread, only when no other precompiled call is in flight; a call that starts
meanwhile waits for it before it enters Dynamo (see ``EntryOrder.enter``).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import types
from typing import Any

from .. import _torch

CHECK_EVERY = 64  # precompiled calls between looks at the hit counts
REATTACH_COST = 3  # re-attaching one entry costs about as much as this many failing checks


@dataclasses.dataclass
class _Entry:
    guard_manager: Any
    dynamo_code: types.CodeType
    hits: _torch.HitCounter | None = None


@dataclasses.dataclass
class _CodeEntries:
    code: types.CodeType
    entries: list[_Entry] = dataclasses.field(default_factory=list)


class EntryOrder:
    """Every code object's installed entries, in the order Dynamo checks them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[int, _CodeEntries] = {}  # by id(): code objects compare by value
        self._in_flight: list[None] = []  # one item per call in flight (append/pop are atomic)
        self._reordering = False
        self._calls = 0

    def attach(self, code: types.CodeType, guard_manager: Any,
               dynamo_code: types.CodeType) -> None:
        """Attach one entry after the code's others; from the second entry on, count hits."""
        slot = self._codes.setdefault(id(code), _CodeEntries(code))
        entry = _Entry(guard_manager, dynamo_code)
        slot.entries.append(entry)
        if len(slot.entries) >= 2:
            for e in slot.entries:
                if e.hits is None:
                    e.hits = _torch.HitCounter(e.guard_manager)
        _torch.install_entry(code, guard_manager, dynamo_code)

    def detach(self, code: types.CodeType) -> None:
        """Take every installed entry off ``code``."""
        self._codes.pop(id(code), None)
        _torch.reset_entries(code)

    def enter(self) -> None:
        """A precompiled call starts; every ``CHECK_EVERY`` calls, look at the hit counts.

        No lock on the common path: a call registers itself, then waits only if a reorder
        is under way. A reorder sets ``_reordering`` before it counts the calls in flight,
        so a call either is counted (and the reorder is skipped) or sees the flag and waits
        on the lock the reorder holds."""
        self._in_flight.append(None)
        if self._reordering:
            with self._lock:
                pass
        self._calls += 1
        if self._calls >= CHECK_EVERY:
            self._look()

    def leave(self) -> None:
        try:
            self._in_flight.pop()
        except IndexError:  # a call that was in flight across a fork
            pass

    def _look(self) -> None:
        with self._lock:
            self._calls = 0
            self._reordering = True
            try:
                if len(self._in_flight) == 1:
                    for slot in self._codes.values():
                        _reorder(slot)  # a single entry never pays (_better_order)
            finally:
                self._reordering = False

    def _after_fork_in_child(self) -> None:
        """Only the forking thread survives a fork: no other call is in flight, and a lock
        another thread held would stay locked forever."""
        self._lock = threading.Lock()
        self._in_flight = []
        self._reordering = False


def _reorder(slot: _CodeEntries) -> None:
    """Re-attach the code's entries most-hit first, when that pays for itself."""
    order = _better_order([e.hits.take() if e.hits is not None else 0 for e in slot.entries])
    if order is not None:
        _reattach(slot, order)


def _reattach(slot: _CodeEntries, order: list[int]) -> None:
    """Take the code's entries off and attach them again in ``order`` (indices into
    ``slot.entries``): Dynamo checks a code object's entries in the order they were
    attached."""
    slot.entries = [slot.entries[k] for k in order]
    _torch.reset_entries(slot.code)
    for e in slot.entries:
        _torch.install_entry(slot.code, e.guard_manager, e.dynamo_code)


def _better_order(hits: list[int]) -> list[int] | None:
    """The entries' indices most-hit first (ties keep their place), or None when that order
    would have saved fewer failing checks over the window than re-attaching costs."""
    order = sorted(range(len(hits)), key=lambda i: -hits[i])
    saved = sum(h * i for i, h in enumerate(hits)) - sum(hits[k] * i for i, k in enumerate(order))
    return order if saved >= REATTACH_COST * len(hits) else None


ORDER = EntryOrder()
os.register_at_fork(after_in_child=ORDER._after_fork_in_child)
