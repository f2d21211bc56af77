"""Transformed bytecode between this process and a package.

Dynamo's bytecode holds constants the package format cannot (a ``torch.device`` read before a
graph break, a namedtuple's ``_make``) and global names numbered per process (resume
functions). Stored, constants become references (``format.ValueRef`` for torch values,
``format.ObjectRef`` for objects found by name) and resume globals get unique names;
installed, the references are resolved and the code points at this machine's source file.
"""
from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

from .. import _torch
from ..format import envelope as format
from .names import importable_name, module_dict_name, resolve_importable


def global_names(code: types.CodeType) -> Iterator[str]:
    """Every name ``code`` and its nested code objects read or write."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from global_names(const)


def rename_globals(code: types.CodeType, rename: dict[str, str]) -> types.CodeType:
    """Replace global names (resume functions) in ``code`` and its nested code objects."""
    if not rename:
        return code
    names = tuple(rename.get(n, n) for n in code.co_names)
    consts = tuple(rename_globals(c, rename) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    if names == code.co_names and consts == code.co_consts:
        return code
    return code.replace(co_names=names, co_consts=consts)


# The ValueRef kind of a dict constant: Dynamo loads a nested function's annotations as one
# (transformers' output-capturing hooks), and the format has no map type for constants.
DICT_KIND = "builtins.dict"
_MAX_DICT_DEPTH = 8
_UNSTORABLE = object()


def code_with_refs(code: types.CodeType) -> types.CodeType | str:
    """``code`` with every constant the format cannot hold replaced by a reference it can:
    a ``ValueRef`` for torch values Dynamo bakes in (devices, dtypes, sizes) and for dicts
    (their items, each a constant of these kinds), an ``ObjectRef`` for objects found by name
    (a namedtuple's ``_make``, a class, an enum member, a module's ``__dict__``). Returns why
    not (naming the constant's type) when a constant is neither."""
    consts = []
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            c = code_with_refs(c)
            if isinstance(c, str):
                return c
        else:
            ref = _constant_ref(c)
            if ref is _UNSTORABLE:
                return (f"its bytecode holds a constant of type {type(c).__qualname__} "
                        f"({_short_repr(c)}) that is neither plain data nor importable "
                        "by name")
            c = ref
        consts.append(c)
    return code.replace(co_consts=tuple(consts))


def _constant_ref(value: Any, depth: int = 0) -> Any:
    """``value`` as the format can hold it, or ``_UNSTORABLE`` (a dict nested deeper than
    ``_MAX_DICT_DEPTH``, one that holds itself, included)."""
    if format.storable(value):
        return value
    ref = _torch.value_ref(value)
    if ref is not None:
        return ref
    name = importable_name(value) or module_dict_name(value)
    if name is not None:
        return format.ObjectRef(name)
    if type(value) is dict:
        if depth >= _MAX_DICT_DEPTH:
            return _UNSTORABLE
        items = [(_constant_ref(k, depth + 1), _constant_ref(v, depth + 1))
                 for k, v in value.items()]
        if any(k is _UNSTORABLE or v is _UNSTORABLE for k, v in items):
            return _UNSTORABLE
        return format.ValueRef(DICT_KIND, tuple(items))
    return _UNSTORABLE


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not stop a save
        text = object.__repr__(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resolve_refs(code: types.CodeType) -> types.CodeType:
    """Stored code with its ``ObjectRef`` and ``ValueRef`` constants replaced by the objects
    they name (raises if one is gone or malformed: the entry is then not installed)."""
    consts = tuple(resolve_refs(c) if isinstance(c, types.CodeType) else _resolve_constant(c)
                   for c in code.co_consts)
    return code if consts == code.co_consts else code.replace(co_consts=consts)


def _resolve_constant(value: Any) -> Any:
    if isinstance(value, format.ObjectRef):
        return resolve_importable(value.name)
    if isinstance(value, format.ValueRef) and value.kind == DICT_KIND:
        if not all(type(item) is tuple and len(item) == 2 for item in value.args):
            raise ValueError("package holds a malformed dict constant")
        try:
            return {_resolve_constant(k): _resolve_constant(v) for k, v in value.args}
        except TypeError as e:  # an unhashable key
            raise ValueError(f"package holds a malformed dict constant ({e})") from None
    if isinstance(value, format.ValueRef):
        return _torch.rebuild_value(value)
    return value


def share_nested_code(code: types.CodeType, original: types.CodeType) -> types.CodeType:
    """``code`` (stored bytecode Dynamo made from ``original``) with every nested code object
    equal to one of ``original``'s replaced by that very object.

    Dynamo's bytecode makes the frame's nested functions (a hook, a closure) from the code
    objects of the original function. Decoded from a package, those are equal copies, and
    functions made from a copy would miss what is installed on the original (their own
    stored entries, Dynamo's per-code cache): each call would trace again."""
    live = {id(c): c for c in _nested_code(original)}
    by_value: dict[types.CodeType, types.CodeType] = {}
    for c in live.values():
        by_value.setdefault(c, c)
    return _with_shared(code, by_value)


def _nested_code(code: types.CodeType) -> Iterator[types.CodeType]:
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield c
            yield from _nested_code(c)


def _with_shared(code: types.CodeType,
                 by_value: dict[types.CodeType, types.CodeType]) -> types.CodeType:
    consts = tuple(by_value.get(c) or _with_shared(c, by_value)
                   if isinstance(c, types.CodeType) else c for c in code.co_consts)
    if all(a is b for a, b in zip(consts, code.co_consts)):
        return code
    return code.replace(co_consts=consts)


def retarget_filename(code: types.CodeType, module_name: str,
                      filename: str | None = None) -> types.CodeType:
    """Point stored code at this machine's copy of the source file (for tracebacks)."""
    if filename is None:
        mod = sys.modules.get(module_name)
        filename = getattr(mod, "__file__", None)
    if not filename or code.co_filename == filename:
        return code
    consts = tuple(retarget_filename(c, module_name, filename)
                   if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)
