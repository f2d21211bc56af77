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
from collections.abc import Callable, Iterator
from typing import Any

from .. import _torch
from ..format import envelope as format
from .names import importable_name, module_dict_name, nested_codes, resolve_importable


def global_names(code: types.CodeType) -> Iterator[str]:
    """Every name ``code`` and its nested code objects read or write."""
    for each in (code, *nested_codes(code)):
        yield from each.co_names


def rename_globals(code: types.CodeType, rename: dict[str, str]) -> types.CodeType:
    """Replace global names (resume functions) in ``code`` and its nested code objects."""
    if not rename:
        return code
    names = tuple(rename.get(n, n) for n in code.co_names)
    consts = _map_consts(code, lambda c: rename_globals(c, rename), _unchanged)
    return _replaced(code, co_names=names, co_consts=consts)


def _map_consts(code: types.CodeType, on_code: Callable[[types.CodeType], Any],
                on_value: Callable[[Any], Any]) -> tuple[Any, ...]:
    """``code``'s constants, each nested code object passed through ``on_code`` (which
    recurses) and every other constant through ``on_value``."""
    return tuple(on_code(c) if isinstance(c, types.CodeType) else on_value(c)
                 for c in code.co_consts)


def _unchanged(value: Any) -> Any:
    return value


def _replaced(code: types.CodeType, **fields: Any) -> types.CodeType:
    """``code`` with ``fields`` replaced, or ``code`` itself when none of them changed."""
    if all(getattr(code, name) == value for name, value in fields.items()):
        return code
    return code.replace(**fields)


# The ValueRef kind of a dict constant: Dynamo loads a nested function's annotations as one
# (transformers' output-capturing hooks), and the format has no map type for constants.
DICT_KIND = "builtins.dict"
_MAX_DICT_DEPTH = 8
_UNSTORABLE = object()


class _Unstorable(Exception):
    """A constant no reference can hold; its message says which, for ``code_with_refs``."""


def code_with_refs(code: types.CodeType) -> types.CodeType | str:
    """``code`` with every constant the format cannot hold replaced by a reference it can:
    a ``ValueRef`` for torch values Dynamo bakes in (devices, dtypes, sizes) and for dicts
    (their items, each a constant of these kinds), an ``ObjectRef`` for objects found by name
    (a namedtuple's ``_make``, a class, an enum member, a module's ``__dict__``). Returns why
    not (naming the constant's type) when a constant is neither."""
    try:
        return _with_refs(code)
    except _Unstorable as e:
        return str(e)


def _with_refs(code: types.CodeType) -> types.CodeType:
    return code.replace(co_consts=_map_consts(code, _with_refs, _stored_constant))


def _stored_constant(value: Any) -> Any:
    ref = _constant_ref(value)
    if ref is _UNSTORABLE:
        raise _Unstorable(f"its bytecode holds a constant of type {type(value).__qualname__} "
                          f"({_short_repr(value)}) that is neither plain data nor importable "
                          "by name")
    return ref


def _constant_ref(value: Any, depth: int = 0) -> Any:
    """``value`` as the format can hold it (plain data as itself, else the first reference
    that can name it), or ``_UNSTORABLE``."""
    if format.storable(value):
        return value
    for make_ref in (_torch.value_ref, _object_ref):  # in order, the first that names it
        ref = make_ref(value)
        if ref is not None:
            return ref
    return _dict_ref(value, depth) if type(value) is dict else _UNSTORABLE


def _object_ref(value: Any) -> format.ObjectRef | None:
    name = importable_name(value) or module_dict_name(value)
    return None if name is None else format.ObjectRef(name)


def _dict_ref(value: dict[Any, Any], depth: int) -> Any:
    """A dict as the ``ValueRef`` of its items, or ``_UNSTORABLE`` when one is (a dict
    nested deeper than ``_MAX_DICT_DEPTH``, one that holds itself, included)."""
    if depth >= _MAX_DICT_DEPTH:
        return _UNSTORABLE
    items = tuple((_constant_ref(k, depth + 1), _constant_ref(v, depth + 1))
                  for k, v in value.items())
    if any(k is _UNSTORABLE or v is _UNSTORABLE for k, v in items):
        return _UNSTORABLE
    return format.ValueRef(DICT_KIND, items)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not stop a save
        text = object.__repr__(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resolve_refs(code: types.CodeType) -> types.CodeType:
    """Stored code with its ``ObjectRef`` and ``ValueRef`` constants replaced by the objects
    they name (raises if one is gone or malformed: the entry is then not installed)."""
    return _replaced(code, co_consts=_map_consts(code, resolve_refs, _resolve_constant))


def _resolve_constant(value: Any) -> Any:
    if isinstance(value, format.ObjectRef):
        return resolve_importable(value.name)
    if not isinstance(value, format.ValueRef):
        return value
    return _resolve_dict(value.args) if value.kind == DICT_KIND else _torch.rebuild_value(value)


def _resolve_dict(items: tuple[Any, ...]) -> dict[Any, Any]:
    """The dict a ``DICT_KIND`` reference holds the items of; malformed items (not pairs,
    an unhashable key) are a ValueError like any other bad reference."""
    if not all(type(item) is tuple and len(item) == 2 for item in items):
        raise ValueError("package holds a malformed dict constant")
    try:
        return {_resolve_constant(k): _resolve_constant(v) for k, v in items}
    except TypeError as e:  # an unhashable key
        raise ValueError(f"package holds a malformed dict constant ({e})") from None


def share_nested_code(code: types.CodeType, original: types.CodeType) -> types.CodeType:
    """``code`` (stored bytecode Dynamo made from ``original``) with every nested code object
    equal to one of ``original``'s replaced by that very object.

    Dynamo's bytecode makes the frame's nested functions (a hook, a closure) from the code
    objects of the original function. Decoded from a package, those are equal copies, and
    functions made from a copy would miss what is installed on the original (their own
    stored entries, Dynamo's per-code cache): each call would trace again."""
    by_value: dict[types.CodeType, types.CodeType] = {}
    for c in nested_codes(original):
        by_value.setdefault(c, c)
    return _with_shared(code, by_value)


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
        filename = getattr(sys.modules.get(module_name), "__file__", None)
    if not filename or code.co_filename == filename:
        return code
    consts = _map_consts(code, lambda c: retarget_filename(c, module_name, filename),
                         _unchanged)
    return code.replace(co_filename=filename, co_consts=consts)
