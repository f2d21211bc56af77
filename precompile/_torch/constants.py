"""torch values Dynamo bakes into transformed bytecode as constants, written as plain data
(``format.ValueRef``) and rebuilt only through a fixed list of constructors."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..format import envelope as format


# torch value types Dynamo bakes into transformed bytecode as constants (a device read from a
# tensor and passed across a graph break, a dtype, a size), stored as ``format.ValueRef`` by
# name: kind -> (type, how to write it as plain data, how to rebuild it from that data).
_NAMED_TORCH_TYPES = {"torch.dtype": torch.dtype, "torch.layout": torch.layout,
                      "torch.memory_format": torch.memory_format}


def value_ref(value: Any) -> format.ValueRef | None:
    """``value`` as plain data the package format can hold, or None for other types."""
    if type(value) is torch.device:
        return format.ValueRef("torch.device", (value.type, value.index))
    if type(value) is torch.Size:
        return format.ValueRef("torch.Size", tuple(int(d) for d in value))
    for kind, cls in _NAMED_TORCH_TYPES.items():
        if type(value) is cls:
            name = str(value).removeprefix("torch.")
            if getattr(torch, name, None) is value:
                return format.ValueRef(kind, (name,))
    return None


def _device(kind: Any, index: Any = None) -> torch.device:
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise TypeError("a device is a type name and an optional index")
    return torch.device(kind) if index is None else torch.device(kind, index)


def _size(*dims: Any) -> torch.Size:
    if not all(type(d) is int for d in dims):
        raise TypeError("a size holds ints")
    return torch.Size(dims)


def _named(kind: str) -> Callable[[Any], Any]:
    def lookup(name: Any) -> Any:
        value = getattr(torch, name, None) if isinstance(name, str) else None
        if type(value) is not _NAMED_TORCH_TYPES[kind]:
            raise TypeError(f"torch.{name} is not a {kind}")
        return value
    return lookup


# The only constructors a package can make the installer call, by ValueRef kind.
_REBUILDERS: dict[str, Callable[..., Any]] = {
    "torch.device": _device, "torch.Size": _size,
    **{kind: _named(kind) for kind in _NAMED_TORCH_TYPES},
}


def rebuild_value(ref: format.ValueRef) -> Any:
    """The constant ``value_ref`` stored; raises ValueError for anything not on its list."""
    rebuild = _REBUILDERS.get(ref.kind)
    try:
        if rebuild is not None:
            return rebuild(*ref.args)
    except (TypeError, RuntimeError):  # wrong arity or types; an unknown device type
        pass
    raise ValueError(f"package holds a constant precompile cannot rebuild: {ref.kind}{ref.args}")
