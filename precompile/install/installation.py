"""Install a verified package into this process, and take it out again.

Installing means, for every stored frame: find this process's code object for it, put the
globals its transformed bytecode calls (compiled graphs, resume functions, import aliases)
into the frame's module, rebuild each entry's guards and attach them to the code object.
After that, Dynamo's frame hook runs the stored bytecode whenever the guards pass, without
tracing. Each entry installs or is skipped on its own: one stale entry never blocks the rest,
and a skipped entry simply compiles again on first use.

Globals are added only where the name is free (or already holds the same object), and
``Installation.uninstall`` removes exactly what was added.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import types
from collections.abc import Callable
from typing import Any

from .. import _torch, settings
from ..record import first_step, module_hooks
from ..identity import checks as identity
from .entry_order import ORDER
from ..identity.guard_path import GuardPathError, Roots, parse
from ..package.artifacts import PrecompileContext
from .kernel_files import restore_kernels
from ..identity.bytecode import resolve_refs, retarget_filename, share_nested_code
from ..record.constant_calls import answer_again, same_answer
from ..identity.names import (GLOBALS_OF, OWN_GLOBALS, module_dict, resolve_code,
                              resolve_importable)
from ..package.model import ROLE_MAIN, ROLE_RESUME, FrameRecord, GuardedEntry, Package

log = logging.getLogger("precompile")

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


@dataclasses.dataclass
class Installation:
    """What one install changed, so it can be undone exactly."""

    installed_entries: int = 0
    kernels_restored: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    # this process's code object for each frame installed (the recorder maps them back)
    bound: list[tuple[types.CodeType, FrameRecord]] = dataclasses.field(default_factory=list)
    _on_guard_fail: Callable[[str, types.CodeType], None] | None = None
    _globals: list[tuple[dict[str, Any], str, Any]] = dataclasses.field(default_factory=list)
    _codes: list[types.CodeType] = dataclasses.field(default_factory=list)

    def add_global(self, scope: dict[str, Any], name: str, value: Any) -> None:
        scope[name] = value
        self._globals.append((scope, name, value))

    def uninstall(self) -> None:
        for code in self._codes:
            ORDER.detach(code)
        self._remove_globals_after(0)
        self._codes.clear()
        self.installed_entries = 0

    def _remove_globals_after(self, mark: int) -> None:
        """Take back the globals placed since ``len(self._globals)`` was ``mark``."""
        for scope, name, value in reversed(self._globals[mark:]):
            if scope.get(name) is value:
                del scope[name]
        del self._globals[mark:]


def install(pkg: Package,
            on_guard_fail: Callable[[str, types.CodeType], None] | None = None) -> Installation:
    """Install every entry of ``pkg`` that still applies. Never raises for one bad entry;
    raises StoreError (a miss) before changing anything when the package's kernels would
    go into an Inductor cache directory another user could write (``kernel_files``).

    Its artifacts are registered with the PrecompileContext, so a later save of any package
    that uses them includes them; ``on_guard_fail(reason, code)`` hears of every failing
    guard of an installed entry (Dynamo then recompiles)."""
    inst = Installation(_on_guard_fail=on_guard_fail)
    # First, before anything changes: StoreError (a miss) if Inductor's cache is untrusted.
    inst.kernels_restored = restore_kernels(pkg.kernel_blobs, trust_shared=settings.trust_shared())
    _torch.use_recorded_cpu_isa(pkg.cpu_isa)
    context = PrecompileContext.get()
    for art in pkg.artifacts.values():
        context.add(art)
    _torch.reserve_global_names(_dynamo_global_names(pkg))
    backends: dict[str, Callable[..., Any]] = {}
    for frame in pkg.frames:
        _install_frame(pkg, frame, inst, backends)
    return inst


def _install_frame(pkg: Package, frame: FrameRecord, inst: Installation,
                   backends: dict[str, Callable[..., Any]]) -> None:
    """Bind one stored frame to this process's code object and install its entries; a
    frame Dynamo skipped (nothing to compile) is marked skipped here too."""
    target = _target_code(frame, pkg, inst)
    if target is None:
        return
    inst.bound.append((target, frame))
    scope = _frame_scope(pkg, frame)
    if scope is None:
        inst.skipped.append(f"{frame.qualname}: module {frame.module} is not importable")
        return
    if frame.skipped and not frame.entries:
        _torch.skip_code(target)
        return
    for entry in frame.entries:
        _install_or_undo(pkg, frame, entry, target, scope, inst, backends)


def _frame_scope(pkg: Package, frame: FrameRecord) -> dict[str, Any] | None:
    """The globals a frame runs in: ``__main__``'s as recorded for the main frame of a
    script, else its module's (None when that is not importable)."""
    if frame.role == ROLE_MAIN and pkg.main_globals is not None:
        return pkg.main_globals
    return module_dict(frame.module)


def _install_or_undo(pkg: Package, frame: FrameRecord, entry: GuardedEntry,
                     target: types.CodeType, scope: dict[str, Any], inst: Installation,
                     backends: dict[str, Callable[..., Any]]) -> None:
    """Install one entry whole, or skip it with its reason and nothing of it left behind."""
    mark = len(inst._globals)
    try:
        reason = _install_entry(pkg, frame, entry, target, scope, inst, backends)
    except Exception as e:  # noqa: BLE001 - one broken entry must not stop the rest
        log.debug("precompile: entry install failed", exc_info=True)
        reason = f"could not be installed ({type(e).__name__}: {e})"
    if reason is not None:
        # Nothing of a skipped entry stays in the module: Dynamo asserts that an
        # import alias it places is free or already its module, so a leftover alias
        # would break the compile that replaces the entry.
        inst._remove_globals_after(mark)
        inst.skipped.append(f"{frame.qualname}: {reason}")


def _dynamo_global_names(pkg: Package) -> list[str]:
    """Every Dynamo-numbered global the package's bytecode and guards refer to."""
    names = []
    for frame in pkg.frames:
        for entry in frame.entries:
            names.extend(n for n in entry.dynamo_code.co_names if n.startswith("__"))
    return names


def _target_code(frame: FrameRecord, pkg: Package,
                 inst: Installation) -> types.CodeType | None:
    if frame.role == ROLE_MAIN:
        return pkg.main_code
    if frame.role == ROLE_RESUME:
        return _resume_target(frame, inst)
    code = resolve_code(frame.module, frame.qualname, frame.fingerprint)
    if code is None:
        inst.skipped.append(f"{frame.qualname} in {frame.module}: not found, or its code changed")
    return code


def _resume_target(frame: FrameRecord, inst: Installation) -> types.CodeType | None:
    """A stored resume function's code, placed under the global name the caller's bytecode
    calls (one code object for every name of it, in this process: see ``_RESUME_CODES``)."""
    code = _RESUME_CODES.setdefault(
        (frame.module, frame.fingerprint), retarget_filename(frame.code, frame.module))
    scope = module_dict(frame.module)
    if scope is None or not frame.global_name:
        inst.skipped.append(f"{frame.qualname}: cannot place resume function")
        return None
    fn = _resume_global(code, scope, frame.global_name)
    if not _place_global(scope, frame.global_name, fn, inst):
        inst.skipped.append(f"{frame.qualname}: global {frame.global_name} is taken")
        return None
    return code


def _install_entry(pkg: Package, frame: FrameRecord, entry: GuardedEntry,
                   target: types.CodeType, scope: dict[str, Any], inst: Installation,
                   backends: dict[str, Callable[..., Any]]) -> str | None:
    """Attach one stored entry to ``target``, or return why it is skipped. The globals it
    places are recorded in ``inst`` as they go, so a skipped entry leaves nothing behind
    that ``uninstall`` does not remove."""
    at_call, why = _place_entry_globals(pkg, frame, entry, scope, inst, backends)
    if why is not None:
        return why
    if not entry.guard_tree:
        return "stored without its guard tree (an earlier precompile): recompiles"
    guard_manager = _torch.load_guard_manager(
        pkg.guard_blobs[entry.guards_sha], target, scope,
        lambda name, value: _place_global(scope, name, value, inst), inst._on_guard_fail,
        inference_mode=entry.inference_mode)
    why = _torch.tree_changes(guard_manager, entry.guard_tree)
    if why is not None:
        return why
    _add_identity_guards(guard_manager, entry, at_call, scope, frame.qualname)
    code = retarget_filename(resolve_refs(entry.dynamo_code), frame.module, target.co_filename)
    code = share_nested_code(code, target)
    _skip_namedtuple_make(code)
    ORDER.attach(target, guard_manager, code)
    inst._codes.append(target)
    inst.installed_entries += 1
    return None


def _place_entry_globals(pkg: Package, frame: FrameRecord, entry: GuardedEntry,
                         scope: dict[str, Any], inst: Installation,
                         backends: dict[str, Callable[..., Any]],
                         ) -> tuple[list[tuple[str, str]], str | None]:
    """Everything the entry's bytecode reads from the module, placed and checked in order:
    import aliases, constant-call answers, the identities the globals can tell now, the
    compiled graphs. Returns the identity checks left for call time, or why not."""
    main_locals = pkg.main_locals if frame.role == ROLE_MAIN else None
    why = (_place_import_aliases(entry, scope, inst, main_locals)
           or _place_constant_calls(entry, scope, inst))
    if why is not None:
        return [], why
    at_call, why = _check_identities(entry, scope)
    if why is not None:
        return [], why
    return at_call, _place_backends(pkg, entry, scope, inst, backends)


def _add_identity_guards(guard_manager: Any, entry: GuardedEntry,
                         at_call: list[tuple[str, str]], scope: dict[str, Any],
                         qualname: str) -> None:
    """The checks Dynamo's guards cannot make, added to the loaded guard tree: identities
    read from the call's locals and the optimizer-state prologue with the guards, dict keys
    and module hooks as epilogues (run once every other guard passed, so only the entry
    that runs pays for their lookups)."""
    plain, dict_keys, hooks = _split_checks(at_call)
    if plain:
        check = identity.CallTimeCheck(plain, scope)
        _torch.add_call_guard(guard_manager, check, check.description())
    _add_state_prologue(entry, scope, guard_manager)
    for source, fingerprint in dict_keys:
        keys_check = identity.DictKeysCheck(source, fingerprint, scope)
        _torch.add_epilogue_guard(guard_manager, keys_check, keys_check.description())
    if hooks:
        hooks_check = module_hooks.HooksCheck(hooks, scope, qualname)
        _torch.add_epilogue_guard(guard_manager, hooks_check, hooks_check.description())


def _split_checks(checks: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], ...]:
    """(identity checks, dict keys checks, module hooks checks): the last two run after
    Dynamo's guards (identity.DictKeysCheck, module_hooks.HooksCheck)."""
    plain: list[tuple[str, str]] = []
    dict_keys: list[tuple[str, str]] = []
    hooks: list[tuple[str, str]] = []
    for check in checks:
        if check[1].startswith(identity.DICT_KEYS):
            dict_keys.append(check)
        elif module_hooks.is_hook_check(check):
            hooks.append(check)
        else:
            plain.append(check)
    return plain, dict_keys, hooks


def _add_state_prologue(entry: GuardedEntry, scope: dict[str, Any], guard_manager: Any) -> None:
    """Before the entry's guards read an optimizer's state, make the state its trace made
    (first_step.py). A source that is not a guard path gets no prologue: the entry then
    applies once the state exists, as before."""
    if not entry.state_inits:
        return
    try:
        prologue = first_step.StatePrologue(entry.state_inits, scope)
    except GuardPathError as e:
        log.debug("precompile: no optimizer state prologue: %s", e)
        return
    _torch.add_call_guard(guard_manager, prologue, prologue.description())


def _place_import_aliases(entry: GuardedEntry, scope: dict[str, Any], inst: Installation,
                          frame_locals: dict[str, Any] | None) -> str | None:
    """The objects Dynamo placed in the module for the bytecode, found again by name; why
    not when an alias is already taken by something else (the bytecode would call that)."""
    if entry.import_sources:
        _torch.rebind_stale_aliases()
    for alias, ref in entry.import_sources.items():
        value, why = _alias_value(ref, scope, frame_locals)
        if why is not None:
            return why
        if not _place_global(scope, alias, value, inst):
            return f"global {alias} names something else"
    return None


def _alias_value(ref: str, scope: dict[str, Any],
                 frame_locals: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The object an import alias stands for: the module's own globals, a function's
    globals found through its source, or an importable name; or why it cannot be found."""
    if ref == OWN_GLOBALS:
        return scope, None
    if not ref.startswith(GLOBALS_OF):
        return resolve_importable(ref), None
    roots = Roots(identity.GlobalsView(scope), frame_locals)  # type: ignore[arg-type]
    owner = ref[len(GLOBALS_OF):]
    try:
        return parse(owner).resolve(roots).__globals__, None
    except Exception as e:  # noqa: BLE001 - not found before the call: not installed
        return None, f"the globals of {owner} cannot be found ({type(e).__name__})"


def _place_constant_calls(entry: GuardedEntry, scope: dict[str, Any],
                          inst: Installation) -> str | None:
    """The answers of the marked-constant calls the bytecode reads, asked again here
    (constant_calls.py); why not when one answers differently or its name is taken."""
    for call in entry.constant_calls:
        same, why = answer_again(call)
        if not same:
            return f"global {call.global_name}: {why}"
        if call.global_name not in scope:
            inst.add_global(scope, call.global_name, call.value)
            continue
        # placed by another entry: the same answer, or taken
        if not same_answer(scope[call.global_name], call.value):
            return f"global {call.global_name} names something else"
    return None


def _check_identities(entry: GuardedEntry,
                      scope: dict[str, Any]) -> tuple[list[tuple[str, str]], str | None]:
    """Check now what the module's globals can tell (a stale global skips the entry before
    anything is attached); the (source, fingerprint) checks that read the call's locals
    come back to run at every call instead."""
    at_call: list[tuple[str, str]] = []
    for check in entry.identity_checks:
        ok, detail = identity.check_before_call(check.source, check.fingerprint, scope)
        if ok is None:
            at_call.append((check.source, check.fingerprint))
        elif not ok and module_hooks.is_hook_check((check.source, check.fingerprint)):
            return [], f"{check.source} holds other hooks than when it was compiled ({detail})"
        elif not ok:
            return [], f"{check.source} is no longer the object it was compiled for ({detail})"
    return at_call, None


def _place_backends(pkg: Package, entry: GuardedEntry, scope: dict[str, Any],
                    inst: Installation, backends: dict[str, Callable[..., Any]]) -> str | None:
    """Put each compiled graph the bytecode calls under its global name. ``backends`` holds
    the graphs already loaded for this install: entries share graphs, and loading one is
    the expensive part."""
    for backend_id in entry.backend_ids:
        if backend_id not in backends:
            art = pkg.artifacts.get(backend_id)
            if art is None:
                return f"compiled graph {backend_id[:24]} is missing from the package"
            with _torch.no_precompiled_headers():
                backends[backend_id] = _torch.deserialize_backend(art.kind, art.data, backend_id)
        if not _place_global(scope, backend_id, backends[backend_id], inst):
            return f"global {backend_id} is taken"
    return None


def _place_global(scope: dict[str, Any], name: str, value: Any, inst: Installation) -> bool:
    """Add ``name`` to a module's globals unless it already means something else.

    Compiled-graph and stored resume-function names are unique per compile (a uuid), so an
    existing global with such a name is the same artifact installed earlier: reuse it.
    """
    if name not in scope:
        inst.add_global(scope, name, value)
        return True
    return scope[name] is value or name.startswith(_UNIQUE_GLOBAL_PREFIXES)


def _resume_global(code: types.CodeType, scope: dict[str, Any], name: str) -> Any:
    """The global Dynamo's bytecode calls for a resume function (see
    OutputGraph.install_resume_function_global): the function, or a closure factory."""
    if code.co_freevars:
        def make_fn(closure: tuple[types.CellType, ...]) -> types.FunctionType:
            return types.FunctionType(code, scope, name, None, closure)

        return make_fn
    return types.FunctionType(code, scope, name)


# Every namedtuple class's ``_make`` shares this code object (collections/__init__.py).
_NAMEDTUPLE_MAKE = collections.namedtuple("_Probe", "x")._make.__func__.__code__


def _skip_namedtuple_make(code: types.CodeType) -> None:
    """Dynamo's bytecode rebuilds a namedtuple output by calling the class's ``_make``; in the
    writing process Dynamo skipped that frame when it was first called (nothing to compile)
    and remembered it. Remember it here as well, so the first call traces nothing at all
    (under ``fail_on_recompile`` that frame would otherwise raise)."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _skip_namedtuple_make(const)
        elif getattr(getattr(const, "__func__", None), "__code__", None) is _NAMEDTUPLE_MAKE:
            _torch.skip_code(_NAMEDTUPLE_MAKE)
            return
