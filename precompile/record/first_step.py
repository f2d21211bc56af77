"""The first optimizer step: the state Dynamo made while tracing, made again before an
installed entry's guards look at it.

Dynamo calls an optimizer's real ``_init_group`` while it traces ``step()`` and guards on
the state that call created (``len(L['self'].state) == 4``), so the entry compiled on a
job's first step matches only an optimizer that has that state already. The recorder hears
each such call (``_torch.recording_state_inits``) and stores it with the entry
(``model.StateInit``); installing the entry puts :class:`StatePrologue` first among its
guards, which makes the same calls on the optimizer the frame is called with, when that
optimizer's state is still missing. These are the calls eager ``step()`` makes first, with
the same arguments, so the state is what eager would create; the entry's own guards then
check it like any other state, and anything they reject compiles normally.
"""
from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

from .. import _torch
from ..identity.guard_path import parse
from ..identity.checks import GlobalsView
from ..package.model import StateInit
from ..identity.fingerprints import object_fingerprint

log = logging.getLogger("precompile")

# (optimizer, its guard source, encoded _init_group arguments, state size before the call)
HeardCall = tuple[Any, str, list[list[Any]], int]


def state_inits(heard: list[HeardCall]) -> list[StateInit]:
    """The ``_init_group`` calls of one entry's trace, per optimizer source, for the
    optimizers whose state those calls created (others need nothing made again)."""
    by_source: dict[str, StateInit] = {}
    grew: set[str] = set()
    for optimizer, source, args, before in heard:
        kind = object_fingerprint(type(optimizer))
        by_source.setdefault(source, StateInit(source, kind, [])).calls.append(args)
        if _torch.optimizer_state_size(optimizer) > before:
            grew.add(source)
    return [init for source, init in by_source.items() if source in grew]


class StatePrologue:
    """A guard that never fails: it makes the recorded ``_init_group`` calls on each
    optimizer the call reaches, of the class the entry was traced with, whose state is
    missing entries, and says yes.

    Cheap after the first step: an optimizer whose state has an entry per parameter, or the
    same number of entries as when this prologue last ran on it, is left alone. Raises
    GuardPathError for a source that is not a guard path (the installer then installs the
    entry without a prologue).
    """

    def __init__(self, inits: list[StateInit], scope: dict[str, Any]) -> None:
        self.inits = inits
        self.paths = [(parse(i.source), i.kind, i.calls) for i in inits]
        self.globals = GlobalsView(scope)
        self._sizes: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._kinds: dict[type, str] = {}

    def description(self) -> list[str]:
        return [f"precompile: optimizer state of {i.source} made as Dynamo made it while tracing"
                for i in self.inits]

    def __call__(self, f_locals: Mapping[str, Any]) -> bool:
        for path, kind, calls in self.paths:
            try:
                optimizer = path.lookup(self.globals, f_locals)  # type: ignore[arg-type]
                if _torch.is_optimizer(optimizer) and self._kind(optimizer) == kind:
                    self._complete(optimizer, calls)
            except Exception:  # noqa: BLE001 - a guard must not raise; the guards decide
                log.debug("precompile: optimizer state not made for %s", path, exc_info=True)
        return True

    def _kind(self, optimizer: Any) -> str:
        cls = type(optimizer)
        kind = self._kinds.get(cls)
        if kind is None:
            kind = self._kinds[cls] = object_fingerprint(cls)
        return kind

    def _complete(self, optimizer: Any, calls: list[list[list[Any]]]) -> None:
        size = _torch.optimizer_state_size(optimizer)
        if size >= _torch.optimizer_param_count(optimizer) or self._sizes.get(optimizer) == size:
            return
        _torch.init_optimizer_state(optimizer, calls)
        self._sizes[optimizer] = _torch.optimizer_state_size(optimizer)
