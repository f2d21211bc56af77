"""Guard paths: the only part of Dynamo's guard-source grammar an identity check may use.

An identity check stored in a package names the object it checks by Dynamo's guard source
(``G['helper']``, ``L['self'].act``, ``L['fn'].__closure__[0].cell_contents``...). Those
strings come from a file, so they are never ``eval``'d: :func:`parse` reads one with
``ast`` into a short tuple of steps (start at ``L``/``G``/an imported module, then
getattr/getitem/one of a few fixed lookups), and :meth:`GuardPath.resolve` walks them.
Anything outside the grammar (a call of anything but the lookups below, an operator, a
name other than the roots, a lambda...) raises :class:`GuardPathError`, so the worst a
stored path can do is read attributes and items of objects the program already has.

The grammar is what ``torch/_dynamo/source.py``'s ``_name_template``\\ s produce for the
sources an identity guard (ID_MATCH, CLOSURE_MATCH, CLASS_MATCH...) can sit on:

    path   := L[const] | G[const] | __import__(str)            (LocalSource, GlobalSource,
                                                                ImportSource)
            | path.name | getattr(path, str)                   (AttrSource, defaults, closure,
                                                                __mro__, __code__...)
            | object.__getattribute__(path, str)               (GenericAttrSource)
            | path[key]                                        (GetItemSource, DictGetItem...)
            | type(path) | dict(path.__dict__)                 (TypeSource, TypeDictSource)
            | list(dict.keys(path))[int] | list(path)[int]     (ConstDictKey, set items)
            | dict.__getitem__(path, key) | list.__getitem__(path, int)
            | ___odict_getitem(path, key) | ___tuple_iterator_getitem(path, int)
            | ___namedtuple_fields(path) | ___dataclass_fields(path)
    key    := a literal (str, int, float, bytes, bool, None, tuple of those, slice(...))
            | path                                             (a dict key read by path)

``__import__('torch')`` is looked up in ``sys.modules`` only: resolving a path never imports.
This module reads a source into a :class:`GuardPath`; the path, its steps and how they are
walked are ``guard_walk.py``.
"""
from __future__ import annotations

import ast
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeGuard

from ..errors import FormatError
from .guard_walk import (GuardPath, Roots, Step, container_item, dataclass_fields, dict_copy,
                         dict_get_item, dict_key, generic_get_attr, get_attr, get_item,
                         list_get_item, namedtuple_fields, odict_get_item,
                         tuple_iterator_get_item, type_of)

__all__ = ["MAX_SOURCE_CHARS", "GuardPath", "GuardPathError", "Roots", "parse"]

MAX_SOURCE_CHARS = 10_000  # Dynamo's longest real sources are a few hundred characters
_ROOTS = ("L", "G")


class GuardPathError(FormatError):
    """A stored identity-check source is not a guard path precompile accepts: the package
    was written by an unknown Dynamo version or tampered with. The entry is not used; delete
    the package (``precompile prune --stale``) if it keeps happening."""


# --------------------------------------------------------------------------- parsing


def parse(source: Any) -> GuardPath:
    """Parse a stored identity-check source, or raise :class:`GuardPathError`. Cached: the
    same sources recur across entries and processes re-read the same package."""
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        raise GuardPathError(f"identity check source {str(source)[:80]!r} is not a guard path "
                             "(not a string, or too long); the package is malformed")
    return _parse_cached(source)


@functools.lru_cache(maxsize=4096)
def _parse_cached(source: str) -> GuardPath:
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and such: refused below
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
        return _parse_node(tree.body, source)
    except GuardPathError:
        raise
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as e:
        raise GuardPathError(f"identity check source {source[:80]!r} does not parse "
                             f"({type(e).__name__}); the package is malformed") from None


def _refuse(source: str, node: ast.AST) -> GuardPathError:
    return GuardPathError(f"identity check source {source[:80]!r} uses "
                          f"{ast.unparse(node)[:60]!r}, which is not part of a guard path: "
                          "precompile only walks attributes and items. The package is "
                          "malformed or from an unsupported torch; delete it")


def _parse_node(node: ast.AST, source: str) -> GuardPath:
    """Walk from the outermost operation in to the root (a loop, not recursion: attribute
    chains can be long), collecting steps, then reverse them."""
    steps: list[Step] = []
    while True:
        root = _as_root(node, source)
        if root is not None:
            steps.reverse()
            return GuardPath(source, root[0], root[1], tuple(steps))
        node = _outer_step(node, source, steps)


def _as_root(node: ast.AST, source: str) -> tuple[str, str] | None:
    """``(root, name)`` if ``node`` is where a path starts, None if it is a step."""
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and node.value.id in _ROOTS):
        return _scope_root(node, node.value.id, source)
    if _is_call(node, "__import__"):
        return _import_root(node, source)
    return None


def _scope_root(node: ast.Subscript, scope: str, source: str) -> tuple[str, str]:
    """``L['x']`` or ``G['x']``: the name is a string constant, never a computed key."""
    return scope, _name_arg(node.slice, source)


def _import_root(node: ast.Call, source: str) -> tuple[str, str]:
    """``__import__('pkg.mod')``: a dotted name only (looked up, never imported)."""
    (arg,) = _call_args(node, 1, source)
    name = _name_arg(arg, source)
    if not all(p.isidentifier() for p in name.split(".")):
        raise _refuse(source, node)
    return "import", name


def _outer_step(node: ast.AST, source: str, steps: list[Step]) -> ast.AST:
    """Append the step ``node`` applies last and return the node it applies it to."""
    if isinstance(node, ast.Attribute):
        steps.append((get_attr, node.attr))
        return node.value
    if isinstance(node, ast.Subscript):
        return _subscript_step(node, source, steps)
    if isinstance(node, ast.Call):
        return _call_step(node, source, steps)
    raise _refuse(source, node)


def _subscript_step(node: ast.Subscript, source: str, steps: list[Step]) -> ast.AST:
    """``path[key]``, or an item by position: ``list(path)[i]``, ``list(dict.keys(path))[i]``."""
    inner = node.value
    if not _is_call(inner, "list"):
        steps.append((get_item, _key_arg(node.slice, source)))
        return inner
    (arg,) = _call_args(inner, 1, source)
    index = _typed_literal(node.slice, source, int)
    if _is_call(arg, "dict.keys"):
        steps.append((dict_key, index))
        return _call_args(arg, 1, source)[0]
    steps.append((container_item, index))
    return arg


def _is_call(node: ast.AST, name: str) -> TypeGuard[ast.Call]:
    return isinstance(node, ast.Call) and _func_name(node) == name


def _call_step(node: ast.Call, source: str, steps: list[Step]) -> ast.AST:
    """One of Dynamo's lookup helpers, ``helper(path)`` or ``helper(path, key)``."""
    name = _func_name(node)
    if name in _ONE_ARG_CALLS:
        steps.append((_ONE_ARG_CALLS[name], None))
        return _call_args(node, 1, source)[0]
    if name == "dict":
        steps.append((dict_copy, None))
        return _instance_dict(node, source)
    if name in _TWO_ARG_CALLS:
        fn, read_key = _TWO_ARG_CALLS[name]
        base, key = _call_args(node, 2, source)
        steps.append((fn, read_key(key, source)))
        return base
    raise _refuse(source, node)


def _instance_dict(node: ast.Call, source: str) -> ast.AST:
    """The argument of ``dict(path.__dict__)`` (TypeDictSource): only an object's own
    ``__dict__`` is copied, never an arbitrary iterable."""
    (arg,) = _call_args(node, 1, source)
    if not (isinstance(arg, ast.Attribute) and arg.attr == "__dict__"):
        raise _refuse(source, node)
    return arg


def _func_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f"{f.value.id}.{f.attr}"
    return None


def _call_args(node: ast.Call, n: int, source: str) -> list[ast.expr]:
    if node.keywords or len(node.args) != n or any(isinstance(a, ast.Starred) for a in node.args):
        raise _refuse(source, node)
    return list(node.args)


_LITERAL_TYPES = (str, int, float, bytes, bool, type(None), slice)


def _literal(node: ast.AST, source: str) -> Any:
    """A constant key: what ``repr`` of a str/int/float/bytes/bool/None/tuple/slice gives."""
    if _is_call(node, "slice") and not node.keywords:
        return _slice_literal(node, source)
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, source) for e in node.elts)
    return _constant(node, source)


def _slice_literal(node: ast.Call, source: str) -> slice:
    """``slice(start, stop, step)``, as ``repr`` spells a slice key: ``literal_eval`` reads
    no calls, so this one call is read here, with int or None bounds only."""
    parts = [_literal(a, source) for a in node.args]
    if len(parts) > 3 or not all(type(p) in (int, type(None)) for p in parts):
        raise _refuse(source, node)
    return slice(*parts)


def _constant(node: ast.AST, source: str) -> Any:
    """One literal, read by ``ast.literal_eval`` (which evaluates nothing) and limited to
    the types a key can have: ``literal_eval`` also builds lists, dicts and sets."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _refuse(source, node) from None
    if not isinstance(value, _LITERAL_TYPES):
        raise _refuse(source, node)
    return value


def _typed_literal(node: ast.AST, source: str, want: type) -> Any:
    value = _literal(node, source)
    if not isinstance(value, want) or isinstance(value, bool):
        raise _refuse(source, node)
    return value


def _key_arg(node: ast.AST, source: str) -> Any:
    """A literal key, or a path (Dynamo reads dict keys it cannot spell as a literal by
    position: ``d[list(dict.keys(d))[0]]``)."""
    try:
        return _literal(node, source)
    except GuardPathError:
        return _parse_node(node, source)


# Dynamo helpers called as ``helper(path, key)``: which step, and how its key is read
# (attribute names are strings, indexes ints; a dict key may be a path).
_name_arg = functools.partial(_typed_literal, want=str)
_index_arg = functools.partial(_typed_literal, want=int)
_TWO_ARG_CALLS: dict[str, tuple[Callable[..., Any], Callable[[ast.AST, str], Any]]] = {
    "getattr": (get_attr, _name_arg),
    "object.__getattribute__": (generic_get_attr, _name_arg),
    "dict.__getitem__": (dict_get_item, _key_arg),
    "list.__getitem__": (list_get_item, _index_arg),
    "___odict_getitem": (odict_get_item, _key_arg),
    "___tuple_iterator_getitem": (tuple_iterator_get_item, _index_arg),
}
_ONE_ARG_CALLS: dict[str, Callable[..., Any]] = {
    "type": type_of,
    "___namedtuple_fields": namedtuple_fields,
    "___dataclass_fields": dataclass_fields,
}
