"""What can be stored: the rules that decide whether an entry recorded in this process can
run in another one, and what it needs there.

An entry is stored only if every graph it calls produced an artifact, every global Dynamo
placed for its bytecode can be found again by name, and its identity guards can be replaced
by fingerprint checks that mean the same thing in another process. Anything else is a
bypass with the reason: a stored entry never runs on a guess.
"""
from __future__ import annotations

import re
import types
from collections.abc import Iterable, Sequence
from typing import Any

from .. import _torch
from ..package.artifacts import PrecompileContext
from ..package.model import ConstantCall, IdentityCheck
from ..identity.bytecode import global_names
from ..identity.checks import dict_keys_fingerprint
from ..identity.fingerprints import object_fingerprint
from ..identity.names import GLOBALS_OF, OWN_GLOBALS, importable_name

_NO_ARTIFACT = ("the backend produced no storable artifact (precompile stores backends that go "
                "through AOTAutograd, such as inductor and aot_eager, and backend='eager')")


def artifact_problem(ctx: PrecompileContext, backend_ids: Iterable[str], *,
                     lazy_backward: bool) -> str | None:
    """Why a graph the entry calls cannot be stored, or None. With ``lazy_backward`` a
    training graph's artifact arrives with its backward, after the entry; the saver writes
    the entry once it has (``CompilePackage.note_artifact_updates``)."""
    for backend_id in backend_ids:
        why = ctx.failure(backend_id)
        if why is None and ctx.artifact(backend_id) is None:
            if lazy_backward:
                continue
            why = _NO_ARTIFACT
        if why is not None:
            return f"graph {backend_id[:20]}... cannot be stored: {why}"
    return None


def placed_globals(code: types.CodeType, scope: dict[str, Any], known: set[str],
                   import_sources: dict[str, str],
                   constant_calls: dict[str, list[Any]] | None = None,
                   globals_sources: dict[int, str] | None = None) -> str | None:
    """Add to ``import_sources`` every global Dynamo placed in ``scope`` (the globals the
    frame runs in) for this entry (not in ``known``: the module's own names and the entry's
    graphs, aliases and resume functions); returns why not when one cannot be found again by
    name nor made again by a marked-constant call (``constant_calls``: global name -> what
    ``constant_calls.record`` made of each call). ``globals_sources``: id of a function's
    globals -> the source of that function."""
    why = _bytecode_globals(code, scope, known, import_sources, constant_calls or {})
    if why is None:
        _guard_only_globals(scope, known, import_sources, globals_sources or {})
    return why


def _bytecode_globals(code: types.CodeType, scope: dict[str, Any], known: set[str],
                      import_sources: dict[str, str],
                      constant_calls: dict[str, list[Any]]) -> str | None:
    """Globals the entry's bytecode reads that Dynamo put into the module
    (``install_global_by_id``: a module, or a class to rebuild an output with; the answer
    of a marked-constant call). The bytecode cannot run without them, so one that can be
    neither imported by name nor asked for again makes the entry unstorable."""
    for name in global_names(code):
        if name in known or name.startswith("__builtins_dict__") or name not in scope:
            continue
        calls = constant_calls.get(name)
        if calls:
            why = next((c for c in calls if isinstance(c, str)), None)
            if why is not None:
                return (f"its bytecode needs the global {name!r} Dynamo placed in "
                        f"{scope.get('__name__')}: the answer of {why}")
            continue
        ref = importable_name(scope[name])
        if ref is None:
            return (f"its bytecode needs the runtime-only global {name!r} (a "
                    f"{type(scope[name]).__name__} Dynamo placed in {scope.get('__name__')}, "
                    "with no name that finds it in another process)")
        import_sources[name] = ref
    return None


def constant_globals(code: types.CodeType, pending: Any) -> list[ConstantCall]:
    """The marked-constant calls whose answers the entry's bytecode reads
    (``PendingEntry.constant_calls``; ``_bytecode_globals`` made sure each is storable)."""
    used = set(global_names(code))
    found: list[ConstantCall] = []
    for name, calls in pending.constant_calls.items():
        found += [c for c in calls if name in used and isinstance(c, ConstantCall)
                  and c not in found]  # every layer of a model asks the same
    return found


def _guard_only_globals(scope: dict[str, Any], known: set[str], import_sources: dict[str, str],
                        globals_sources: dict[int, str]) -> None:
    """Globals only guards read, which Dynamo installs by id: a module it reaches an
    attribute through (torch 2.15 guards ``G['_<id>_c0'].Tensor``), or a namedtuple's
    ``__new__`` scope, where what it looks up is guarded, or the frame's own globals when no
    module owns them (``___unnamed_scope_<id>``: the frame's, or those of a function its
    identity guards pinned, by that function's source). Stored by name when they have one;
    otherwise the guards that read them fail the install (never a guess), so a missing name
    is no reason to refuse the entry here."""
    for name in scope.keys() - known:
        if not _DYNAMO_BY_ID.match(name) or name in import_sources:
            continue
        value = scope[name]
        ref = (OWN_GLOBALS if value is scope  # the unnamed scope Dynamo reads globals through
               else importable_name(value) or _namedtuple_scope_ref(value, scope))
        if ref is None and isinstance(value, dict) and id(value) in globals_sources:
            ref = GLOBALS_OF + globals_sources[id(value)]
        if ref is not None:
            import_sources[name] = ref


def identity_checks(checks: list[tuple[str, str, Any]]) -> list[IdentityCheck]:
    """(source, guard type, guarded object) of each identity guard -> the fingerprint
    checks stored in their place."""
    return [IdentityCheck(source, kind, object_fingerprint(value))
            for source, kind, value in _without_by_id_aliases(checks)]


def dict_keys_checks(entries: Sequence[Any]) -> list[tuple[Any, IdentityCheck]]:
    """(guard filter entry, its stored check) for each DICT_KEYS_MATCH on a dict keyed by
    ``id()`` whose keys the entry's other guards reach through sources of their own; those
    guards stay live in this process only (``_torch.keep_guard_live_only``)."""
    by_id: dict[int, str] = {}
    for e in entries:
        name = _torch.guard_source_name(e)
        if e.has_value and "dict.keys(" not in name:
            by_id.setdefault(id(e.value), name)
    found = []
    for e in entries:
        if e.guard_type == "DICT_KEYS_MATCH" and e.has_value:
            check = dict_keys_check(_torch.guard_source_name(e), e.value, by_id)
            if check is not None:
                found.append((e, check))
    return found


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
    if any(a is None for a in aliases):
        return None
    return IdentityCheck(source, "DICT_KEYS_MATCH", dict_keys_fingerprint(aliases))


# The names ``OutputGraph.install_global_by_id`` gives: ``{prefix}_{id(value)}_c{compile_id}``
# (``___module_collections_<id>_c0``, ``__optimizer_<id>_<id>_c4``, ``_<id>_c0``).
_DYNAMO_BY_ID = re.compile(r"^_\w*?\d{6,}_c\d+$")
# A guard source rooted at such a global: ``G['__optimizer_1_2_c0']()``.
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
    kept = [c for c in checks if not _BY_ID_SOURCE.match(c[0])]
    pinned = {id(value) for _, _, value in kept}
    return kept + [c for c in checks if _BY_ID_SOURCE.match(c[0]) and id(c[2]) not in pinned]


def _namedtuple_scope_ref(scope: Any, frame_globals: dict[str, Any]) -> str | None:
    """A reference to ``scope`` if it is the globals of a namedtuple class's ``__new__``
    (``collections.namedtuple`` evaluates ``__new__`` in a namespace named
    ``namedtuple_<typename>``) and that class can be found from ``frame_globals`` by name."""
    if not isinstance(scope, dict) or not str(scope.get("__name__", "")).startswith("namedtuple_"):
        return None
    typename = scope["__name__"][len("namedtuple_"):]
    candidates = [frame_globals.get(typename)] + [
        getattr(v, typename, None) for v in frame_globals.values()
        if isinstance(v, types.ModuleType)]
    for cls in candidates:
        new = getattr(cls, "__new__", None)
        if isinstance(cls, type) and getattr(new, "__globals__", None) is scope:
            ref = importable_name(cls)
            if ref is not None:
                return f"{ref}.__new__.__globals__"
    return None
