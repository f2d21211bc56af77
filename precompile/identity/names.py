"""Names and code objects: how one process's functions are found again in another.

A package stores code by what it *does* (``code_fingerprint``) and objects by the name that
finds them (``importable_name``); installing walks those names back to this process's
objects (``resolve_code``, ``resolve_importable``). Every walk of a ``__wrapped__`` chain
(``layers``) and of a dotted qualified name (``walk_qualname``) is here, so the recorder, the
installer, the keys and the CLI agree on what "the same function" means.

``_torch`` imports this module (to pickle functions by name), so the one helper here that
needs a torch entry point imports ``_torch`` when called. Rewriting the bytecode itself for
storage is ``bytecode.py``; describing an object for an identity check is
``fingerprints.py``; which function a compile target runs is ``main_function.py``.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any


# Wrapper chains longer than this are treated as loops (a ``__wrapped__`` that makes a new
# object on every read would otherwise never end).
_MAX_LAYERS = 100


# ------------------------------------------------------------- code fingerprints


def code_fingerprint(code: types.CodeType) -> str:
    """sha256 of what a code object *does*: bytecode, constants, names (recursively).

    Line numbers and file paths are left out, so moving a function or checking the project
    out elsewhere keeps its key; editing what it does changes it.
    """
    h = hashlib.sha256()
    _feed_code(h, code)
    return h.hexdigest()


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    for part in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                 (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
                  code.co_flags, code.co_name)):
        h.update(repr(part).encode())
    for const in code.co_consts:
        _feed_const(h, const)


def _feed_const(h: Any, const: Any) -> None:
    """One constant, the same in every process: a ``frozenset`` (what ``x in {"a", "b"}``
    compiles to) is fed in sorted order, because its ``repr`` follows string hashing, which
    ``PYTHONHASHSEED`` randomizes per process."""
    if isinstance(const, types.CodeType):
        h.update(b"<code>")
        _feed_code(h, const)
    elif isinstance(const, (tuple, frozenset)):
        _feed_members(h, const)
    else:
        h.update(f"{type(const).__name__}:{const!r}".encode())


def _feed_members(h: Any, const: tuple[Any, ...] | frozenset[Any]) -> None:
    """A tuple or frozenset: its type and size, then each member's own digest (a
    frozenset's sorted, so its iteration order does not matter)."""
    parts = [_const_digest(item) for item in const]
    if isinstance(const, frozenset):
        parts.sort()
    h.update(f"{type(const).__name__}[{len(parts)}]".encode())
    for part in parts:
        h.update(part.encode())


def _const_digest(const: Any) -> str:
    """A member of a tuple or frozenset constant hashed on its own, so members can be
    sorted by digest."""
    sub = hashlib.sha256()
    _feed_const(sub, const)
    return sub.hexdigest()


# ------------------------------------------------------------------- unwrapping


# (kinds, the attribute holding what they wrap) that ``layers`` sees through unless
# ``wrapped_only``.
_HOLDERS = (((staticmethod, classmethod, types.MethodType), "__func__"), (property, "fget"),
            (functools.partial, "func"))


def _inner(obj: Any, wrapped_only: bool) -> Any:
    """The object ``obj`` wraps, or None."""
    if wrapped_only:
        return getattr(obj, "__wrapped__", None)
    for kinds, attr in _HOLDERS:
        if isinstance(obj, kinds):
            return getattr(obj, attr)
    if hasattr(obj, "__wrapped__"):
        return obj.__wrapped__
    from .. import _torch  # imported here: _torch imports this module

    return _torch.compiled_original(obj)


def layers(obj: Any, *, wrapped_only: bool = False) -> Iterator[Any]:
    """``obj``, then each object it wraps, outermost first: through descriptors, bound
    methods, partials, ``functools.wraps`` (``__wrapped__``) and ``torch.compile``
    (``_torch.compiled_original``); with ``wrapped_only``, through ``__wrapped__`` alone
    (``inspect.unwrap``'s rule). Raises ValueError when the chain loops."""
    seen: list[Any] = []  # the objects themselves: a freed layer's id could come back
    while obj is not None:
        if len(seen) >= _MAX_LAYERS or any(obj is s for s in seen):
            raise ValueError(f"wrapper chain of {seen[0]!r} loops")
        seen.append(obj)
        yield obj
        obj = _inner(obj, wrapped_only)


def unwrap(obj: Any) -> Any:
    """The innermost function behind ``functools.wraps`` layers, or ``obj`` itself when the
    chain loops."""
    try:
        *_, inner = layers(obj, wrapped_only=True)
    except ValueError:
        return obj
    return inner


def find_code(obj: Any, qualname: str | None = None) -> types.CodeType | None:
    """The code object behind a function, method, decorated function or descriptor: the
    first layer that is a function (named ``qualname``, when given)."""
    try:
        for layer in layers(obj):
            if not isinstance(layer, types.FunctionType):
                continue
            if qualname in (None, layer.__code__.co_qualname):
                return layer.__code__
    except ValueError:
        return None
    return None


# ------------------------------------------------------------- qualified names


def walk_qualname(root: Any, qualname: str, *, static: bool = False) -> Any:
    """The object at the dotted ``qualname`` below ``root``; raises AttributeError when a
    step is missing. ``static``: read attributes without running descriptors (a property
    or classmethod comes back as itself, so its function can be found)."""
    obj = root
    for part in qualname.split(".") if qualname else ():
        obj = inspect.getattr_static(obj, part) if static else getattr(obj, part)
    return obj


def shadowed_function(obj: Any) -> bool:
    """A module-level function whose qualified name now finds another object: typically the
    function a decorator wrapped (``functools.wraps`` gives the wrapper the same name)."""
    if not inspect.isfunction(obj) or "<locals>" in obj.__qualname__:
        return False
    if sys.modules.get(obj.__module__) is None:
        return False
    return _named_now(obj.__module__, obj.__qualname__) is not obj


# What ``_named_now`` gives for a name that finds nothing.
_NOTHING = object()


def _named_now(module: str, qualname: str) -> Any:
    """The object ``module:qualname`` names in this process now (modules already imported
    only: nothing is imported), or ``_NOTHING``."""
    try:
        return walk_qualname(sys.modules.get(module), qualname)
    except AttributeError:
        return _NOTHING


def module_dict(module_name: str) -> dict[str, Any] | None:
    """The globals the functions of ``module_name`` run in (``module_globals``), importing
    it if needed; None if it does not import."""
    mod = sys.modules.get(module_name)
    if mod is None:
        try:
            mod = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a module that fails to import is not there
            return None
    return module_globals(mod)


def module_globals(mod: types.ModuleType) -> dict[str, Any]:
    """The dict the functions defined in ``mod`` read their globals from: ``mod.__dict__``,
    except for a script run through ``runpy.run_path``. multiprocessing's spawn start method
    (``torch.multiprocessing.spawn`` too) runs the parent's main script that way as
    ``__mp_main__``: the code runs in a temporary module and only a *copy* of its globals
    lands in ``sys.modules['__mp_main__']``, so its functions (and the frames Dynamo
    compiles) keep reading the temporary dict. Globals placed for them, and guards on
    ``G[...]``, belong in that dict."""
    own = mod.__dict__
    for value in list(own.values()):
        for fn in _functions_of(value):
            if _same_module(fn.__globals__, own):
                return fn.__globals__
    return own


def _same_module(scope: dict[str, Any], own: dict[str, Any]) -> bool:
    """Globals of the same name and file: the module's own, or the dict ``runpy`` ran the
    module's code in."""
    name, file = own.get("__name__"), own.get("__file__")
    return scope.get("__name__") == name and scope.get("__file__") == file


def _functions_of(value: Any) -> Iterator[types.FunctionType]:
    """``value`` if it is a function, or the functions in a class's own namespace."""
    if isinstance(value, types.FunctionType):
        yield value
    elif isinstance(value, type):
        yield from (v for v in vars(value).values() if isinstance(v, types.FunctionType))


def resolve_code(module_name: str, qualname: str, fingerprint: str) -> types.CodeType | None:
    """This process's code object for ``module:qualname`` if its bytecode is unchanged.

    Walks attributes for the dotted part of the qualname; below ``<locals>`` it searches the
    enclosing function's constants, where Python keeps nested functions' code objects.
    """
    head, nested, _ = qualname.partition(".<locals>")
    obj = _defined_object(module_name, head)
    if nested:
        outer = find_code(obj)
        return None if outer is None else _find_nested(outer, qualname, fingerprint)
    code = find_code(obj, qualname)
    return code if code is not None and code_fingerprint(code) == fingerprint else None


def _defined_object(module_name: str, qualname: str) -> Any:
    """The object at ``qualname`` in the module's globals, read without running descriptors;
    None when there is none (``find_code`` finds no code in None either)."""
    scope = module_dict(module_name)
    if scope is None:
        return None
    first, _, rest = qualname.partition(".")
    try:
        return walk_qualname(scope[first], rest, static=True)
    except (KeyError, AttributeError):
        return None


def nested_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """The code objects of the functions, classes and comprehensions defined in ``code``,
    at every depth, each before the ones inside it."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from nested_codes(const)


def _find_nested(code: types.CodeType, qualname: str, fingerprint: str) -> types.CodeType | None:
    return next((c for c in nested_codes(code)
                 if c.co_qualname == qualname and code_fingerprint(c) == fingerprint), None)


def importable_name(value: Any) -> str | None:
    """How another process finds ``value`` by name: ``"pkg.mod"`` for a module,
    ``"pkg.mod:Qual.name"`` for an object importing that name gives back; else None."""
    for kind, name_of in _NAMED_BY:
        if isinstance(value, kind):
            return name_of(value)
    return _qualified_name(value)


def module_dict_name(value: Any) -> str | None:
    """``"pkg.mod:__dict__"`` when ``value`` is the namespace of the module of that name (the
    globals Dynamo bakes into bytecode that makes a nested function); else None."""
    if type(value) is not dict:
        return None
    name = value.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    return f"{name}:__dict__" if getattr(module, "__dict__", None) is value else None


def _module_name(module: types.ModuleType) -> str | None:
    """A module's name, if importing it gives this very module (not one built by hand or
    since replaced in ``sys.modules``)."""
    return module.__name__ if sys.modules.get(module.__name__) is module else None


def _enum_member_name(member: enum.Enum) -> str | None:
    """``"pkg.mod:Cls.NAME"``: a member has no ``__qualname__`` of its own, so it is found
    through its class, and only if that attribute is this member."""
    owner = importable_name(type(member))
    if not owner or getattr(type(member), member.name, None) is not member:
        return None
    return f"{owner}.{member.name}"


def _qualified_name(value: Any) -> str | None:
    """``"module:qualname"`` if walking that name gives ``value`` back: a function made
    inside another (``<locals>``) or a global since rebound has no name that finds it."""
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}:{qualname}" if _named_now(module, qualname) is value else None


def _method_name(method: types.MethodType) -> str | None:
    """``"pkg.mod:Cls.method"`` for a method bound to something found by name (a namedtuple
    class's ``_make``), if that name gives back an equal method."""
    owner = importable_name(method.__self__)
    if not owner:
        return None
    name = f"{owner}{'.' if ':' in owner else ':'}{method.__func__.__name__}"
    try:
        return name if resolve_importable(name) == method else None
    except Exception:  # noqa: BLE001 - not reachable by that name
        return None


# Kinds named otherwise than by ``__module__`` and ``__qualname__``: a module by its own
# name, a bound method through its owner, an enum member through its class.
_NAMED_BY: tuple[tuple[type, Callable[[Any], str | None]], ...] = (
    (types.ModuleType, _module_name), (types.MethodType, _method_name),
    (enum.Enum, _enum_member_name))


# The reference ``importable_name`` cannot give: the globals of the frame itself.
OWN_GLOBALS = "<own globals>"
# ... and the ``__globals__`` of the function at a guard source: ``GLOBALS_OF + source``.
GLOBALS_OF = "<globals of> "


def resolve_importable(ref: str) -> Any:
    """The object ``importable_name`` named (imports the module; raises if it is gone)."""
    module, _, qualname = ref.partition(":")
    return walk_qualname(importlib.import_module(module), qualname)
