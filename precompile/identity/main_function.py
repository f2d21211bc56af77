"""The main function of a compile target: the one Dynamo compiles first for it.

``precompile.cached`` and ``precompile.load`` take a function, a bound method, a
decorated function or an ``nn.Module``; the key, the recorded package and the installed
entries all hang off one Python function behind it (an nn.Module's ``forward``, a bound
method's function, a decorator's outermost wrapper) and off what that function runs in and
closes over. Finding it, and describing it for keys and messages, is this module.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from .fingerprints import closure_fingerprints, object_fingerprint
from .names import layers, unwrap


def main_function(target: Any) -> Any:
    """The Python function Dynamo compiles first for ``target`` (an nn.Module's
    ``forward``, a bound method's function, a decorator's outermost wrapper)."""
    from .. import _torch

    import torch

    fn = _torch.innermost_fn(target.forward if isinstance(target, torch.nn.Module) else target)
    found = fn
    for found in layers(fn):
        if isinstance(found, types.FunctionType):
            break
    return found


def main_code(target: Any) -> tuple[types.CodeType, str]:
    """The code object Dynamo compiles first for ``target``, and the module whose globals it
    runs in. That is ``__globals__``, not ``__module__``: ``functools.wraps`` copies the
    wrapped function's ``__module__`` onto a decorator's wrapper, whose code still runs in
    the decorator's module."""
    fn = main_function(target)
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"precompile.cached needs a Python function, method or nn.Module, "
                        f"got {type(target).__name__}")
    scope = getattr(fn, "__globals__", None) or {}
    return code, scope.get("__name__") or getattr(fn, "__module__", None) or "__main__"


def unowned_globals(target: Any) -> dict[str, Any] | None:
    """The globals the main function runs in when they are no module's (code generated into
    a dict of its own, as FX's ``GraphModule.forward``), else None."""
    scope = getattr(main_function(target), "__globals__", None)
    if not isinstance(scope, dict):
        return None
    module = sys.modules.get(str(scope.get("__name__")))
    return None if module is not None and module.__dict__ is scope else scope


def main_locals(target: Any) -> dict[str, Any] | None:
    """``{"self": module}`` when ``target`` is a module (compiled or not): the main frame's
    ``self``, known before the first call."""
    import torch

    if not isinstance(target, torch.nn.Module):
        return None
    owner = getattr(main_function(target), "__self__", None)
    if not isinstance(owner, torch.nn.Module):
        from .. import _torch

        owner = getattr(_torch.innermost_fn(target.forward), "__self__", None)
    return {"self": owner} if isinstance(owner, torch.nn.Module) else None


def function_label(target: Any) -> str | None:
    """``module:qualname`` of the function a decorator wrapped (``functools.wraps``), so
    keys and messages name ``f`` rather than ``context_decorator.<locals>.decorate_context``;
    None for an undecorated function."""
    fn = main_function(target)
    inner = unwrap(fn)
    if inner is fn or not isinstance(inner, types.FunctionType):
        return None
    return f"{inner.__module__}:{inner.__qualname__}"


def closure_fingerprint(target: Any) -> str | None:
    """What the main function closes over, for its key. Functions made by one decorator share
    a code object and differ only in their closure (``wrapper`` around ``f`` or ``g``)."""
    return ";".join(closure_fingerprints(main_function(target), object_fingerprint)) or None
