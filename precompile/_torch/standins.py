"""Objects Dynamo's guard pickler refuses, stored as stand-ins that the loading process's
guards are rebuilt over (torch/_dynamo/guards.py: ``GuardsStatePickler``,
``CheckFunctionManager.serialize_guards``).

Dynamo pickles the scope its guards read. It gives up on a frame (a bypass: it compiles in
every process) when that scope holds

* an instance of a class it cannot name: a class made inside a function (``kernels``'
  ``_create_func_module.<locals>.Func``, which 114 transformers 5.25 families hold; FX's
  ``GraphModule.__new__.<locals>.GraphModuleImpl`` of every ``torch.export``'ed module) or
  by ``type()`` at run time (``torch.nn.utils.parametrize``'s ``ParametrizedConv1d``);
* an object whose own reduction raises (a parametrized module's ``__getstate__``, a config
  object whose ``__reduce__`` raises).

Such an object exists again in the loading process, reachable through the same source; only
its pickle is refused. So precompile pickles, in its place, a *stand-in*: an instance of its
class made without ``__init__``, holding the object's attributes, which is what the guards
read (Dynamo prunes those no guard reads). A class no other process finds by name is pickled
by value: made again from its bases and body (methods by code, ``rebuild_class``), so guards
that read through ``type(x)`` (a method's closure, a class flag) are rebuilt as recorded.
Every guard rebuilt over a stand-in is compared leaf by leaf with Dynamo's (guard parity).
The one guard a stand-in cannot rebuild is the check of the object's own class: a
TYPE_MATCH on an instance of an unnamed class stays live-only in the recording process
(``refused_type_match``), and the package checks ``type(source)`` by fingerprint instead,
on the live object (``fingerprints.object_fingerprint``: for an unnamed class its name and a hash
of its body, so a changed class body or generated ``forward`` is a miss, never a guess).
"""
from __future__ import annotations

import builtins
import sys
import types
from typing import Any

from ..identity.names import importable_name

# Objects pickle saves by name or as primitives, never through their reduction.
_SAVED_BY_PICKLE = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType,
                    types.MethodType, types.CodeType, types.CellType, tuple)
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
# Class attributes never copied onto a rebuilt class.
_NOT_COPIED = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__"})


def unnamed_class(cls: type) -> bool:
    """Whether another process cannot find ``cls`` by its module and qualified name."""
    if "<" in cls.__qualname__:
        return True
    return cls.__module__ != "builtins" and importable_name(cls) is None


def refused_type_match(value: Any) -> bool:
    """Whether Dynamo's TYPE_MATCH on ``value`` names a class no other process finds by
    name: precompile checks that class by fingerprint instead (see the module docstring)."""
    import torch

    if isinstance(value, torch.Tensor):
        return False
    return unnamed_class(type(value))


def replacement(obj: Any, reduced: Any, guarded: dict[int, Any]) -> tuple[Any, ...] | None:
    """What to pickle instead of ``obj``, given what Dynamo's pickler made of it
    (``reduced``: its reduction, ``NotImplemented`` for pickle's default, or the error it
    raised), or None to keep that. ``guarded``: the objects the guard tree reads, by id."""
    import torch
    from torch._dynamo.guards import _Missing

    if isinstance(reduced, tuple) and reduced and reduced[0] is _Missing:
        return None  # pruned: no guard reads it
    if isinstance(obj, type):  # rebuilt only where pickle's own (by name) cannot work
        unnamed = reduced is NotImplemented and unnamed_class(obj)
        return _class_reduction(obj, guarded) if unnamed else None
    if isinstance(obj, (_SAVED_BY_PICKLE, torch.Tensor)) or type(obj).__module__ == "builtins":
        return _descriptor_reduction(obj)
    return _standin_replacement(obj, reduced, guarded)


def _standin_replacement(obj: Any, reduced: Any,
                         guarded: dict[int, Any]) -> tuple[Any, ...] | None:
    """A stand-in for an object Dynamo's pickler refused, pruned when no guard reads it."""
    from torch._dynamo.guards import _Missing

    if not _needs_standin(obj, reduced):
        return None
    if id(obj) not in guarded:  # pruned, as Dynamo prunes the modules no guard reads
        return _Missing, ("unpicklable object no guard reads",)
    return _standin_reduction(obj, guarded)


def _needs_standin(obj: Any, reduced: Any) -> bool:
    """Whether Dynamo's pickler refused ``obj`` (or stood a plain Module in for a local
    class) because no other process could find its class by name, or because reducing it
    raises: then a stand-in carries what the guards read of it."""
    dynamo_standin = isinstance(reduced, tuple) and getattr(
        reduced[0], "__name__", "") == "_unpickle_module"  # a plain Module for a local class
    refused = reduced is NotImplemented or isinstance(reduced, Exception) or dynamo_standin
    if not refused:
        return False
    return unnamed_class(type(obj)) or (reduced is NotImplemented and _reduction_raises(obj))


def rebuild_standin(cls: type, state: dict[str, Any]) -> Any:
    """The stand-in of a refused object: an instance of ``cls`` (named, or rebuilt by
    ``rebuild_class``) made without ``__init__``, with the object's attributes."""
    try:
        obj = object.__new__(cls)
    except TypeError:  # a base with its own __new__ (e.g. a C type)
        obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def rebuild_class(name: str, qualname: str, module: str | None,
                  bases: tuple[type, ...]) -> type:
    """An unnamed class made again for guards to read (``fill_class`` adds its body): what
    the guards read through ``type(x)`` (a method's closure, a class flag) comes from it.
    Its instances are never called: guards check the live objects."""
    cls = types.new_class(name, bases)
    cls.__qualname__ = qualname
    cls.__module__ = module  # type: ignore[assignment]
    return cls


def fill_class(cls: type, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        setattr(cls, name, value)


def rebuild_unowned_function(code: types.CodeType, name: str, qualname: str,
                             defaults: tuple[Any, ...] | None, kwdefaults: dict[str, Any] | None,
                             closure: tuple[types.CellType, ...] | None) -> types.FunctionType:
    """A function no module owns (FX's generated ``forward``, ``__module__`` None) made
    again for guards to read: its code, defaults and closure, with empty globals."""
    fn = types.FunctionType(code, {"__builtins__": builtins}, name, defaults, closure)
    fn.__qualname__ = qualname
    fn.__kwdefaults__ = kwdefaults
    return fn


def unowned_function(fn: types.FunctionType) -> bool:
    """A function whose module is not importable: only its code can bring it back."""
    return not isinstance(fn.__module__, str) or fn.__module__ not in sys.modules


def _class_reduction(cls: type, guarded: dict[int, Any]) -> tuple[Any, ...]:
    """The class made again from its bases and the part of its body the guards read; the
    rest is pruned the way Dynamo prunes a module's attributes (``_Missing``)."""
    from torch._dynamo.guards import _Missing

    attrs = {k: v if id(v) in guarded else _Missing("class attribute no guard reads")
             for k, v in vars(cls).items() if k not in _NOT_COPIED}
    # The body goes in the state, pickled after the class is memoized: attributes that
    # refer back to the class (FX's ``_wrapped_call``) then find it.
    return (rebuild_class, (cls.__name__, cls.__qualname__, cls.__module__, cls.__bases__),
            attrs, None, None, fill_class)


def _descriptor_reduction(obj: Any) -> tuple[Any, ...] | None:
    """Descriptors a rebuilt class body holds, which pickle refuses by default."""
    if isinstance(obj, property):
        return property, (obj.fget, obj.fset, obj.fdel, obj.__doc__)
    if isinstance(obj, (staticmethod, classmethod)):
        return type(obj), (obj.__func__,)
    return None


def _standin_reduction(obj: Any, guarded: dict[int, Any]) -> tuple[Any, tuple[Any, ...]] | None:
    """The object's class and the attributes the guards read (plain values always)."""
    from torch._dynamo.guards import _Missing

    state = getattr(obj, "__dict__", None)
    if not isinstance(state, dict):
        return None
    kept = {k: v if id(v) in guarded or isinstance(v, _PLAIN) else _Missing("attribute")
            for k, v in state.items()}
    return rebuild_standin, (type(obj), kept)


def _reduction_raises(obj: Any) -> bool:
    try:
        obj.__reduce_ex__(4)
    except Exception:  # noqa: BLE001 - any failure is a refusal; a stand-in replaces it
        return True
    return False
