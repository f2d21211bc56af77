"""Globals that hold the answer of a marked-constant call, found again by asking again.

Dynamo does not trace a function marked ``assume_constant_result`` (transformers marks its
probes: ``is_torch_greater_or_equal("2.9.0")``, ``is_mambapy_available()``): it calls the
function while tracing and places the answer in the frame's globals, where the transformed
bytecode reads it (``_torch/constant_calls.py``). The answer is a plain value, not an
object another process could import by name, and it says something about *this* process
(an installed package, a version) that no guard checks.

So the call is stored, not just its answer: the function by name, its constant arguments,
the value it returned. A loading process makes the same call on its own copy of the
function and places the value only if the answer is the same; a different answer (the
probed package is now installed) leaves the entry uninstalled, with the reason, exactly as
plain ``torch.compile`` would trace again with the new answer. Only a function its own
module marks as constant is ever called this way: the mark is its author's promise that
the call is a cheap probe with a fixed answer.
"""
from __future__ import annotations

import sys
from typing import Any

from .. import _torch
from ..package.model import ConstantCall, is_plain
from ..identity.names import importable_name, layers, resolve_importable, walk_qualname

def record(fn: Any, args: list[Any] | None, kwargs: dict[str, Any] | None,
           value: Any, global_name: str) -> ConstantCall | str:
    """The call as stored, or why it cannot be repeated in another process."""
    label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}()"
    if args is None or kwargs is None or not all(
            is_plain(a) for a in [*args, *kwargs.values()]):
        return f"{label}, called with arguments that are not plain constants"
    if not is_plain(value):
        return f"{label}, whose answer is a {type(value).__name__}"
    ref = function_ref(fn)
    if ref is None:
        return f"{label}, which has no importable name"
    return ConstantCall(global_name, ref, list(args), dict(kwargs), value)


def function_ref(fn: Any) -> str | None:
    """How another process finds ``fn``: its own importable name, or that of the wrapper
    its qualified name finds (Dynamo calls the function inside ``lru_cache``)."""
    return importable_name(fn) or _wrapper_ref(fn)


def _wrapper_ref(fn: Any) -> str | None:
    """The name of the wrapper (``lru_cache``...) found at ``fn``'s own qualified name,
    when ``fn`` is one of its layers (a function made inside another, ``<locals>``, has no
    such name: the walk fails)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    try:
        outer = walk_qualname(sys.modules.get(module), qualname)
        if any(layer is fn for layer in layers(outer, wrapped_only=True)):
            return f"{module}:{qualname}"
    except (AttributeError, ValueError):
        return None
    return None


def answer_again(call: ConstantCall) -> tuple[bool, str]:
    """Make the stored call in this process: (True, "") if it answers what it answered
    when the entry was compiled, else (False, why)."""
    label = f"{call.function}({', '.join(map(repr, call.args))})"
    try:
        fn = resolve_importable(call.function)
    except Exception as e:  # noqa: BLE001 - gone or renamed: the entry does not apply
        return False, f"{label} is not found here ({type(e).__name__})"
    if not _torch.marked_constant(fn):
        return False, f"{call.function} is not marked assume_constant_result here"
    try:
        got = fn(*call.args, **call.kwargs)
    except Exception as e:  # noqa: BLE001 - a probe that fails here answers differently
        return False, f"{label} raised {type(e).__name__} here"
    if not same_answer(got, call.value):
        return False, f"{label} returns {got!r} here, the entry was compiled for {call.value!r}"
    return True, ""


def same_answer(got: Any, want: Any) -> bool:
    """Equal and of the same type: ``1 == True == 1.0``, but a bytecode compiled for one
    of them may branch on which it got."""
    return type(got) is type(want) and got == want
