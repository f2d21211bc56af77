"""Module hooks as part of what a stored entry checks.

Dynamo does not guard the hooks of the modules it traces through
(``skip_nnmodule_hook_guards``, on by default; ``_torch.INVENTORY``): inside the process that
compiled, a hook added later is ignored by plain ``torch.compile`` too. A new process that
registers a hook *before its first call* gets it from plain ``torch.compile`` (it traces with
the hook), so a stored entry must not run there as if the hook were absent.

While an entry records, every hook dict Dynamo read (each traced module's ``_forward_hooks``,
``_forward_pre_hooks``, backward hooks..., and the global ones of
``torch.nn.modules.module``) becomes an identity check of the hooks it held: their
fingerprints, in order (``identity.HOOKS``). A loading process compares them

* for a dict reached from globals (a module global, the global hooks), once, at install: a
  different hook set means the entry is not installed, with a reason naming the source
  and the hooks;
* for a dict reached from the call's locals (``L['self']._modules['0']._forward_hooks``), on
  the first call that reaches the entry with each new model object (``HooksCheck``, an
  epilogue guard): later calls with the same objects cost one id lookup, so a hook added
  after that call is ignored exactly as plain ``torch.compile`` ignores it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _torch
from ..counters import STATS
from ..identity.guard_path import parse
from ..identity.checks import HOOKS, GlobalsView, fingerprint_difference, hooks_fingerprint
from ..package.model import IdentityCheck

GUARD_TYPE = "MODULE_HOOKS"
# How many distinct model objects one check remembers as verified (kept alive meanwhile,
# so their ids are not reused).
_MEMO_SIZE = 16


def hook_checks(entries: Sequence[Any]) -> list[IdentityCheck]:
    """One check per hook dict among the guard filter's entries (Dynamo guards each with
    EMPTY_NN_MODULE_HOOKS_DICT, SEQUENCE_LENGTH or TYPE_MATCH), holding the hooks it holds
    now."""
    found: dict[str, IdentityCheck] = {}
    for e in entries:
        source = _torch.guard_source_name(e)
        # (a guard without a value holds Dynamo's placeholder there, never a dict)
        if (source not in found and isinstance(e.value, dict)
                and _torch.hook_dict_source(source)):
            found[source] = IdentityCheck(source, GUARD_TYPE, hooks_fingerprint(e.value))
    return list(found.values())


def is_hook_check(check: tuple[str, str]) -> bool:
    return check[1].startswith(HOOKS)


class HooksCheck:
    """The hook dicts an entry read from the call's locals hold the hooks it was compiled
    with: checked once per tuple of root objects (``L['self']``...), then remembered.

    A failure is a miss with its reason (``stats()["miss_reasons"]``); it is an epilogue
    guard, so it runs only when every other guard of the entry passed, and only the entry
    that would have run pays for it. Raises GuardPathError for a source that is not a
    guard path."""

    def __init__(self, checks: list[tuple[str, str]], scope: dict[str, Any],
                 label: str) -> None:
        # (source, its parsed path, the fingerprint the dict held when compiled)
        self.checks = [(source, parse(source), fp) for source, fp in checks]
        self.roots = sorted({p.name for _, p, _ in self.checks if p.root == "L"})
        # A path that reads the locals only through a key (rare) cannot be remembered by
        # its root objects: then every call checks.
        self.memo = all(p.root == "L" or not p.reads_locals for _, p, _ in self.checks)
        self.globals = GlobalsView(scope)
        self.label = label
        self._verified: dict[tuple[int, ...], tuple[Any, ...]] = {}

    def description(self) -> list[str]:
        return [f"precompile hooks: {s} holds {len(json.loads(fp[len(HOOKS):]))} hook(s)"
                for s, _, fp in self.checks]

    def __call__(self, f_locals: Mapping[str, Any]) -> bool:
        try:
            objects = tuple([f_locals[name] for name in self.roots])
        except Exception:  # noqa: BLE001 - a missing local means "not this entry"
            return False
        key = tuple(map(id, objects))
        if key in self._verified:
            return True
        why = self._difference(f_locals)
        if why is not None:
            STATS.note_miss(f"{self.label}: entry not used: {why}")
            return False
        if self.memo and len(self._verified) < _MEMO_SIZE:
            self._verified[key] = objects
        return True

    def _difference(self, f_locals: Mapping[str, Any]) -> str | None:
        for source, path, want in self.checks:
            try:
                value = path.lookup(self.globals, f_locals)
            except Exception as e:  # noqa: BLE001 - the module no longer has that dict
                return f"{source} no longer resolves ({type(e).__name__})"
            now = hooks_fingerprint(value)
            if now != want:
                return (f"{source} holds other hooks than when it was compiled "
                        f"({fingerprint_difference(want, now)})")
        return None
