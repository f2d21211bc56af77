"""The optimizer state Dynamo creates while it traces ``optimizer.step()``, heard while one of
precompile's frames compiles and created again in a loading process.

Dynamo does not trace an optimizer's ``_init_group``: it calls the real one on the live
optimizer (torch/_dynamo/variables/optimizer.py, ``OptimizerVariable``: ``get_python_args``
turns the traced arguments into Python values, then ``self.value._init_group(*args)``) and
guards on the state that call made (``len(L['self'].state) == 4``). An entry compiled on an
optimizer's first step therefore only matches an optimizer that already has that state,
which nothing but a trace creates. Recording the call (which param group, which arguments)
lets a loading process make the same call, on the same kind of optimizer, before the
entry's guards look at the state: the state eager's own ``step()`` would create first.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from .listener_patch import ListenerPatch

# (optimizer, source name, encoded arguments) -> None; see ``recording_state_inits``
Listener = Callable[[Any, str, list[list[Any]]], None]

_CONSTANTS = (type(None), bool, int, float, str)
_installed: list[Any] = []  # the real ``get_python_args`` while ours is in place


def encode_args(optimizer: Any, args: list[Any]) -> list[list[Any]] | None:
    """``_init_group``'s Python arguments as data: ``["group", i]`` for the optimizer's
    i-th param group, ``["list"]`` for an empty list it fills, ``["const", v]`` for a plain
    constant; None for anything else (that call cannot be made again elsewhere)."""
    encoded: list[list[Any]] = []
    group_index = {id(g): i for i, g in enumerate(optimizer.param_groups)}
    for arg in args:
        index = group_index.get(id(arg))
        if index is not None:
            encoded.append(["group", index])
        elif type(arg) is list and not arg:
            encoded.append(["list"])
        elif isinstance(arg, _CONSTANTS):
            encoded.append(["const", arg])
        else:
            return None
    return encoded


def decode_args(optimizer: Any, encoded: list[list[Any]]) -> list[Any]:
    """The arguments ``encode_args`` described, for this optimizer (fresh lists)."""
    out: list[Any] = []
    for arg in encoded:
        if arg[0] == "group":
            out.append(optimizer.param_groups[arg[1]])
        elif arg[0] == "list":
            out.append([])
        else:
            out.append(arg[1])
    return out


def _listening_get_python_args(self: Any, *args: Any, **kwargs: Any) -> Any:
    py_args, py_kwargs = _installed[0](self, *args, **kwargs)
    listener = _PATCH.listener()
    source = getattr(self, "source", None)
    if listener is not None and source is not None and not py_kwargs:
        name = str(source.name)  # ``L['self']``, ``G['opt']``: as guards write it
        encoded = encode_args(self.value, list(py_args))
        if encoded is not None:
            listener(self.value, name, encoded)
    return py_args, py_kwargs


def _install() -> None:
    from torch._dynamo.variables.optimizer import OptimizerVariable

    _installed[:] = [OptimizerVariable.get_python_args]
    OptimizerVariable.get_python_args = _listening_get_python_args


def _remove() -> None:
    from torch._dynamo.variables.optimizer import OptimizerVariable

    OptimizerVariable.get_python_args = _installed.pop()


_PATCH = ListenerPatch(_install, _remove)


def recording_state_inits(listener: Listener) -> AbstractContextManager[None]:
    """While one of precompile's frames compiles, tell ``listener`` about each
    ``_init_group`` call Dynamo is about to make on a live optimizer (the optimizer, its
    guard source, the encoded arguments). Only the innermost recording on a thread hears
    it; the hook is in place while any thread records (listener_patch.py)."""
    return _PATCH.recording(listener)


def is_optimizer(value: Any) -> bool:
    return isinstance(value, torch.optim.Optimizer)


def optimizer_state_size(optimizer: Any) -> int:
    return len(optimizer.state)


def optimizer_param_count(optimizer: Any) -> int:
    return sum(len(g["params"]) for g in optimizer.param_groups)


def init_optimizer_state(optimizer: Any, calls: list[list[list[Any]]]) -> bool:
    """Make the ``_init_group`` calls Dynamo made while it traced the entry, on this
    optimizer; False (nothing done) when they would not be the same calls.

    Dynamo also flips a param group to ``capturable`` when all its parameters are on a GPU
    and have no state yet, differently per torch release; groups with a parameter off the
    CPU are therefore left to a normal compile.
    """
    groups = optimizer.param_groups
    for call in calls:  # the shapes were checked where the package was read (manifest.py)
        for kind, *rest in call:
            if kind == "group" and not 0 <= rest[0] < len(groups):
                return False
    if any(p.device.type != "cpu" for g in groups for p in g["params"]):
        return False
    for call in calls:
        optimizer._init_group(*decode_args(optimizer, call))
    return True
