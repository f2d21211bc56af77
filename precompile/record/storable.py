"""What can be stored: the rules that decide whether an entry recorded in this process can
run in another one, and what it needs there.

An entry is stored only if every graph it calls produced an artifact, every global Dynamo
placed for its bytecode can be found again by name, and its identity guards can be replaced
by fingerprint checks that mean the same thing in another process (``guard_filter.py``).
Anything else is a bypass with the reason: a stored entry never runs on a guess.
"""
from __future__ import annotations

import re
import types
from collections.abc import Iterable
from typing import Any

from ..package.artifacts import PrecompileContext
from ..package.model import ConstantCall
from ..identity.bytecode import global_names
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
                   import_sources: dict[str, str], constant_calls: dict[str, list[Any]],
                   globals_sources: dict[int, str]) -> str | None:
    """Add to ``import_sources`` every global Dynamo placed in ``scope`` (the globals the
    frame runs in) for this entry (not in ``known``: the module's own names and the entry's
    graphs, aliases and resume functions); returns why not when one cannot be found again by
    name nor made again by a marked-constant call (``constant_calls``: global name -> what
    ``constant_calls.record`` made of each call). ``globals_sources``: id of a function's
    globals -> the source of that function."""
    placed = scope.keys() - known
    why = _bytecode_globals(code, scope, placed, import_sources, constant_calls)
    if why is None:
        _guard_only_globals(scope, placed - import_sources.keys(), import_sources,
                            globals_sources)
    return why


def _bytecode_globals(code: types.CodeType, scope: dict[str, Any], placed: set[str],
                      import_sources: dict[str, str],
                      constant_calls: dict[str, list[Any]]) -> str | None:
    """Globals the entry's bytecode reads that Dynamo put into the module (``placed``;
    ``install_global_by_id``: a module, or a class to rebuild an output with; the answer
    of a marked-constant call). The bytecode cannot run without them, so one that can be
    neither imported by name nor asked for again makes the entry unstorable."""
    for name in global_names(code):
        if name not in placed or name.startswith("__builtins_dict__"):
            continue
        why = _placed_global(name, scope, constant_calls.get(name), import_sources)
        if why is not None:
            return why
    return None


def _placed_global(name: str, scope: dict[str, Any], calls: list[Any] | None,
                   import_sources: dict[str, str]) -> str | None:
    """Why one global Dynamo placed for the bytecode cannot be had in another process, or
    None: the answer of marked-constant ``calls`` (asked again there), else an object found
    by name (added to ``import_sources``)."""
    if calls:
        return _unrepeatable_answer(name, scope, calls)
    ref = importable_name(scope[name])
    if ref is None:
        return (f"its bytecode needs the runtime-only global {name!r} (a "
                f"{type(scope[name]).__name__} Dynamo placed in {scope.get('__name__')}, "
                "with no name that finds it in another process)")
    import_sources[name] = ref
    return None


def _unrepeatable_answer(name: str, scope: dict[str, Any], calls: list[Any]) -> str | None:
    """Why the answer Dynamo placed under ``name`` cannot be asked for again in another
    process: a marked-constant call among ``calls`` that could not be recorded (its reason
    is a str, see ``constant_calls.record``); None when every one can."""
    why = next((c for c in calls if isinstance(c, str)), None)
    if why is None:
        return None
    return (f"its bytecode needs the global {name!r} Dynamo placed in "
            f"{scope.get('__name__')}: the answer of {why}")


def constant_globals(code: types.CodeType, pending: Any) -> list[ConstantCall]:
    """The marked-constant calls whose answers the entry's bytecode reads
    (``PendingEntry.constant_calls``; ``_bytecode_globals`` made sure each is storable)."""
    used = set(global_names(code))
    found: list[ConstantCall] = []
    for name, calls in pending.constant_calls.items():
        found += [c for c in calls if name in used and isinstance(c, ConstantCall)
                  and c not in found]  # every layer of a model asks the same
    return found


def _guard_only_globals(scope: dict[str, Any], unnamed: set[str], import_sources: dict[str, str],
                        globals_sources: dict[int, str]) -> None:
    """Globals only guards read (among ``unnamed``: placed for the entry and not yet in
    ``import_sources``), which Dynamo installs by id: a module it reaches an attribute
    through (torch 2.15 guards ``G['_<id>_c0'].Tensor``), or a namedtuple's
    ``__new__`` scope, where what it looks up is guarded, or the frame's own globals when no
    module owns them (``___unnamed_scope_<id>``: the frame's, or those of a function its
    identity guards pinned, by that function's source). Stored by name when they have one;
    otherwise the guards that read them fail the install (never a guess), so a missing name
    is no reason to refuse the entry here."""
    for name in unnamed:
        if not _DYNAMO_BY_ID.match(name):
            continue
        ref = _by_id_global_ref(scope[name], scope, globals_sources)
        if ref is not None:
            import_sources[name] = ref


def _by_id_global_ref(value: Any, scope: dict[str, Any],
                      globals_sources: dict[int, str]) -> str | None:
    """How another process finds a global Dynamo installed by id, or None: the frame's own
    globals, an importable name, a namedtuple's ``__new__`` scope, or a function's globals
    through that function's source."""
    if value is scope:  # the unnamed scope Dynamo reads globals through
        return OWN_GLOBALS
    ref = importable_name(value)
    if ref is not None or not isinstance(value, dict):
        return ref
    ref = _namedtuple_scope_ref(value, scope)
    if ref is None and id(value) in globals_sources:
        return GLOBALS_OF + globals_sources[id(value)]
    return ref


# The names ``OutputGraph.install_global_by_id`` gives: ``{prefix}_{id(value)}_c{compile_id}``
# (``___module_collections_<id>_c0``, ``__optimizer_<id>_<id>_c4``, ``_<id>_c0``).
_DYNAMO_BY_ID = re.compile(r"^_\w*?\d{6,}_c\d+$")


def _namedtuple_scope_ref(scope: dict[str, Any], frame_globals: dict[str, Any]) -> str | None:
    """A reference to ``scope`` if it is the globals of a namedtuple class's ``__new__``
    (``collections.namedtuple`` evaluates ``__new__`` in a namespace named
    ``namedtuple_<typename>``) and that class can be found from ``frame_globals`` by name."""
    if not str(scope.get("__name__", "")).startswith("namedtuple_"):
        return None
    typename = scope["__name__"][len("namedtuple_"):]
    for cls in _namedtuple_candidates(typename, frame_globals):
        new = getattr(cls, "__new__", None)
        if isinstance(cls, type) and getattr(new, "__globals__", None) is scope:
            ref = importable_name(cls)
            if ref is not None:
                return f"{ref}.__new__.__globals__"
    return None


def _namedtuple_candidates(typename: str, frame_globals: dict[str, Any]) -> list[Any]:
    """What ``typename`` names in the frame's globals, or in a module they hold."""
    return [frame_globals.get(typename)] + [
        getattr(v, typename, None) for v in frame_globals.values()
        if isinstance(v, types.ModuleType)]
