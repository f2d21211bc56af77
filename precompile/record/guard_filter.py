"""Which of Dynamo's guards an entry stores as fingerprint checks instead of as guards.

An identity guard (``ID_MATCH`` and kin) compares an object's address in this process: it
means nothing in another one. It stays in this process's entry, as under plain
``torch.compile``, but the stored entry checks the object by fingerprint instead (see
``identity/checks.py``). So does a ``TYPE_MATCH`` on a class no other process finds by
name, a dict's keys and a module's hook dicts. Dynamo asks once per compiled frame, through
the recorder's ``guard_filter``; the checks go into the frame's pending entry.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .. import _torch
from ..identity.checks import dict_keys_fingerprint
from ..identity.fingerprints import object_fingerprint
from ..package.model import IdentityCheck
from . import module_hooks
from .pending_entry import PendingEntry

# (source, guard type, guarded object): what identity_checks fingerprints
Check = tuple[str, str, Any]


def note_identity_guards(pending: PendingEntry, entries: Sequence[Any]) -> None:
    """Add to ``pending`` the fingerprint check of every guard in ``entries`` that cannot
    be stored as it is, and mark those guards as kept by this process only."""
    checks = [c for e in entries if (c := _fingerprint_check(pending, e)) is not None]
    pending.identity_checks.extend(identity_checks(checks))
    note_dict_keys_guards(pending, entries)
    pending.identity_checks.extend(module_hooks.hook_checks(entries))


def _fingerprint_check(pending: PendingEntry, e: Any) -> Check | None:
    """The check that stands in for guard ``e`` in the stored entry, or None when the guard
    is stored as it is (or is an identity guard on no value: nothing to fingerprint)."""
    if {e.guard_type, *e.derived_guard_types} & _torch.IDENTITY_GUARD_TYPES:
        pending.live_only.append(_torch.keep_guard_live_only(e))
        return _identity_check(pending, e) if e.has_value else None
    if e.guard_type == "TYPE_MATCH" and e.has_value and _torch.refused_type_match(e.value):
        # A class no other process finds by name: checked by fingerprint instead.
        pending.live_only.append(_torch.keep_guard_live_only(e))
        return (f"type({_torch.guard_source_name(e)})", "TYPE_MATCH", type(e.value))
    return None


def _identity_check(pending: PendingEntry, e: Any) -> Check:
    """An identity guard's check. The unstripped name (``L['self'].act``, not
    ``self.act``) says unambiguously whether the object is reached from the call's locals;
    a function's globals are remembered by that name (import aliases find them again)."""
    name = _torch.guard_source_name(e)
    scope = getattr(e.value, "__globals__", None)
    if isinstance(scope, dict):
        pending.globals_sources.setdefault(id(scope), name)
    return (name, e.guard_type, e.value)


def identity_checks(checks: list[tuple[str, str, Any]]) -> list[IdentityCheck]:
    """(source, guard type, guarded object) of each identity guard -> the fingerprint
    checks stored in their place."""
    return [IdentityCheck(source, kind, object_fingerprint(value))
            for source, kind, value in _without_by_id_aliases(checks)]


def note_dict_keys_guards(pending: PendingEntry, entries: Sequence[Any]) -> None:
    """Add to ``pending`` the stored check of each DICT_KEYS_MATCH on a dict keyed by
    ``id()`` whose keys the entry's other guards reach through sources of their own; those
    guards stay live in this process only (``_torch.keep_guard_live_only``)."""
    by_id = _sources_by_id(entries)
    for e in entries:
        if e.guard_type == "DICT_KEYS_MATCH":  # dict_keys_check skips one without a dict
            check = dict_keys_check(_torch.guard_source_name(e), e.value, by_id)
            if check is not None:
                pending.live_only.append(_torch.keep_guard_live_only(e))
                pending.identity_checks.append(check)


def _sources_by_id(entries: Sequence[Any]) -> dict[int, str]:
    """id of each guarded object -> the first source guarded that reaches it (a source
    through ``dict.keys()`` names no object of its own)."""
    by_id: dict[int, str] = {}
    for e in entries:
        name = _torch.guard_source_name(e)
        if e.has_value and "dict.keys(" not in name:
            by_id.setdefault(id(e.value), name)
    return by_id


def dict_keys_check(source: str, value: Any, by_id: dict[int, str]) -> IdentityCheck | None:
    """Dynamo's DICT_KEYS_MATCH on a dict keyed by objects it compares by ``id()`` (an
    optimizer's ``state``, keyed by parameters), as a check that means the same in another
    process: the keys are, in this order, the objects at these other guarded sources
    (``L['self'].param_groups[0]['params'][1]``). None when a key has no such source (the
    guard then stays as Dynamo wrote it, which no other process passes: never a guess)."""
    if not isinstance(value, dict):
        return None
    keys = list(dict.keys(value))
    if not keys or not all(_torch.dict_key_by_id(k) for k in keys):
        return None
    aliases = [by_id.get(id(k)) for k in keys]
    if None in aliases:
        return None
    return IdentityCheck(source, "DICT_KEYS_MATCH", dict_keys_fingerprint(aliases))


# A guard source rooted at a global Dynamo named by id (storable._DYNAMO_BY_ID):
# ``G['__optimizer_1_2_c0']()``.
_BY_ID_SOURCE = re.compile(r"^G\['_\w*?\d{6,}_c\d+'\]")


def _without_by_id_aliases(checks: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """Drop identity checks on a global Dynamo named by ``id()`` whose object another check
    already pins down through a source that exists in every process.

    Dynamo keeps, for example, a weakref to a compiled optimizer in a global
    ``__optimizer_<id>_<id>_c<n>`` (variables/optimizer.py: to drop the code when the optimizer
    dies) and guards ``G['__optimizer_...']()`` *is* that optimizer, which is also
    ``L['self']``. Such a global means nothing in another process, but the object is still
    checked through ``L['self']``. A by-id source with no such alias is kept, so its entry is
    not installed elsewhere (never a guess).
    """
    kept: list[tuple[str, str, Any]] = []
    by_id: list[tuple[str, str, Any]] = []
    for check in checks:
        (by_id if _BY_ID_SOURCE.match(check[0]) else kept).append(check)
    pinned = {id(value) for _, _, value in kept}
    return kept + [c for c in by_id if id(c[2]) not in pinned]
