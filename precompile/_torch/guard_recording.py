"""Recording guards for a package: which guards stay live-only, and the repairs to Dynamo's
guard serialization (torch/_dynamo/guards.py) while one of precompile's frames compiles."""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import threading
import types
from collections.abc import Iterator, Sequence
from typing import Any

from ..identity.names import shadowed_function as _shadowed_function
from .guard_parity import rebuild_for_parity, recorded_tree
from .keyed_dicts import dict_subclass_reduction
from .standins import rebuild_unowned_function, replacement, unowned_function


# Guard kinds that hold a process-specific identity (an id() or a dict version). Dynamo
# cannot serialize them; precompile drops them from the stored guards and checks the object
# they guarded by a stable fingerprint when installing instead (record/guard_filter.py,
# identity/checks.py).
IDENTITY_GUARD_TYPES = frozenset({
    "DICT_VERSION", "NN_MODULE", "ID_MATCH", "FUNCTION_MATCH", "CLASS_MATCH",
    "MODULE_MATCH", "CLOSURE_MATCH", "WEAKREF_ALIVE",
})

# id()s of Guard objects that stay in the running process's entry but are left out of the
# serialized guard state (identity guards: an id() means nothing in another process).
_LIVE_ONLY_GUARDS: set[int] = set()


def keep_guard_live_only(entry: Any) -> int:
    """Keep a guard (a ``GuardFilterEntry`` the guard filter said yes to) in this process's
    cache entry, exactly as plain torch.compile would, but leave it out of the guard state
    Dynamo serializes for the package (``CheckFunctionManager.serialize_guards`` refuses
    identity guards). Returns a token for ``forget_live_only``, once the frame compiled."""
    _hook_guard_serialization()
    token = id(entry.orig_guard)
    _LIVE_ONLY_GUARDS.add(token)
    return token


def forget_live_only(tokens: Sequence[int]) -> None:
    _LIVE_ONLY_GUARDS.difference_update(tokens)


_RECORDING = threading.local()


@contextlib.contextmanager
def recording_guards() -> Iterator[None]:
    """While one of precompile's frames compiles: serialize guard state the way a package
    needs it (see ``_hook_guard_serialization``); torch's own caching_precompile is left
    alone."""
    _hook_guard_serialization()
    depth = getattr(_RECORDING, "depth", 0)
    _RECORDING.depth = depth + 1
    try:
        yield
    finally:
        _RECORDING.depth = depth


def rebuild_function(code: types.CodeType, module: str, name: str, qualname: str,
                     defaults: tuple[Any, ...] | None, kwdefaults: dict[str, Any] | None,
                     closure: tuple[types.CellType, ...] | None) -> types.FunctionType:
    """Unpickle a function that cannot be found by name (nested, or shadowed by its
    decorator) with the ``__name__`` it had. Dynamo's own ``_unpickle_nested_function``
    names it by its qualname, so a guard such as ``L['func'].__name__ == 'forward'``
    (transformers' ``deprecate_kwarg`` reads it) was rebuilt as ``== 'Cls.forward'`` and
    failed on every warm call."""
    fn = types.FunctionType(code, importlib.import_module(module).__dict__, name, defaults,
                            closure)
    fn.__qualname__ = qualname
    fn.__kwdefaults__ = kwdefaults
    return fn


# What ``torch._dynamo.mark_dynamic`` and friends leave on a tensor; Dynamo's tensor guards
# compare the call's tensors with them (DIMENSION_DYNAMIC_MARKING_GUARD).
_DIMENSION_MARKS = ("_dynamo_dynamic_indices", "_dynamo_weak_dynamic_indices",
                    "_dynamo_unbacked_indices", "_dynamo_strict_unbacked_indices",
                    "_dynamo_static_indices", "_dynamo_shape_ids", "_dynamo_unbacked_bounds",
                    "_has_dynamo_dim_marking", "_dynamo_dynamic_range")  # the last two: 2.15


def _dimension_marks(obj: Any) -> dict[str, Any] | None:
    import torch

    if not isinstance(obj, torch.Tensor):
        return None
    marks = {name: getattr(obj, name) for name in _DIMENSION_MARKS if hasattr(obj, name)}
    return marks or None


def rebuild_marked_tensor(unpickle: Any, args: tuple[Any, ...], marks: dict[str, Any]) -> Any:
    """Unpickle a guarded tensor with the dimension marks it had. Dynamo's guard pickler
    rebuilds tensors without them, so a guard on an input marked dynamic was rebuilt as
    ``hasattr(L['x'], '_dynamo_dynamic_indices') == False`` and refused every marked input."""
    tensor = unpickle(*args)
    for name, value in marks.items():
        setattr(tensor, name, value)
    return tensor


def _hook_guard_serialization() -> None:
    """Repairs to Dynamo's guard serialization (torch/_dynamo/guards.py):

    * ``serialize_guards`` leaves out the identity guards kept live (``keep_guard_live_only``),
      rebuilds the guard tree from the state it wrote and compares it with the tree Dynamo
      built (``guard_parity.recorded_tree``, kept for ``take_guard_tree``), and turns any
      error or difference into a bypass of this entry (its reason kept for
      ``take_guard_failure``): torch 2.13 lets a ``TypeError`` from pickling an object in
      the guarded scope escape into the user's call;
    * precompile's own front functions (``_precompile`` attribute; one replaces
      ``model.forward`` in Hugging Face's ``generate`` recipe) pickle as Dynamo's placeholder,
      never with their closure (which holds locks);
    * ``GuardsStatePickler`` stores a function whose name finds its decorator's wrapper
      (``_shadowed_function``, e.g. the ``forward`` that transformers' ``can_return_tuple``
      wraps) as an unresolvable placeholder, and the guards on its ``__defaults__`` then fail
      to load; it rebuilds nested functions with the wrong ``__name__``. Both are pickled as
      code, module, names, defaults and closure (``rebuild_function``). It also drops the
      dimension marks of guarded tensors (``mark_dynamic``): they are kept
      (``rebuild_marked_tensor``);
    * it fails on a bound method its receiver does not hold under the function's name
      (``types.MethodType(fn, obj)``); such a method pickles as function and receiver.
    * it rebuilds a dict subclass through the subclass's own ``__setitem__``, which may
      rewrite the keys (``keyed_dicts``); such a dict pickles with its keys as they are.
    """
    from torch._dynamo.guards import CheckFunctionManager, GuardsStatePickler

    if getattr(CheckFunctionManager.__dict__["serialize_guards"], "_precompile_hooked", False):
        return
    GuardsStatePickler.reducer_override = _pickling_functions_by_code(  # type: ignore
        GuardsStatePickler.__dict__["reducer_override"])
    CheckFunctionManager.serialize_guards = _serializing_for_a_package(  # type: ignore
        CheckFunctionManager.__dict__["serialize_guards"])


def _pickling_functions_by_code(original: Any) -> Any:
    """``GuardsStatePickler.reducer_override`` that pickles nested and decorator-shadowed
    functions through ``rebuild_function`` while recording (not precompile's own front
    functions, which keep Dynamo's placeholder)."""
    from torch._dynamo.exc import PackageError

    @functools.wraps(original)
    def reducer_override(self: Any, obj: Any) -> Any:
        if not getattr(_RECORDING, "depth", 0):
            return original(self, obj)
        if inspect.isfunction(obj) and (
                "<locals>" in obj.__qualname__ or _shadowed_function(obj)) and not hasattr(
                obj, "_precompile"):
            return rebuild_function, (
                obj.__code__, obj.__module__, obj.__name__, obj.__qualname__, obj.__defaults__,
                obj.__kwdefaults__, obj.__closure__)
        if getattr(_RECORDING, "depth", 0) and inspect.ismethod(obj) and not _bound_by_name(obj):
            return type(self)._unpickle_bound_method, (obj.__func__, obj.__self__)
        keyed = dict_subclass_reduction(obj)
        if keyed is not None:
            return keyed
        if inspect.isfunction(obj) and unowned_function(obj):
            return rebuild_unowned_function, (
                obj.__code__, obj.__name__, obj.__qualname__, obj.__defaults__,
                obj.__kwdefaults__, obj.__closure__)
        try:
            reduced = original(self, obj)
        except PackageError as e:  # an instance of a class made in a function
            reduced = e
        standin = replacement(obj, reduced, self.guard_tree_values)
        if standin is not None:
            return standin
        if isinstance(reduced, Exception):
            raise reduced
        marks = _dimension_marks(obj) if isinstance(reduced, tuple) else None
        return (rebuild_marked_tensor, (*reduced[:2], marks)) if marks else reduced

    return reducer_override


def _bound_by_name(method: types.MethodType) -> bool:
    """Whether a bound method is what its receiver's attribute of the function's name gives
    (``obj.forward``): then pickling it by that name finds it again. Dynamo asks the receiver
    with a plain ``getattr`` and fails on any other method, such as
    ``types.MethodType(fn, obj)`` for a receiver without that attribute."""
    found = getattr(method.__self__, method.__func__.__name__, None)
    return getattr(found, "__func__", found) is method.__func__


def _serializing_for_a_package(original: Any) -> Any:
    """``CheckFunctionManager.serialize_guards`` that, while recording, leaves out the
    live-only guards, checks that the stored state rebuilds the same guards, and turns any
    failure into a bypass of the entry."""
    @functools.wraps(original)
    def serialize_guards(self: Any, builder: Any, sorted_guards: list[Any],
                         output_graph: Any) -> bytes:
        if not getattr(_RECORDING, "depth", 0):
            return original(self, builder, sorted_guards, output_graph)
        live_only = {str(g.name) for g in sorted_guards if id(g) in _LIVE_ONLY_GUARDS}
        stored = [g for g in sorted_guards if id(g) not in _LIVE_ONLY_GUARDS]
        try:
            state = original(self, builder, stored, output_graph)
            rebuilt = rebuild_for_parity(state, builder.f_code, builder.runtime_global_scope)
            _RECORDING.guard_tree, problem = recorded_tree(self.guard_manager, rebuilt, live_only)
            if problem is None:
                return state
            raise ValueError(problem)
        except Exception as e:  # noqa: BLE001 - any failure here is a bypass, never a crash
            # Not re-raised as Dynamo's PackageError: torch 2.13 turns that into a bypass but
            # then asserts that guard state exists (convert_frame._compile_inner), which
            # crashes the user's call. Bypass here and hand back an empty state instead.
            _RECORDING.guard_failure = f"{type(e).__name__}: {e}"
            output_graph.bypass_package(f"Guard serialization failed: {_RECORDING.guard_failure}")
            return b""

    serialize_guards._precompile_hooked = True  # type: ignore[attr-defined]
    return serialize_guards


def take_guard_tree() -> list[str]:
    """The stored form (``guard_parity.stored_form``) of the guard tree of the entry whose guards
    were just serialized on this thread, once."""
    tree = getattr(_RECORDING, "guard_tree", None) or []
    _RECORDING.guard_tree = None
    return tree


def take_guard_failure() -> str | None:
    """Why Dynamo could not serialize the guards of the frame compiling on this thread (it
    then calls the recorder's ``bypass_current_entry``), once."""
    reason = getattr(_RECORDING, "guard_failure", None)
    _RECORDING.guard_failure = None
    return reason


def guard_source_name(entry: Any) -> str:
    """A guard filter entry's source as Dynamo writes it in guard code: locals as
    ``L['x']``, globals as ``G['x']`` (``GuardFilterEntry.name`` strips the ``L[...]``)."""
    return str(entry.orig_guard.name)


def dict_key_by_id(key: Any) -> bool:
    """Whether Dynamo guards this dict key by ``id()`` (tensors, modules: ``key_is_id``)."""
    from torch._dynamo.utils import key_is_id

    return bool(key_is_id(key))
