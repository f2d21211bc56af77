"""The callable ``warmup`` and ``coverage`` work on: wrapped once, its weights real, and the
locals its first frame would see for a signature.

A factory (``pkg.module:make_model``) may return a plain function or ``nn.Module`` (wrapped
here with the options given) or what ``precompile.cached`` returned (kept, with its own
options and store: the serving process calls the same factory, so its key is the same).

**Meta-device models.** A model built on the meta device has no storage, so nothing can
run it and no kernel can be compiled from it. Compiled code does not depend on weight
*values*: parameters and buffers are graph inputs, and Dynamo's guards check their dtype,
device, shape, strides and ``requires_grad``, never their contents (Inductor's
``freezing``, which would bake values in, is never stored: AOTAutograd refuses to cache
such graphs). So a meta model is materialized on the spec's device (``to_empty``) and
initialized with made-up values: ``reset_parameters()`` where a module defines one, a
seeded N(0, 0.02) for other floating-point tensors and zeros for integer and bool ones
(valid indices). A model whose Python code branches on weight values may take another
branch with real weights; that costs a compile at serving time, never a wrong result.
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import types
from typing import Any

import torch

from .. import _torch
from ..cached_function import CachedFunction
from ..errors import WarmupError
from ..identity.main_function import main_function
from .signatures import inexact

_INIT_STD = 0.02


@dataclasses.dataclass
class FleetTarget:
    """A wrapped callable, the machinery behind it, and whether its weights are made up."""

    fn: Any  # what the user calls
    impl: CachedFunction
    materialized: bool = False


def fleet_target(obj: Any, device: str, seed: int = 0, **options: Any) -> FleetTarget:
    """Wrap ``obj`` (unless it is wrapped already) and materialize a meta-device model."""
    fn, impl = _wrapped(obj, {k: v for k, v in options.items() if v is not None})
    materialized = False
    if isinstance(impl.target, torch.nn.Module) and _on_meta(impl.target):
        materialize(impl.target, device, seed)
        materialized = True
    return FleetTarget(fn, impl, materialized)


def _wrapped(obj: Any, options: dict[str, Any]) -> tuple[Any, CachedFunction]:
    """(what the user calls, its CachedFunction): ``obj`` as it is when precompile.cached
    wrapped it already (with no options given here to contradict its own), else wrapped."""
    impl = getattr(obj, "_precompile", None)
    if isinstance(impl, CachedFunction):
        if options:
            raise WarmupError(f"the callable is already wrapped by precompile.cached, with its "
                              f"own store and options; drop {sorted(options)} or return the "
                              "plain function or module")
        return obj, impl
    if not callable(obj):
        raise WarmupError(f"expected a function or nn.Module (or a factory returning one), "
                          f"got {type(obj).__name__}")
    from ..api import cached

    fn = cached(obj, **options)
    impl = getattr(fn, "_precompile", None)
    if not isinstance(impl, CachedFunction):
        raise WarmupError("precompile is disabled (PRECOMPILE_DISABLE=1): there is no "
                          "cache to warm or check; unset it")
    return fn, impl


def _on_meta(module: torch.nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(module.parameters(), module.buffers()))


def materialize(module: torch.nn.Module, device: str, seed: int = 0) -> None:
    """Give a meta-device module storage on ``device`` and made-up values (module doc)."""
    module.to_empty(device=device)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        done = _reset_parameters(module)
        for t in itertools.chain(module.parameters(), module.buffers()):
            if id(t) in done:
                continue
            if inexact(t.dtype):
                t.normal_(0.0, _INIT_STD)
            else:
                t.zero_()


def _reset_parameters(module: torch.nn.Module) -> set[int]:
    """Run every submodule's own ``reset_parameters``; the ids of the tensors it set."""
    done: set[int] = set()
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            own = itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False))
            done.update(id(t) for t in own)
    return done


def first_frame(impl: CachedFunction, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[types.CodeType, dict[str, Any]]:
    """The code of the first frame Dynamo compiles for ``fn(*args, **kwargs)`` and that
    frame's locals: arguments bound to the function's parameters (``self`` for modules and
    methods, defaults applied, ``*args``/``**kwargs`` collected) plus the values of its free
    variables, which Dynamo's guards read as locals too (``L['func']`` in a decorator's
    wrapper). For torch's own module classes (``nn.Sequential``...) that frame is not their
    ``forward`` but the wrapper Dynamo puts around the module (``_torch.first_frame_function``)."""
    fn, bound_self = first_function(impl.target)
    sig = inspect.signature(fn, follow_wrapped=False)
    try:
        bound = sig.bind(*bound_self, *args, **kwargs)
    except TypeError as e:
        raise WarmupError(f"the signature does not fit {fn.__qualname__}{sig}: {e}") from e
    bound.apply_defaults()
    return fn.__code__, {**bound.arguments, **_free_variables(fn)}


def _free_variables(fn: types.FunctionType) -> dict[str, Any]:
    """The values of ``fn``'s free variables: Dynamo's guards read them as locals."""
    found = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            found[name] = cell.cell_contents
        except ValueError:  # an empty cell is not a local yet
            continue
    return found


def first_function(target: Any) -> tuple[types.FunctionType, tuple[Any, ...]]:
    """The function the first frame runs, and the ``self`` bound before the caller's
    arguments: the module or a method's object (nothing for Dynamo's wrapper, which closes
    over the module)."""
    wrapper = _torch.first_frame_function(target)
    if wrapper is not None:
        return wrapper, ()
    if isinstance(target, torch.nn.Module):
        return main_function(target), (target,)
    return main_function(target), ((target.__self__,) if inspect.ismethod(target) else ())
