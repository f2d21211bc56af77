"""What Dynamo leaves unchecked inside one process, and what precompile checks instead.

Dynamo skips some checks because, *inside the process that compiled*, the thing cannot change
or a cheaper check would notice (``torch/_dynamo/config.py``, ``guards.py``). A loading
process rebuilds a stored entry's guards against *its own* live objects, so such an
assumption does not carry over: a hook registered before the first call, or a module built
without a bias, would otherwise run the old code (ENGINE-FACTS, "What Dynamo leaves
unchecked inside one process"). ``INVENTORY`` lists every one found in torch 2.13-2.15, what
can differ in a loading process, and what precompile checks in its place; the README's
"What precompile checks before it runs stored code" lists the same.

Two of them need code here:

* module hooks (``skip_nnmodule_hook_guards``): the hook dicts Dynamo read while tracing
  (``HOOK_DICTS`` on every module it called, ``GLOBAL_HOOK_DICTS`` on
  ``torch.nn.modules.module``) are recorded as identity checks of their hook functions
  (``precompile/module_hooks.py``);
* dict tags (``skip_tensor_guards_with_matching_dict_tags``): ``forget_dict_tags`` makes a
  rebuilt tree's first check a full one.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Assumption:
    """One thing Dynamo does not check inside the process that compiled."""

    name: str  # the config flag or mechanism (torch/_dynamo/config.py, guards.py)
    differs: str  # what can be different in a loading process
    checked: str  # what precompile checks instead, or why it cannot differ


INVENTORY: tuple[Assumption, ...] = (
    Assumption(
        "skip_nnmodule_hook_guards",
        "hooks registered on a module (forward, forward-pre, backward, with kwargs) or "
        "globally (torch.nn.modules.module._global_*) before the first call",
        "every hook dict Dynamo read while tracing is stored as the fingerprints of its hook "
        "functions, in order; a global one is compared at install, one reached from the "
        "call's locals on the first call of each model object (a miss naming the module's "
        "source and the hooks)"),
    Assumption(
        "skip_tensor_guards_with_matching_dict_tags",
        "a parameter or buffer missing, added or of another shape, dtype or device in a "
        "module reached through a global: the rebuilt tree records the live dict's tag and "
        "skipped its tensor guards",
        "the rebuilt tree forgets every recorded dict tag (forget_dict_tags): its first "
        "check runs every tensor guard, later calls use tags recorded from that check, as "
        "in the compiling process"),
    Assumption(
        "guard_nn_modules_using_dict_tags / dict-version tags (DICT_VERSION)",
        "a module's __dict__ or a guarded dict whose version tag was recorded from live "
        "objects",
        "DICT_VERSION guards are identity guards: never stored, the object is checked by "
        "fingerprint instead; the tags under other guards are forgotten (above)"),
    Assumption(
        "use_recursive_dict_tags_for_guards",
        "dict pointers and tags recorded for tag-safe subtrees",
        "recorded at check time, never at build time (off by default): nothing stored"),
    Assumption(
        "skip_fsdp_guards / _unsafe_skip_fsdp_module_guards",
        "an FSDP-managed module's attributes",
        "Dynamo leaves out the same guards in every process (a changed flag changes the "
        "package key); the guards it does build are stored and compared like any other. "
        "Not measured across processes: no FSDP run on CPU here"),
    Assumption(
        "skip_no_tensor_aliasing_guards_on_parameters",
        "one parameter passed as two inputs",
        "parameters are read from the module in both processes, so they alias the same way; "
        "a rebuilt tree may relate more tensors (guard_parity allows a stronger aliasing "
        "guard, never a weaker one)"),
    Assumption(
        "skip_guards_on_constant_func_defaults",
        "a constant in a function's __defaults__ (guarded unless the flag is on; on by "
        "default from 2.15)",
        "an inlined function's source range is re-hashed before install and the compiled "
        "function's code is part of the key, so an edited default is a miss; a default "
        "rebound at run time (f.__defaults__ = ...) is not seen, as by plain torch.compile"),
    Assumption(
        "skip_torchrec",
        "whether torchrec's files are traced or skipped",
        "a Dynamo config value: part of the package key like every non-default setting"),
    Assumption(
        "weakref guards (WEAKREF_ALIVE, weakref_call_manager)",
        "whether an object held through a weakref is alive",
        "identity guards: never stored; the object is checked by fingerprint"),
    Assumption(
        "ID_MATCH / FUNCTION_MATCH / CLASS_MATCH / MODULE_MATCH / CLOSURE_MATCH / NN_MODULE",
        "which object a source names (an id() means nothing in another process)",
        "identity checks by fingerprint (precompile/identity.py)"),
    Assumption(
        "guards rebuilt over objects pickled by reference (EQUALS_MATCH, TENSOR_MATCH, ...)",
        "the value a guard compares with, taken from the loading process's live object",
        "guard parity: each rebuilt leaf must be one the entry was recorded with "
        "(guard_parity.py)"),
    Assumption(
        "force_nn_module_property_static_shapes / allow_unspec_int_on_nn_module",
        "the value of an int attribute of a module",
        "the values are guarded (EQUALS_MATCH) and compared by guard parity; the flags "
        "themselves are part of the package key"),
)

# A module's own hook dicts that ``Module._call_impl`` reads (Dynamo guards them with
# EMPTY_NN_MODULE_HOOKS_DICT, a no-op under ``skip_nnmodule_hook_guards``).
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
              "_backward_pre_hooks", "_forward_hooks_with_kwargs",
              "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
# The process-wide ones in ``torch.nn.modules.module`` (``register_module_forward_hook``...):
# Dynamo guards only their type.
GLOBAL_HOOK_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks",
                     "_global_backward_hooks", "_global_backward_pre_hooks",
                     "_global_forward_hooks_with_kwargs",
                     "_global_forward_hooks_always_called")


def hook_dict_source(source: str) -> bool:
    """Whether a guard source names a hook dict (``L['self']._modules['0']._forward_hooks``,
    ``G['__import_torch_dot_nn_dot_modules_dot_module']._global_forward_hooks``)."""
    head, dot, attr = source.rpartition(".")
    return bool(head and dot) and attr in HOOK_DICTS + GLOBAL_HOOK_DICTS


def forget_dict_tags(guard_manager: Any) -> None:
    """Make the next check of a rebuilt guard tree a full one.

    A dict's guard manager records the dict's version tag when it is built and, while the
    tag matches, skips the guards on its immutable values (tensors, under
    ``skip_tensor_guards_with_matching_dict_tags``); after a full check passes it records
    the tag it saw. Built in a loading process, the tag comes from the *live* dict, so a
    module that lost its bias passes. A clone of the tree has every leaf guard and accessor
    of the original but no recorded tags (``GuardManager`` clones start at tag 0, which no
    dict has), so its first check runs every guard and later calls are as fast as the
    compiling process's.
    """
    original = guard_manager.root
    guard_manager.root = original.clone_manager(lambda manager: True)
    # The clone shares leaf guards whose state the original tree owns (a tensor guard read
    # garbage dispatch keys once the original was freed): it lives as long as the clone.
    guard_manager.precompile_original_root = original
