"""Dict subclasses whose ``__setitem__`` rewrites what it is given, pickled so that they
come back with the keys they had.

Pickle rebuilds a dict subclass by calling ``obj[key] = value`` for each item, which runs
the subclass's own ``__setitem__``. transformers' ``_CanRecordRegistry`` (output capturing)
stores ``str(model.__class__)`` for the model it is given, so every key it gets back, a
``str``, becomes ``"<class 'str'>"``: the registry Dynamo's guard state rebuilt had one key
instead of one per model class, and rebuilding the guards failed (``IndexError`` evaluating
``list(dict.keys(G['_CAN_RECORD_REGISTRY']))[1]``, a key-order source). Such a dict pickles
here as its class, its items, filled in with the nearest ``__setitem__`` its class inherits
from a built-in mapping, and its attributes.
"""
from __future__ import annotations

import collections
import inspect
from typing import Any

# The reductions pickle uses for a dict subclass that does not define its own.
_DEFAULT_REDUCE = (object.__reduce__, collections.OrderedDict.__reduce__)


def dict_subclass_reduction(obj: Any) -> tuple[Any, ...] | None:
    """How to pickle ``obj`` if it is a dict subclass whose ``__setitem__`` is Python code
    and which pickles by the default reduction; None for every other object."""
    cls = type(obj)
    if not isinstance(obj, dict) or not inspect.isfunction(getattr(cls, "__setitem__", None)):
        return None  # dict's own __setitem__ is no Python function: plain dicts end here
    if (cls.__reduce__ not in _DEFAULT_REDUCE or cls.__reduce_ex__ is not object.__reduce_ex__
            or cls.__getstate__ is not object.__getstate__ or _has_slots(cls)):
        return None
    return rebuild_dict_subclass, (cls, list(dict.items(obj))), getattr(obj, "__dict__", None)


def rebuild_dict_subclass(cls: type, items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A ``cls`` holding ``items`` as they were, set with the built-in ``__setitem__`` its
    class overrides (``OrderedDict``'s keeps its order links)."""
    obj = cls.__new__(cls)
    base_setitem = next(c.__dict__["__setitem__"] for c in cls.__mro__
                        if "__setitem__" in c.__dict__
                        and not inspect.isfunction(c.__dict__["__setitem__"]))
    for key, value in items:
        base_setitem(obj, key, value)
    return obj


def _has_slots(cls: type) -> bool:
    """Whether a class in ``cls``'s MRO declares ``__slots__`` (dict, object and the
    collections mappings declare none): its instances keep state outside ``__dict__``,
    which this reduction would drop."""
    return any("__slots__" in vars(c) for c in cls.__mro__)
