"""Loading Dynamo's serialized guard state and rebuilding its C++ guard manager, with the
repairs stored state needs (torch/_dynamo/package.py: load_guards_state + load_guard_manager),
and the helpers stored guard sources call by name."""
from __future__ import annotations

import functools
import io
import pickle
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from . import compat
from .compile import guard_fail_adapter
from .entries import reserve_global_names
from .in_process_assumptions import forget_dict_tags


class _GuardsUnpickler(pickle.Unpickler):
    """Unpickles Dynamo's GuardsState, repairing one torch 2.13 bug on the way.

    A parameter that already had a ``.grad`` when the frame compiled (any compile after the
    first ``backward()``) is pickled with its grad as Dynamo's ``_Missing`` placeholder, and
    ``GuardsStatePickler._unpickle_tensor`` then fails assigning it. Guards never read that
    grad, so rebuild such tensors without one.
    """

    def find_class(self, module: str, name: str) -> Any:
        return _repaired_class(module, name) or super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _pruned_value(self, pid)


def _pruned_value(unpickler: Any, pid: Any) -> Any:
    """What a persistent id in guard state stands for: the one placeholder per load that
    torch's own loader gives a pruned value (``compat.pruned_value_pid``)."""
    from torch._dynamo.guards import _Missing

    if pid is None or pid != compat.pruned_value_pid():
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in guard state")
    if getattr(unpickler, "_precompile_pruned", None) is None:
        unpickler._precompile_pruned = _Missing(pid)
    return unpickler._precompile_pruned


def _repaired_class(module: str, name: str) -> Any:
    if module == "torch._dynamo.guards":
        if name == "GuardsStatePickler":
            return _RepairedGuardsStatePickler
        if name == "GuardsStatePickler._unpickle_tensor":
            return _repaired_unpickle_tensor
    if module == "torch._dynamo.source" and name == "ImportSource":
        return _import_source
    return None


def _import_source(*values: Any) -> Any:
    """An ``ImportSource`` rebuilt without its ``__post_init__``, which installs an
    ``ID_MATCH`` guard into the current trace (torch/_dynamo/source.py) and so fails outside
    one: the guard it installed while compiling is part of the stored state already.
    Dynamo's guards on a HOP's implementation module (``torch.cond``) name it this way."""
    import dataclasses

    from torch._dynamo.source import ImportSource

    source = ImportSource.__new__(ImportSource)
    fields = [f for f in dataclasses.fields(ImportSource) if f.init]
    if len(fields) != len(values):
        raise pickle.UnpicklingError(f"ImportSource takes {len(fields)} fields, not {len(values)}")
    for field, value in zip(fields, values):
        object.__setattr__(source, field.name, value)
    return source


class _LenientGuardsUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler, tried when ``_GuardsUnpickler`` fails: an object whose
    ``__setstate__`` raises is restored the default way (its ``__dict__`` updated).

    Dynamo prunes from the guard state every value no guard reads, replacing it with a
    ``_Missing`` placeholder. A class whose ``__setstate__`` computes with its state then
    fails: ``Adam.__setstate__`` calls ``float(state["step"])`` on a pruned step tensor, so
    no compiled optimizer step with existing state could be loaded. Guards read attributes,
    which the default restore provides.
    """

    def find_class(self, module: str, name: str) -> Any:
        return _repaired_class(module, name) or super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _pruned_value(self, pid)

    def load_build(self) -> None:
        """pickle's BUILD, with the default restore when ``__setstate__`` raises."""
        state = self.stack.pop()
        inst = self.stack[-1]
        setstate = getattr(inst, "__setstate__", None)
        if setstate is not None:
            try:
                setstate(state)
                return
            except Exception:  # noqa: BLE001 - see the class docstring
                pass
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        if state:  # (objects with only slots have no __dict__)
            inst.__dict__.update(state)
        for key, value in (slots or {}).items():
            setattr(inst, key, value)

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = load_build


def unpickle_guards_state(data: bytes) -> Any:
    """Dynamo's pickled GuardsState (fast unpickler first, lenient one if that fails)."""
    try:
        return _GuardsUnpickler(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001 - retried; a second failure propagates
        return _LenientGuardsUnpickler(io.BytesIO(data)).load()


def _repaired_unpickle_tensor(meta_tensor: Any, device: Any, pytype: Any,
                              dispatch_keys_raw: int, grad: Any) -> Any:
    from torch._dynamo.guards import GuardsStatePickler, _Missing

    if isinstance(grad, _Missing):
        grad = None
    return GuardsStatePickler._unpickle_tensor(meta_tensor, device, pytype, dispatch_keys_raw, grad)


class _RepairedGuardsStatePicklerMeta(type):
    def __getattr__(cls, name: str) -> Any:
        from torch._dynamo.guards import GuardsStatePickler

        if name == "_unpickle_tensor":
            return _repaired_unpickle_tensor
        return getattr(GuardsStatePickler, name)


class _RepairedGuardsStatePickler(metaclass=_RepairedGuardsStatePicklerMeta):
    """Stands in for GuardsStatePickler when pickle looks up its reconstruction helpers."""


def load_guard_manager(guards_state: bytes, code: types.CodeType, f_globals: dict[str, Any],
                       place_global: Callable[[str, Any], Any],
                       guard_fail_fn: Callable[[str, types.CodeType], None] | None = None,
                       inference_mode: bool = False) -> Any:
    """Rebuild Dynamo's C++ guard manager from serialized guard state
    (torch/_dynamo/package.py: load_guards_state + load_guard_manager).

    Tensor guards store the dispatch keys they expect as seen under the thread's dispatch
    state when they are built (C++ ``TensorCheck`` applies ``LocalState``), which
    ``torch.inference_mode`` changes; so they are rebuilt under the mode the entry was
    compiled in (``inference_mode``), not the mode of whichever call installs the package.

    The tree forgets the dict tags it recorded from this process's live objects
    (``in_process_assumptions.forget_dict_tags``), so its first check runs every guard.

    Guards read builtins through a dict Dynamo keeps in the module's globals;
    ``place_global(name, value)`` puts it there the way the installer tracks globals.
    """
    from torch._dynamo.guards import CheckFunctionManager, GuardsState
    from torch._dynamo.output_graph import OutputGraphCommon, get_builtins_dict

    try:
        import torch.distributed.fsdp._fully_shard._fully_shard as _fully_shard

        ctx: Any = _fully_shard.disable_fsdp_module_new_init()
    except ImportError:
        ctx = nullcontext()
    with ctx:
        state = unpickle_guards_state(guards_state)
    if not isinstance(state, GuardsState):
        raise TypeError(f"guard state blob holds a {type(state).__name__}")
    name = state.output_graph.name_of_builtins_dict_key_in_fglobals
    if name:
        reserve_global_names([name])
        place_global(name, get_builtins_dict(f_globals))
    with torch.inference_mode(inference_mode), _lambda_guards_read_live_globals():
        manager = CheckFunctionManager(
            code, OutputGraphCommon(state.output_graph), shape_code_parts=state.shape_code_parts,
            runtime_global_scope=f_globals,
            guard_fail_fn=guard_fail_adapter(guard_fail_fn),
        ).guard_manager
    forget_dict_tags(manager)
    manager.global_scope = {"G": f_globals}  # what failure reasons evaluate guards against
    return manager


_LAMBDA_GUARD_HOOK = threading.Lock()


@contextmanager
def _lambda_guards_read_live_globals() -> Iterator[None]:
    """While stored guards are rebuilt: Python lambda guards (the shape guards, e.g.
    ``2 <= G['X'].size()[0]`` on a global tensor with a dynamic dimension) read ``G`` from
    the module's live globals, as the C++ guard tree does (``runtime_global_scope``).

    Dynamo binds a lambda guard's ``G`` to the builder's scope, which for a rebuilt entry is
    the stored scope: the lambda then checks the global the entry was compiled with, forever,
    and a one-row global is served the graph built for two rows or more. In a normal compile
    both scopes are the same dict, so the hook changes nothing there.
    """
    from torch._dynamo.guards import GuardBuilder

    original = GuardBuilder.__dict__["add_python_lambda_leaf_guard_to_root"]

    @functools.wraps(original)
    def add_lambda_guard(self: Any, *args: Any, **kwargs: Any) -> Any:
        stored = self.scope["G"]
        self.scope["G"] = self.runtime_global_scope
        try:
            return original(self, *args, **kwargs)
        finally:
            self.scope["G"] = stored

    with _LAMBDA_GUARD_HOOK:
        GuardBuilder.add_python_lambda_leaf_guard_to_root = add_lambda_guard  # type: ignore
        try:
            yield
        finally:
            GuardBuilder.add_python_lambda_leaf_guard_to_root = original  # type: ignore


def dataclass_fields(value: Any) -> Any:
    """What Dynamo's guard sources call as ``___dataclass_fields(path)`` (guards.py), for
    identity checks that walk the same sources (``guard_path``)."""
    from torch._dynamo.guards import dataclass_fields as fields

    return fields(value)
