"""Object fingerprints: what an identity check compares in place of an ``id()``.

Dynamo pins some objects by identity ("this global is *that* function"); another process
has other objects, so precompile stores a description of each instead and compares it
there (``checks.py``). A description names what the object is (module, function, class,
builtin, enum member, plain value) precisely enough to notice that a global now names
another one: a function by name and bytecode (``names.code_fingerprint``), a class no
other process finds by name by a hash of its body (``class_body.py``), a decorated
function layer by layer.
"""
from __future__ import annotations

import enum
import types
from collections.abc import Callable
from typing import Any

from .names import code_fingerprint, importable_name, layers


# Between the layers of a ``functools.wraps`` chain in a fingerprint, outermost first.
WRAPS = " > "


def object_fingerprint(value: Any) -> str:
    """A process-independent description of an object, precise enough to notice that a
    global now names a different function, module or class.

    A decorated function is described layer by layer through its ``__wrapped__`` chain
    (``functools.wraps``, ``lru_cache``, ``torch.compile``'s wrapper...): the wrapper is the
    object Dynamo's identity guard pinned, and the function it wraps tells apart the many
    wrappers one decorator makes from one code object.
    """
    if isinstance(value, (types.ModuleType, type)) or not callable(value):
        return _layer_fingerprint(value)
    try:
        chain = list(layers(value, wrapped_only=True))
    except ValueError:  # a chain that loops: describe the object itself
        chain = [value]
    return WRAPS.join(_layer_fingerprint(layer) for layer in chain)


def _layer_fingerprint(value: Any) -> str:
    """One layer: a function (or a method's) by name and bytecode; otherwise by the first
    kind in ``_LAYER_KINDS`` it is; an instance of anything else by its type alone."""
    fn = value.__func__ if isinstance(value, types.MethodType) else value
    if isinstance(fn, types.FunctionType):
        return _function_layer(fn)
    for kinds, describe in _LAYER_KINDS:
        if isinstance(value, kinds):
            return describe(value)
    t = type(value)
    return f"instance:{t.__module__}.{t.__qualname__}"


def _function_layer(fn: types.FunctionType) -> str:
    """A wrapper made by ``functools.wraps`` carries the wrapped function's name; its code's
    own name (``deco.<locals>.wrapper``) says which decorator made it."""
    own = "" if fn.__code__.co_qualname == fn.__qualname__ else f"[{fn.__code__.co_qualname}]"
    return f"function:{fn.__module__}.{fn.__qualname__}{own}:{code_fingerprint(fn.__code__)}"


def _class_layer(cls: type) -> str:
    """A class by name, plus a hash of its body when no other process finds it by name."""
    from .class_body import class_body_fingerprint  # it fingerprints methods with this module

    body = "" if importable_name(cls) is not None else f":{class_body_fingerprint(cls)}"
    return f"class:{cls.__module__}.{cls.__qualname__}{body}"


def _builtin_layer(value: Any) -> str:
    owner = getattr(value, "__module__", None) or type(getattr(value, "__self__", None)).__name__
    return f"builtin:{owner}.{getattr(value, '__qualname__', value.__name__)}"


def _enum_layer(member: enum.Enum) -> str:
    """Members of one enum share a type: name the member."""
    t = type(member)
    return f"enum:{t.__module__}.{t.__qualname__}.{member.name}"


# (kinds, description), first match wins: an enum member before the plain value it may be.
_LAYER_KINDS: tuple[tuple[type | tuple[type, ...], Callable[[Any], str]], ...] = (
    (types.ModuleType, lambda module: f"module:{module.__name__}"),
    (type, _class_layer),
    ((types.BuiltinFunctionType, types.BuiltinMethodType), _builtin_layer),
    (enum.Enum, _enum_layer),
    ((int, float, str, bytes, bool, type(None)),
     lambda value: f"value:{type(value).__name__}:{value!r}"),
)


def closure_fingerprints(fn: Any, describe: Callable[[Any], str]) -> list[str]:
    """What each of ``fn``'s closure cells holds, by ``describe``: functions one decorator
    makes share a code object and differ only there. An empty cell (a variable not
    assigned yet) is ``"empty"``."""
    parts = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            parts.append(describe(cell.cell_contents))
        except ValueError:  # an empty cell
            parts.append("empty")
    return parts
