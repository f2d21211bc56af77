"""Compiling: building the backend as torch.compile does and driving Dynamo with precompile's
recorder as its package object; reading back what ``torch.compile`` was given."""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .ddp import keep_package_in_ddp_clones
from .environment import TORCH_VERSION
from .hops import checking_subgraphs, storable_hop_names
from .light_loads import light_optimize_imports


def bundle_lazy_backwards() -> None:
    """Let a backward compiled lazily, at ``.backward()`` outside any compile, still reach
    the PrecompileContext: AOTAutograd checks ``bundled_autograd_cache`` when it saves the
    finished forward+backward, so it has to be on process-wide (only for eager_backward=False).
    """
    torch._functorch.config.bundled_autograd_cache = True


# Functions Dynamo puts into graphs that AOTAutograd's cache does not allowlist, although
# they are plain torch API: a graph that calls them produced no artifact, so the frame was
# never stored. ``torch.inference_mode()`` as a decorator puts the first two in every graph,
# a ``torch.autocast(...)`` region the last two (device type, dtype and enabled flag are
# their arguments, i.e. part of the graph and of its cache key).
CACHEABLE_GRAPH_CALLS = (
    "torch.autograd.grad_mode._enter_inference_mode",
    "torch.autograd.grad_mode._exit_inference_mode",
    "torch.amp.autocast_mode._enter_autocast",
    "torch.amp.autocast_mode._exit_autocast",
)


# Node metadata AOTAutograd copies from the forward graph onto the backward's nodes, naming
# the modules each node came from by class. torch drops ``nn_module_stack`` itself before it
# pickles an ``aot_eager`` graph (backends/debugging.py ``AOTEagerOutputCode``), not these.
_PROVENANCE_META = ("fwd_nn_module_stack", "fwd_source_fn_stack")


def storable_aot_eager_graphs() -> None:
    """Let AOTAutograd's cache store an ``aot_eager`` training graph whose model holds a
    module of a class no other process finds by name (kernels'
    ``_create_func_module.<locals>.Func`` in Llama, Mistral, Qwen..., parametrize's
    ``ParametrizedConv1d``): the backward's nodes name it in ``fwd_nn_module_stack``, which
    only says where a node came from; running the graph never reads it. Installed once,
    process-wide, before torch pickles the graph."""
    from torch._dynamo.backends import debugging

    output_code = getattr(debugging, "AOTEagerOutputCode", None)
    real = getattr(output_code, "prepare_for_serialization", None)
    if real is None or getattr(real, "_precompile_drops_provenance", False):
        return

    def prepare_for_serialization(self: Any) -> None:
        if self.gm is not None:
            for node in self.gm.graph.nodes:
                for key in _PROVENANCE_META:
                    node.meta.pop(key, None)
        real(self)

    prepare_for_serialization._precompile_drops_provenance = True  # type: ignore[attr-defined]
    output_code.prepare_for_serialization = prepare_for_serialization


@contextlib.contextmanager
def cacheable_graph_calls() -> Iterator[None]:
    """Mark ``CACHEABLE_GRAPH_CALLS`` and the higher-order operators of
    ``hops.STORABLE_HOPS`` cacheable while one of precompile's frames compiles
    (``torch._inductor.config.unsafe_marked_cacheable_functions``, keyed by the torch version
    as that option's documentation asks), and ``storable_aot_eager_graphs``. The HOPs only
    together with
    ``hops.checking_subgraphs``: what their subgraphs call is checked like the graph itself.
    """
    import torch._inductor.config as inductor_config

    storable_aot_eager_graphs()
    marked = dict(inductor_config.unsafe_marked_cacheable_functions)
    for name in CACHEABLE_GRAPH_CALLS + storable_hop_names():
        marked.setdefault(name, TORCH_VERSION)
    with checking_subgraphs(), inductor_config.patch(unsafe_marked_cacheable_functions=marked):
        yield


@contextlib.contextmanager
def optimizer_state_as_inputs() -> Iterator[None]:
    """While one of precompile's frames compiles, let a compiled ``optimizer.step()`` take its
    parameters and state as graph inputs.

    Dynamo's optimizer support marks them ``mark_static_address(t, guard=True)``
    (variables/optimizer.py), which bakes each tensor into the graph as an attribute behind an
    ``ID_MATCH`` guard, and OutputGraph then bypasses packaging ("Graph contains named
    parameters due to static addresses"): such a graph holds this process's tensors. Marked
    ``guard=False`` they are static for cudagraphs all the same but lifted as inputs, read by
    the bytecode from the optimizer each call, so the graph works in any process. Same
    results; a few more bytecode loads per step.
    """
    from torch._dynamo import decorators

    real = decorators.mark_static_address

    def mark_static_address(t: Any, guard: bool = False) -> None:
        real(t, guard=False)

    decorators.mark_static_address = mark_static_address
    try:
        yield
    finally:
        decorators.mark_static_address = real


def functorch_patch(**values: Any) -> Any:
    """Temporarily set AOTAutograd options (a context manager)."""
    return torch._functorch.config.patch(**values)


def make_backend(backend: Any, mode: str | None, options: dict[str, Any] | None,
                 dynamic: bool | None) -> Any:
    """Build the backend object exactly as ``torch.compile`` does (torch/__init__.py)."""
    if mode is None and options is None:
        mode = "default"
    if backend == "inductor":
        return torch._TorchCompileInductorWrapper(mode, options, dynamic)
    return torch._TorchCompileWrapper(backend, mode, options, dynamic)


class _InductorBackend(torch._TorchCompileInductorWrapper):
    """torch.compile's inductor backend, the same in every way but one: its
    ``get_compiler_config`` reads ``torch._inductor.config`` directly.

    ``torch._dynamo.optimize`` calls ``get_compiler_config()`` up front, and torch's version
    imports ``torch._inductor.compile_fx`` to do it: with lowering, the Triton codegen and the
    decompositions that is about 0.8 s of a ~3 s warm start, for nothing a warm start runs.
    The value is the same (``compile_fx.get_patched_config_dict`` is exactly this); the
    import now happens when something is compiled.
    """

    def get_compiler_config(self) -> dict[str, Any]:
        from torch._inductor import config

        with config.patch(self.config):
            return config.get_config_copy()


def defer_compiler_import(backend_obj: Any) -> Any:
    """Swap a plain inductor backend for ``_InductorBackend``; leave anything else alone
    (subclasses such as the AOTInductor wrapper change ``__call__``, so they are kept)."""
    if type(backend_obj) is not torch._TorchCompileInductorWrapper:
        return backend_obj
    deferred = _InductorBackend.__new__(_InductorBackend)
    deferred.__dict__.update(backend_obj.__dict__)
    return deferred


def optimize(backend_obj: Any, recorder: Any, *, dynamic: bool | None, fullgraph: bool,
             guard_filter_fn: Callable[[Sequence[Any]], Sequence[bool]],
             guard_fail_fn: Callable[[str, types.CodeType], None]) -> Any:
    """``torch._dynamo.optimize`` with our recorder as Dynamo's package object.
    ``guard_fail_fn(reason, code)`` hears why an entry's guards failed (a recompile)."""
    backend_obj = defer_compiler_import(backend_obj)
    keep_package_in_ddp_clones()
    with light_optimize_imports():
        return torch._dynamo.optimize(backend=backend_obj, nopython=fullgraph,
                                      dynamic=dynamic, guard_filter_fn=guard_filter_fn,
                                      package=recorder,
                                      guard_fail_fn=guard_fail_adapter(guard_fail_fn))


class _GuardFailAdapter:
    """Dynamo's ``guard_fail_fn(GuardFail(reason, orig_code))`` as ``fn(reason, code)``.
    Pickles (``torch.save`` of a compiled module) as whatever ``fn`` pickles as."""

    def __init__(self, fn: Callable[[str, types.CodeType], None]) -> None:
        self.fn = fn

    def __call__(self, failure: Any) -> None:
        self.fn(str(failure.reason), failure.orig_code)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return guard_fail_adapter, (self.fn,)


def guard_fail_adapter(fn: Callable[[str, types.CodeType], None] | None,
                       ) -> _GuardFailAdapter | None:
    """Dynamo's ``guard_fail_fn`` for ``fn`` (None stays None)."""
    return _GuardFailAdapter(fn) if fn is not None else None


def dynamo_skips_frame_after(error: BaseException) -> bool:
    """Whether Dynamo, having failed to compile a frame with ``error``, runs that code eagerly
    from then on: a "soft" failure (``Unsupported``, ``UserError``) outside fullgraph, without
    an execution strategy of its own (torch/_dynamo/convert_frame.py ``ConvertFrame``)."""
    from torch._dynamo import exc

    hard = tuple(getattr(exc, name) for name in ("UncapturedHigherOrderOpError",
                                                 "ResumePrologueTracingError")
                 if hasattr(exc, name))
    if isinstance(error, hard):
        return False
    return (isinstance(error, (exc.Unsupported, exc.UserError))
            and getattr(error, "frame_exec_strategy", None) is None)


@dataclasses.dataclass
class CompiledParts:
    """What ``torch.compile`` was given, recovered from the object it returned."""

    original: Any
    backend_obj: Any
    fullgraph: bool
    dynamic: bool | None


def compiled_original(obj: Any) -> Any:
    """The callable a ``torch.compile``d function wraps, or None for anything else."""
    return getattr(obj, "_torchdynamo_orig_callable", None)


def _compiled_function_parts(obj: Any) -> tuple[Any, Any]:
    """(context, original) of a function ``torch.compile`` returned: the context is the
    ``self`` its closure holds; a compiled bound method gives back a bound original."""
    original = obj._torchdynamo_orig_callable
    code = getattr(obj, "__code__", None)
    cells = dict(zip(code.co_freevars, obj.__closure__ or ())) if code else {}
    ctx = cells["self"].cell_contents if "self" in cells else None
    if inspect.ismethod(obj) and not inspect.ismethod(original):
        original = types.MethodType(original, obj.__self__)
    return ctx, original


def unwrap_compiled(obj: Any) -> CompiledParts | None:
    """If ``obj`` came from ``torch.compile``, return the original and its compile settings.

    torch.compile returns an ``OptimizedModule`` (holding ``dynamo_ctx``) or a function whose
    closure holds the ``OptimizeContext`` as ``self``; the backend object sits at the end of
    the ``_torchdynamo_orig_backend`` chain of the context's callback.
    """
    from torch._dynamo.eval_frame import OptimizedModule, OptimizeContext

    if isinstance(obj, OptimizedModule):
        ctx, original = obj.dynamo_ctx, obj._orig_mod
    elif callable(obj) and hasattr(obj, "_torchdynamo_orig_callable"):
        ctx, original = _compiled_function_parts(obj)
    else:
        return None
    if not isinstance(ctx, OptimizeContext):
        return None
    backend = ctx.callback
    while hasattr(backend, "_torchdynamo_orig_backend"):
        backend = backend._torchdynamo_orig_backend
    return CompiledParts(original=original, backend_obj=backend,
                         fullgraph=bool(getattr(ctx, "fullgraph", False)),
                         dynamic=getattr(ctx, "_dynamic", None))


def describe_backend(backend_obj: Any) -> str:
    """A stable, process-independent description of a backend and its options (for keys)."""
    if isinstance(backend_obj, torch._TorchCompileInductorWrapper):
        return f"inductor{sorted((k, repr(v)) for k, v in backend_obj.config.items())}"
    if isinstance(backend_obj, torch._TorchCompileWrapper):
        options = sorted((k, repr(v)) for k, v in backend_obj.kwargs.items())
        return f"{backend_obj.compiler_name}{options}"
    name = getattr(backend_obj, "__qualname__", None) or type(backend_obj).__qualname__
    module = getattr(backend_obj, "__module__", None) or type(backend_obj).__module__
    return f"{module}.{name}"


def first_frame_function(target: Any) -> Any:
    """For a module whose ``forward`` Dynamo's trace rules never compile as a frame of its
    own (torch's classes: ``nn.Sequential``, ``nn.ModuleDict``...), the function whose frame
    ``torch.compile`` compiles instead: ``OptimizedModule`` wraps the module in
    ``external_utils.wrap_inline``, an ``inner(*args, **kwargs)`` closing over it as ``fn``
    (torch/_dynamo/eval_frame.py ``OptimizedModule._initialize``). A new wrapper has that
    frame's code object. None for anything else: its own ``forward`` is the first frame."""
    from torch._dynamo import config, external_utils, trace_rules

    if not isinstance(target, torch.nn.Module):
        return None
    forward = target.forward
    if config.wrap_top_frame or (isinstance(forward, types.MethodType)
                                 and trace_rules.check(forward)):
        return external_utils.wrap_inline(target)
    return None


def innermost_fn(fn: Any) -> Any:
    from torch._dynamo.eval_frame import innermost_fn as _innermost

    return _innermost(fn)


def mark_dynamic(t: torch.Tensor, dim: int, min: int | None = None,  # noqa: A002
                 max: int | None = None) -> None:  # noqa: A002
    """Compile ``dim`` of ``t`` as a symbolic size in ``[min, max]`` (``mark_dynamic``)."""
    torch._dynamo.mark_dynamic(t, dim, min=min, max=max)
