"""Walking a guard path: the steps a stored identity-check source may take, and how.

A :class:`GuardPath` is what ``guard_path.parse`` makes of a stored source: a root (``L``,
``G`` or an imported module) and a short tuple of steps, each one of the lookups below
(getattr, getitem, ``type()``, Dynamo's ``___odict_getitem``...). Nothing else can be a
step, so resolving a path only reads attributes and items of objects the program already
has. Call-time checks resolve their paths on every call, so a path also keeps its steps as
one-argument C callables (``attrgetter``/``itemgetter``) where it can.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Step = tuple[Callable[[Any, Any, "Roots"], Any], Any]


@dataclasses.dataclass(frozen=True)
class Roots:
    """What a path starts from: the call's locals (``L``) and the module's globals (``G``)."""

    globals: Mapping[str, Any]
    locals: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class GuardPath:
    """A parsed guard source: a root and steps applied one after the other."""

    source: str
    root: str  # "L", "G" or "import"
    name: Any
    steps: tuple[Step, ...]
    # The same steps as one-argument C callables (attrgetter/itemgetter) where possible:
    # call-time checks run on every call. None when a step reads a key by path.
    _fast: tuple[Callable[[Any], Any], ...] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fast", _fast_steps(self.steps))

    @property
    def reads_locals(self) -> bool:
        """Whether resolving needs the call's locals (also through a key read by path)."""
        return self.root == "L" or any(
            isinstance(arg, GuardPath) and arg.reads_locals for _, arg in self.steps)

    def resolve(self, roots: Roots) -> Any:
        """The object the path names. Raises what the lookups raise (AttributeError,
        KeyError, IndexError, TypeError) when it no longer resolves."""
        return self.lookup(roots.globals, roots.locals)

    def lookup(self, globals_: Mapping[str, Any], locals_: Mapping[str, Any] | None = None) -> Any:
        """``resolve`` without building a Roots (the per-call path: the root is read inline,
        and the fast steps used when there are)."""
        if self.root == "L":
            if locals_ is None:
                raise LookupError(f"{self.source} reads the call's locals")
            value = locals_[self.name]
        elif self.root == "G":
            value = globals_[self.name]
        else:
            value = sys.modules[self.name]
        fast = self._fast
        if fast is not None:
            for f in fast:
                value = f(value)
            return value
        roots = Roots(globals_, locals_)
        for fn, arg in self.steps:
            value = fn(value, arg, roots)
        return value


def _fast_steps(steps: tuple[Step, ...]) -> tuple[Callable[[Any], Any], ...] | None:
    """The steps as one-argument callables: each run of plain attribute steps one
    ``attrgetter("a.b.c")``, items an ``itemgetter``. None when a key is read by path
    (it needs the roots)."""
    if any(isinstance(arg, GuardPath) for _, arg in steps):
        return None
    out: list[Callable[[Any], Any]] = []
    for plain_attrs, run in itertools.groupby(steps, key=_is_plain_attr):
        out.extend(_fast_run(plain_attrs, run))
    return tuple(out)


def _fast_run(plain_attrs: bool, run: Iterable[Step]) -> list[Callable[[Any], Any]]:
    """A run of plain attribute steps as one ``attrgetter``; other steps one by one."""
    if plain_attrs:
        return [operator.attrgetter(".".join(arg for _, arg in run))]
    return [_fast_step(fn, arg) for fn, arg in run]


def _is_plain_attr(step: Step) -> bool:
    """A getattr step ``attrgetter`` can join with its neighbours (no dot in the name)."""
    fn, arg = step
    return fn is get_attr and "." not in arg


def _fast_step(fn: Callable[[Any, Any, Any], Any], arg: Any) -> Callable[[Any], Any]:
    if fn is get_item:
        return operator.itemgetter(arg)
    return type if fn is type_of else functools.partial(_apply, fn, arg)


def _apply(fn: Callable[[Any, Any, Any], Any], arg: Any, value: Any) -> Any:
    return fn(value, arg, None)


# ------------------------------------------------------------------- the steps
# Each is ``step(value, arg, roots)``: ``arg`` is what ``guard_path.parse`` read for it (a
# name, an index, a literal key or a GuardPath to a key), ``roots`` resolve such a key.


def _key(arg: Any, roots: Roots) -> Any:
    return arg.resolve(roots) if isinstance(arg, GuardPath) else arg


def get_attr(value: Any, name: str, roots: Roots) -> Any:
    return getattr(value, name)


def generic_get_attr(value: Any, name: str, roots: Roots) -> Any:
    return object.__getattribute__(value, name)


def get_item(value: Any, key: Any, roots: Roots) -> Any:
    return value[_key(key, roots)]


def type_of(value: Any, _: Any, roots: Roots) -> Any:
    return type(value)


def dict_copy(value: Any, _: Any, roots: Roots) -> Any:
    if not isinstance(value, Mapping):
        raise TypeError("dict(...) of something that is not a __dict__")
    return dict(value)


def dict_key(value: Any, index: int, roots: Roots) -> Any:
    return list(dict.keys(value))[index]


def container_item(value: Any, index: int, roots: Roots) -> Any:
    # Only finite built-in containers: list() of an arbitrary object could iterate forever.
    if not isinstance(value, (set, frozenset, dict, list, tuple)):
        raise TypeError(f"list(...) of a {type(value).__name__}")
    return list(value)[index]


def dict_get_item(value: Any, key: Any, roots: Roots) -> Any:
    return dict.__getitem__(value, _key(key, roots))


def list_get_item(value: Any, index: int, roots: Roots) -> Any:
    return list.__getitem__(value, index)


def odict_get_item(value: Any, key: Any, roots: Roots) -> Any:
    return OrderedDict.__getitem__(value, _key(key, roots))


def tuple_iterator_get_item(value: Any, index: int, roots: Roots) -> Any:
    _, (items,), start = value.__reduce__()
    return items[start + index]


def namedtuple_fields(value: Any, _: Any, roots: Roots) -> Any:
    return value._fields


def dataclass_fields(value: Any, _: Any, roots: Roots) -> Any:
    from .. import _torch  # only a path through a dataclass needs torch

    return _torch.dataclass_fields(value)
