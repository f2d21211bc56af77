"""The globals an installed entry's bytecode reads, placed in its frame's module.

Dynamo's transformed bytecode calls things by global name: import aliases, the answers of
marked-constant calls, compiled graphs, resume functions. Installing an entry puts each of
them back under its name, checking on the way what the module's globals can tell of the
objects the entry was compiled for. A name is placed only where it is free (or already holds
the same object), and ``PlacedGlobals`` remembers each one placed, so a skipped entry or an
uninstall takes back exactly what was added and nothing a user's module owns.
"""
from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

from .. import _torch
from ..identity import checks as identity
from ..identity.bytecode import retarget_filename
from ..identity.guard_path import Roots, parse
from ..identity.names import GLOBALS_OF, OWN_GLOBALS, module_dict, resolve_importable
from ..package.model import ROLE_MAIN, ConstantCall, FrameRecord, GuardedEntry, Package
from ..record import module_hooks
from ..record.constant_calls import answer_again, same_answer

# Globals whose names carry a uuid (see recorder.add_resume_function and Dynamo's
# unique_id(..., with_uuid=True)); the same name always means the same artifact.
_UNIQUE_GLOBAL_PREFIXES = ("__compiled_fn_", "__resume_at_")

# (module, fingerprint) -> the one code object, in this process, that every global name of a
# resume function calls, whichever package placed it. Dynamo reuses a resume function's code
# under a new global name when it compiles the same graph break again (recursion, another
# caller, another model through the same library decorator), and the entries recorded for it
# hang on that one code object, whichever name led there: in the compiling process a second
# model could run on the first one's entry and record none of its own, so its package alone
# would retrace there.
_RESUME_CODES: dict[tuple[str, str], types.CodeType] = {}

# Why an entry is skipped when a check the module's globals can make fails, by whether the
# check is of a module's hooks (module_hooks.is_hook_check).
_STALE = {True: "holds other hooks than when it was compiled",
          False: "is no longer the object it was compiled for"}

Check = tuple[str, str]  # (guard source, fingerprint)


@dataclasses.dataclass
class PlacedGlobals:
    """Every global one install added, in order, so it can be taken back exactly."""

    _placed: list[tuple[dict[str, Any], str, Any]] = dataclasses.field(default_factory=list)

    def add(self, scope: dict[str, Any], name: str, value: Any) -> None:
        scope[name] = value
        self._placed.append((scope, name, value))

    def place(self, scope: dict[str, Any], name: str, value: Any) -> bool:
        """Add ``name`` to a module's globals unless it already means something else.

        Compiled-graph and stored resume-function names are unique per compile (a uuid), so
        an existing global with such a name is the same artifact installed earlier: reuse it.
        """
        if name not in scope:
            self.add(scope, name, value)
            return True
        return scope[name] is value or name.startswith(_UNIQUE_GLOBAL_PREFIXES)

    def mark(self) -> int:
        return len(self._placed)

    def remove_after(self, mark: int) -> None:
        """Take back the globals placed since ``mark()`` returned ``mark``."""
        for scope, name, value in reversed(self._placed[mark:]):
            if scope.get(name) is value:
                del scope[name]
        del self._placed[mark:]


def place_resume_function(frame: FrameRecord,
                          placed: PlacedGlobals) -> tuple[types.CodeType | None, str | None]:
    """A stored resume function's code, placed under the global name the caller's bytecode
    calls (one code object for every name of it, in this process: see ``_RESUME_CODES``);
    or why it cannot be placed."""
    code = _RESUME_CODES.setdefault(
        (frame.module, frame.fingerprint), retarget_filename(frame.code, frame.module))
    scope = module_dict(frame.module)
    if scope is None or not frame.global_name:
        return None, "cannot place resume function"
    fn = _resume_global(code, scope, frame.global_name)
    if not placed.place(scope, frame.global_name, fn):
        return None, f"global {frame.global_name} is taken"
    return code, None


def _resume_global(code: types.CodeType, scope: dict[str, Any], name: str) -> Any:
    """The global Dynamo's bytecode calls for a resume function (see
    OutputGraph.install_resume_function_global): the function, or a closure factory."""
    if code.co_freevars:
        def make_fn(closure: tuple[types.CellType, ...]) -> types.FunctionType:
            return types.FunctionType(code, scope, name, None, closure)

        return make_fn
    return types.FunctionType(code, scope, name)


def place_entry_globals(pkg: Package, frame: FrameRecord, entry: GuardedEntry,
                        scope: dict[str, Any], placed: PlacedGlobals,
                        backends: dict[str, Callable[..., Any]],
                        ) -> tuple[list[Check], str | None]:
    """Everything the entry's bytecode reads from the module, placed and checked in order:
    import aliases, constant-call answers, the identities the globals can tell now, the
    compiled graphs. Returns the identity checks left for call time, or why not.

    ``backends`` holds the graphs already loaded for this install: entries share graphs,
    and loading one is the expensive part."""
    main_locals = pkg.main_locals if frame.role == ROLE_MAIN else None
    why = (_place_import_aliases(entry, scope, placed, main_locals)
           or _place_constant_calls(entry, scope, placed))
    if why is not None:
        return [], why
    at_call, why = _check_identities(entry, scope)
    if why is not None:
        return [], why
    return at_call, _place_backends(pkg, entry, scope, placed, backends)


def _place_import_aliases(entry: GuardedEntry, scope: dict[str, Any], placed: PlacedGlobals,
                          frame_locals: dict[str, Any] | None) -> str | None:
    """The objects Dynamo placed in the module for the bytecode, found again by name; why
    not when an alias is already taken by something else (the bytecode would call that)."""
    if entry.import_sources:
        _torch.rebind_stale_aliases()
    for alias, ref in entry.import_sources.items():
        why = _place_alias(alias, ref, scope, placed, frame_locals)
        if why is not None:
            return why
    return None


def _place_alias(alias: str, ref: str, scope: dict[str, Any], placed: PlacedGlobals,
                 frame_locals: dict[str, Any] | None) -> str | None:
    """Find the object ``ref`` names again and place it under ``alias``, unless the name
    already means something else; or why not."""
    value, why = _alias_value(ref, scope, frame_locals)
    if why is not None:
        return why
    if not placed.place(scope, alias, value):
        return f"global {alias} names something else"
    return None


def _alias_value(ref: str, scope: dict[str, Any],
                 frame_locals: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The object an import alias stands for: the module's own globals, a function's
    globals found through its source, or an importable name; or why it cannot be found."""
    if ref == OWN_GLOBALS:
        return scope, None
    if ref.startswith(GLOBALS_OF):
        return _function_globals(ref[len(GLOBALS_OF):], scope, frame_locals)
    return resolve_importable(ref), None


def _function_globals(owner: str, scope: dict[str, Any],
                      frame_locals: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The ``__globals__`` of the function at guard source ``owner``, resolved before the
    call against the module's globals (and the main frame's ``self``, ``frame_locals``);
    or why it cannot be found there."""
    roots = Roots(identity.GlobalsView(scope), frame_locals)  # type: ignore[arg-type]
    try:
        return parse(owner).resolve(roots).__globals__, None
    except Exception as e:  # noqa: BLE001 - not found before the call: not installed
        return None, f"the globals of {owner} cannot be found ({type(e).__name__})"


def _place_constant_calls(entry: GuardedEntry, scope: dict[str, Any],
                          placed: PlacedGlobals) -> str | None:
    """The answers of the marked-constant calls the bytecode reads, asked again here
    (constant_calls.py); why not when one answers differently or its name is taken."""
    for call in entry.constant_calls:
        why = _place_answer(call, scope, placed)
        if why is not None:
            return why
    return None


def _place_answer(call: ConstantCall, scope: dict[str, Any],
                  placed: PlacedGlobals) -> str | None:
    """Make one stored call again and place its answer under its global name, unless
    another entry placed the same answer there already; or why not."""
    same, why = answer_again(call)
    if not same:
        return f"global {call.global_name}: {why}"
    if call.global_name not in scope:
        placed.add(scope, call.global_name, call.value)
    elif not same_answer(scope[call.global_name], call.value):
        # placed by another entry: the same answer, or taken
        return f"global {call.global_name} names something else"
    return None


def _check_identities(entry: GuardedEntry,
                      scope: dict[str, Any]) -> tuple[list[Check], str | None]:
    """Check now what the module's globals can tell (a stale global skips the entry before
    anything is attached); the (source, fingerprint) checks that read the call's locals
    come back to run at every call instead."""
    at_call: list[Check] = []
    for check in entry.identity_checks:
        pair = (check.source, check.fingerprint)
        ok, detail = identity.check_before_call(check.source, check.fingerprint, scope)
        if ok is None:
            at_call.append(pair)
        elif not ok:
            return [], f"{check.source} {_STALE[module_hooks.is_hook_check(pair)]} ({detail})"
    return at_call, None


def _place_backends(pkg: Package, entry: GuardedEntry, scope: dict[str, Any],
                    placed: PlacedGlobals,
                    backends: dict[str, Callable[..., Any]]) -> str | None:
    """Put each compiled graph the bytecode calls under its global name."""
    for backend_id in entry.backend_ids:
        backend = _load_backend(pkg, backend_id, backends)
        if backend is None:
            return f"compiled graph {backend_id[:24]} is missing from the package"
        if not placed.place(scope, backend_id, backend):
            return f"global {backend_id} is taken"
    return None


def _load_backend(pkg: Package, backend_id: str,
                  backends: dict[str, Callable[..., Any]]) -> Callable[..., Any] | None:
    """The compiled graph ``backend_id`` names, deserialized once per install into
    ``backends`` (entries share graphs, and loading one is the expensive part); None when
    the package lacks it."""
    if backend_id not in backends:
        art = pkg.artifacts.get(backend_id)
        if art is None:
            return None
        with _torch.no_precompiled_headers():
            backends[backend_id] = _torch.deserialize_backend(art.kind, art.data, backend_id)
    return backends[backend_id]
