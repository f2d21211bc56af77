"""Install a verified package into this process, and take it out again.

Installing means, for every stored frame: find this process's code object for it, put the
globals its transformed bytecode calls into the frame's module (bytecode_globals.py),
rebuild each entry's guards and attach them to the code object.
After that, Dynamo's frame hook runs the stored bytecode whenever the guards pass, without
tracing. Each entry installs or is skipped on its own: one stale entry never blocks the rest,
and a skipped entry simply compiles again on first use.

``Installation.uninstall`` detaches every entry and removes exactly the globals added.
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
from ..identity.guard_path import GuardPathError
from ..package.artifacts import PrecompileContext
from .bytecode_globals import Check, PlacedGlobals, place_entry_globals, place_resume_function
from .kernel_files import restore_kernels
from ..identity.bytecode import resolve_refs, retarget_filename, share_nested_code
from ..identity.names import module_dict, resolve_code
from ..package.model import ROLE_MAIN, ROLE_RESUME, FrameRecord, GuardedEntry, Package

log = logging.getLogger("precompile")


@dataclasses.dataclass
class Installation:
    """What one install changed, so it can be undone exactly."""

    installed_entries: int = 0
    kernels_restored: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    # this process's code object for each frame installed (the recorder maps them back)
    bound: list[tuple[types.CodeType, FrameRecord]] = dataclasses.field(default_factory=list)
    _on_guard_fail: Callable[[str, types.CodeType], None] | None = None
    _placed: PlacedGlobals = dataclasses.field(default_factory=PlacedGlobals)
    _codes: list[types.CodeType] = dataclasses.field(default_factory=list)

    def uninstall(self) -> None:
        for code in self._codes:
            ORDER.detach(code)
        self._placed.remove_after(0)
        self._codes.clear()
        self.installed_entries = 0


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
    """Bind one stored frame to this process's code object and install its entries in the
    globals it runs in."""
    target = _target_code(frame, pkg, inst)
    if target is None:
        return
    inst.bound.append((target, frame))
    scope = _frame_scope(pkg, frame)
    if scope is None:
        inst.skipped.append(f"{frame.qualname}: module {frame.module} is not importable")
        return
    _install_entries(pkg, frame, target, scope, inst, backends)


def _install_entries(pkg: Package, frame: FrameRecord, target: types.CodeType,
                     scope: dict[str, Any], inst: Installation,
                     backends: dict[str, Callable[..., Any]]) -> None:
    """Install each of the frame's entries on ``target`` on its own; a frame Dynamo skipped
    (nothing to compile) is marked skipped here too, so its first call traces nothing."""
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
    mark = inst._placed.mark()
    try:
        reason = _install_entry(pkg, frame, entry, target, scope, inst, backends)
    except Exception as e:  # noqa: BLE001 - one broken entry must not stop the rest
        log.debug("precompile: entry install failed", exc_info=True)
        reason = f"could not be installed ({type(e).__name__}: {e})"
    if reason is not None:
        # Nothing of a skipped entry stays in the module: Dynamo asserts that an
        # import alias it places is free or already its module, so a leftover alias
        # would break the compile that replaces the entry.
        inst._placed.remove_after(mark)
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
        code, why = place_resume_function(frame, inst._placed)
        if why is not None:
            inst.skipped.append(f"{frame.qualname}: {why}")
        return code
    code = resolve_code(frame.module, frame.qualname, frame.fingerprint)
    if code is None:
        inst.skipped.append(f"{frame.qualname} in {frame.module}: not found, or its code changed")
    return code


def _install_entry(pkg: Package, frame: FrameRecord, entry: GuardedEntry,
                   target: types.CodeType, scope: dict[str, Any], inst: Installation,
                   backends: dict[str, Callable[..., Any]]) -> str | None:
    """Attach one stored entry to ``target``, or return why it is skipped. The globals it
    places are recorded in ``inst`` as they go, so a skipped entry leaves nothing behind
    that ``uninstall`` does not remove."""
    at_call, why = place_entry_globals(pkg, frame, entry, scope, inst._placed, backends)
    if why is not None:
        return why
    if not entry.guard_tree:
        return "stored without its guard tree (an earlier precompile): recompiles"
    guard_manager = _torch.load_guard_manager(
        pkg.guard_blobs[entry.guards_sha], target, scope,
        lambda name, value: inst._placed.place(scope, name, value), inst._on_guard_fail,
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


def _add_identity_guards(guard_manager: Any, entry: GuardedEntry,
                         at_call: list[Check], scope: dict[str, Any],
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


def _split_checks(checks: list[Check]) -> tuple[list[Check], ...]:
    """(identity checks, dict keys checks, module hooks checks), by the kind their
    fingerprint starts with (the text up to its first colon): the last two run after
    Dynamo's guards (identity.DictKeysCheck, module_hooks.HooksCheck)."""
    plain: list[Check] = []
    dict_keys: list[Check] = []
    hooks: list[Check] = []
    by_kind = {identity.DICT_KEYS: dict_keys, identity.HOOKS: hooks}
    for check in checks:
        kind, colon, _ = check[1].partition(":")
        by_kind.get(kind + colon, plain).append(check)
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
