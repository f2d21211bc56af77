"""Calls Dynamo answers at trace time: functions marked ``assume_constant_result``.

A function carrying ``_dynamo_marked_constant`` (``torch._dynamo.assume_constant_result``;
transformers marks its install and version probes, ``is_torch_greater_or_equal``,
``is_mambapy_available``...) is not traced: Dynamo calls it with constant arguments
(``variables/functions.py`` ``invoke_and_store_as_constant``) and puts the result into the
frame's globals under a name of its own (``OutputGraph.register_attr_or_module``), which
the transformed bytecode may read. That global is a plain value with no name another
process could import; the call that made it is what can be repeated there. This module
hears those calls while one of precompile's frames compiles.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .listener_patch import ListenerPatch

# listener(global_name, function, args, kwargs, value); args None when one of them is not
# a plain constant (a tensor, a guarded object): such a call cannot be repeated elsewhere.
Listener = Callable[[str, Any, "list[Any] | None", "dict[str, Any] | None", Any], None]

_installed: dict[str, Any] = {}  # module name -> the original function there

# Where Dynamo calls it from: its own module, and modules that imported it by name.
_CALLERS = ("torch._dynamo.variables.functions", "torch._dynamo.variables.nn_module")


def _constants(values: list[Any]) -> list[Any] | None:
    out = []
    for vt in values:
        try:
            out.append(vt.as_python_constant())
        except Exception:  # noqa: BLE001 - not a constant: the call cannot be repeated
            return None
    return out


def _make_listening(original: Callable[..., Any]) -> Callable[..., Any]:
    def invoke_and_store_as_constant(tx: Any, fn: Any, name: str, args: list[Any],
                                     kwargs: dict[str, Any]) -> Any:
        result = original(tx, fn, name, args, kwargs)
        listener = _PATCH.listener()
        global_name = getattr(getattr(result, "source", None), "source_name", None)
        if listener is not None and isinstance(global_name, str):
            py_args = _constants(list(args))
            py_kwargs = _constants(list(kwargs.values()))
            value = result.as_python_constant() if result.is_python_constant() else None
            listener(global_name, fn, py_args,
                          None if py_kwargs is None else dict(zip(kwargs, py_kwargs)), value)
        return result

    invoke_and_store_as_constant._precompile_hooked = True  # type: ignore[attr-defined]
    return invoke_and_store_as_constant


def _install() -> None:
    for name in _CALLERS:
        mod = importlib.import_module(name)
        real = getattr(mod, "invoke_and_store_as_constant", None)
        if real is not None and not getattr(real, "_precompile_hooked", False):
            _installed[name] = real
            mod.invoke_and_store_as_constant = _make_listening(real)


def _remove() -> None:
    for name, real in _installed.items():
        importlib.import_module(name).invoke_and_store_as_constant = real
    _installed.clear()


_PATCH = ListenerPatch(_install, _remove)


def recording_constant_calls(listener: Listener) -> AbstractContextManager[None]:
    """While one of precompile's frames compiles, tell ``listener`` about every call Dynamo
    answers by calling a marked-constant function. Only the innermost recording on a thread
    hears it; the hook is in place while any thread records (listener_patch.py)."""
    return _PATCH.recording(listener)


def marked_constant(fn: Any) -> bool:
    """Whether ``fn`` (or a function it wraps) is marked ``assume_constant_result``."""
    seen = 0
    while fn is not None and seen < 100:
        if getattr(fn, "_dynamo_marked_constant", False) is True:
            return True
        fn, seen = getattr(fn, "__wrapped__", None), seen + 1
    return False
