"""The fingerprint of a class no other process finds by name (``object_fingerprint``
adds it to such a class's name).

Such a class is made at run time: inside a function (``kernels``' ``Func``), by ``type()``
(``torch.nn.utils.parametrize``'s ``ParametrizedConv1d``) or per instance (FX's
``GraphModuleImpl``, whose ``forward`` is generated code with no source file). Its name alone
says nothing about its body, and no source range covers what it does, so identity checks on
it compare a hash of its body.
"""
from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from typing import Any

from .fingerprints import closure_fingerprints, object_fingerprint
from .names import code_fingerprint, importable_name


def class_body_fingerprint(cls: type) -> str:
    """sha256 of what a class no other process finds by name *does*: every attribute of it
    and of its bases up to the first named one (methods by code and closure, plain values by
    value, others by type). Such a class is made at run time (inside a function, by
    ``type()``, or as FX's per-module ``GraphModuleImpl`` with generated ``forward`` code
    that has no source file), so its name alone says nothing about its body."""
    h = hashlib.sha256()
    for klass in cls.__mro__:
        h.update(f"{klass.__module__}.{klass.__qualname__}".encode())
        if importable_name(klass) is not None:
            break
        for name, attr in _body(klass):
            h.update(f"{name}={_attribute_fingerprint(attr)};".encode())
    return h.hexdigest()


def _body(klass: type) -> list[tuple[str, Any]]:
    """The attributes ``klass`` itself defines, by name (not the ``__dict__``,
    ``__weakref__`` and ``__doc__`` every class gets)."""
    return [(name, attr) for name, attr in sorted(vars(klass).items(), key=lambda item: item[0])
            if name not in ("__dict__", "__weakref__", "__doc__")]


def _attribute_fingerprint(attr: Any) -> str:
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        return ",".join(_attribute_fingerprint(f) for f in (attr.fget, attr.fset, attr.fdel))
    if isinstance(attr, types.FunctionType):
        cells = closure_fingerprints(attr, _cell_fingerprint)
        return f"{code_fingerprint(attr.__code__)}({','.join(cells)})"
    return _cell_fingerprint(attr)


def _cell_fingerprint(value: Any) -> str:
    """A closed-over or class-level value, without recursing into classes (a method's
    ``__class__`` cell is its own class): the first kind in ``_CELL_KINDS`` it is, else an
    instance by its type."""
    for kinds, describe in _CELL_KINDS:
        if isinstance(value, kinds):
            return describe(value)
    return f"instance:{type(value).__module__}.{type(value).__qualname__}"


_CELL_KINDS: tuple[tuple[type | tuple[type, ...], Callable[[Any], str]], ...] = (
    (type, lambda cls: f"class:{cls.__module__}.{cls.__qualname__}"),
    ((types.FunctionType, types.ModuleType), object_fingerprint),
    ((int, float, str, bytes, bool, type(None)), lambda value: f"{type(value).__name__}:{value!r}"),
)
