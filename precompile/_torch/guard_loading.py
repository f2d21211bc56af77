"""Loading Dynamo's serialized guard state and rebuilding its C++ guard manager, with the
repairs stored state needs (torch/_dynamo/package.py: load_guards_state + load_guard_manager),
and the helpers stored guard sources call by name."""
from __future__ import annotations

import dataclasses
import functools
import io
import pickle
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from . import compat
from .compile import guard_fail_adapter
from .entries import reserve_global_names


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
    if module == "torch._dynamo.source" and name == "ImportSource":
        return _import_source
    if module == "torch._dynamo.guards":
        if name == "GuardsStatePickler":
            return _RepairedGuardsStatePickler
        if name == "GuardsStatePickler._unpickle_tensor":
            return _repaired_unpickle_tensor
    return None


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


def _import_source(*args: Any) -> Any:
    """Dynamo's ``ImportSource`` (``__import__('torch')``, which ``pytree.tree_is_leaf``
    and friends guard through), rebuilt outside a trace. Constructing one installs an
    ``ID_MATCH`` guard in the current ``TracingContext`` (source.py: ``__post_init__``), and
    a stored entry is rebuilt where there is none (RuntimeError), or, at record time, inside
    the trace that is compiling. The guard goes to a scratch context: the identity it stands
    for is a guard of the entry's own, stored or checked by precompile."""
    from torch._dynamo.source import ImportSource
    from torch._guards import TracingContext, tracing

    with tracing(TracingContext(None)):
        return ImportSource(*args)


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
                       guard_fail_fn: Callable[[str, types.CodeType], None] | None = None) -> Any:
    """Rebuild Dynamo's C++ guard manager from serialized guard state
    (torch/_dynamo/package.py: load_guards_state + load_guard_manager).

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
    with _lambda_guards_read_live_globals():
        manager = CheckFunctionManager(
            code, OutputGraphCommon(state.output_graph), shape_code_parts=state.shape_code_parts,
            runtime_global_scope=f_globals,
            guard_fail_fn=guard_fail_adapter(guard_fail_fn),
        ).guard_manager
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


# Attributes torch.compile's marking APIs set on a tensor (mark_dynamic, maybe_mark_dynamic,
# mark_unbacked, mark_static: ``_dynamo_dynamic_indices``, ``_dynamo_static_indices``..., and
# on torch 2.15 ``_has_dynamo_dim_marking`` with ``_dynamo_dynamic_range``), which Dynamo's
# dimension-marking guard reads (torch/_dynamo/guards.py: TENSOR_MATCH). Which ones exist
# differs between releases, so every such attribute holding plain data (2.15's
# ``_DimRange`` records included) travels.
_MARK_PREFIXES = ("_dynamo_", "_has_dynamo_")
_PLAIN = (int, float, bool, str, type(None))


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if depth > 3:
        return False
    if isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, (set, frozenset, tuple, list)):
        return all(_plain(v, depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and type(value).__module__.startswith("torch."):
        return all(_plain(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return False


def dimension_marks(tensor: Any) -> dict[str, Any]:
    """The dimension markings a guarded tensor carries, to store with it."""
    attrs = getattr(tensor, "__dict__", {})
    return {name: value for name, value in attrs.items()
            if name.startswith(_MARK_PREFIXES) and _plain(value)}


def with_dimension_marks(rebuild: Callable[..., Any], args: tuple[Any, ...],
                         marks: dict[str, Any]) -> Any:
    """A tensor rebuilt by Dynamo's own reduction, with the markings it was guarded with:
    without them the marking guard is rebuilt as ``hasattr(x, '_dynamo_dynamic_indices')
    == False`` and refuses every marked input the entry was compiled for."""
    import torch

    tensor = rebuild(*args)
    if isinstance(tensor, torch.Tensor):  # not a pruned value's placeholder
        for name, value in marks.items():
            if name.startswith(_MARK_PREFIXES) and _plain(value):
                setattr(tensor, name, value)
    return tensor


def dataclass_fields(value: Any) -> Any:
    """What Dynamo's guard sources call as ``___dataclass_fields(path)`` (guards.py), for
    identity checks that walk the same sources (``guard_path``)."""
    from torch._dynamo.guards import dataclass_fields as fields

    return fields(value)
