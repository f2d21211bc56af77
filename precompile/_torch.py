"""Every place precompile touches torch internals, and nowhere else.

A torch upgrade should be a one-file job: the rest of precompile only calls the functions
here. Each function names the engine entry point it wraps. Written against torch 2.13; what
differs in 2.14 and 2.15 lives in ``_torch_compat``, one function per difference.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import io
import os
import pickle
import platform
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from . import _torch_compat, format, settings
from .errors import NotCapturableError
from .names import shadowed_function as _shadowed_function

TORCH_VERSION = str(torch.__version__)
PYTHON_VERSION = platform.python_version()

# Guard kinds that hold a process-specific identity (an id() or a dict version). Dynamo
# cannot serialize them; precompile drops them from the stored guards and checks the object
# they guarded by a stable fingerprint when installing instead (storable.py, identity.py).
IDENTITY_GUARD_TYPES = frozenset({
    "DICT_VERSION", "NN_MODULE", "ID_MATCH", "FUNCTION_MATCH", "CLASS_MATCH",
    "MODULE_MATCH", "CLOSURE_MATCH", "WEAKREF_ALIVE",
})

# Backend artifact kinds, stored in the package so the reader knows how to rebuild them.
KIND_AOT_BUNDLED = "aot_bundled"  # AOTAutograd bundled entry (aot_eager, inductor, ...)
KIND_FX_GRAPH = "fx_graph"  # a pickled fx.GraphModule (backend="eager")


# ------------------------------------------------------------------- compiling


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


def cacheable_graph_calls() -> Any:
    """Mark ``CACHEABLE_GRAPH_CALLS`` cacheable while one of precompile's frames compiles
    (a context manager; ``torch._inductor.config.unsafe_marked_cacheable_functions``, keyed by
    the torch version as that option's documentation asks)."""
    import torch._inductor.config as inductor_config

    marked = dict(inductor_config.unsafe_marked_cacheable_functions)
    for name in CACHEABLE_GRAPH_CALLS:
        marked.setdefault(name, TORCH_VERSION)
    return inductor_config.patch(unsafe_marked_cacheable_functions=marked)


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
    with _stand_ins_while(_minifier_stand_in):
        return torch._dynamo.optimize(backend=backend_obj, nopython=fullgraph,
                                      dynamic=dynamic, guard_filter_fn=guard_filter_fn,
                                      package=recorder,
                                      guard_fail_fn=_guard_fail_adapter(guard_fail_fn))


class _DeferredBackendDebug:
    """``repro.after_dynamo.WrapBackendDebug`` (the minifier's wrapper that ``optimize`` puts
    around every backend) with the same attributes, built for real at the first compile:
    importing the minifier costs 0.15-0.35 s of a warm start that compiles nothing.
    ``__init__`` mirrors torch 2.13's; tests/test_light_loads.py compares the two."""

    def __init__(self, compiler_fn: Any, compiler_name: str | None) -> None:
        functools.wraps(compiler_fn)(self)
        self._torchdynamo_orig_backend = compiler_fn
        self._compiler_name = compiler_name
        if hasattr(compiler_fn, "__name__"):
            self.__name__ = compiler_fn.__name__
        if hasattr(compiler_fn, "compiler_name"):
            self.__name__ = compiler_fn.compiler_name
        if hasattr(compiler_fn, "get_compiler_config"):
            self.get_compiler_config = compiler_fn.get_compiler_config
        self._precompile_real: Any = None

    def __call__(self, gm: Any, example_inputs: Any, **kwargs: Any) -> Any:
        if self._precompile_real is None:
            from torch._dynamo.repro.after_dynamo import WrapBackendDebug

            self._precompile_real = WrapBackendDebug(self._torchdynamo_orig_backend,
                                                     self._compiler_name)
        return self._precompile_real(gm, example_inputs, **kwargs)


def failed_precompiled_guards(code: types.CodeType) -> list[str]:
    """Why each precompiled entry installed on ``code`` rejected the frame Dynamo is about to
    compile. Dynamo reports recompile reasons for its own cache entries only; this asks the
    installed guard managers with the frame's locals (found on the convert_frame stack)."""
    from torch._C._dynamo.eval_frame import _debug_get_precompile_entries

    entries = _debug_get_precompile_entries(code)
    if not entries:
        return []
    f_locals = None
    caller = sys._getframe(1)
    while caller is not None and f_locals is None:
        candidate = caller.f_locals.get("frame")
        if getattr(candidate, "f_code", None) is code:
            f_locals = candidate.f_locals
        caller = caller.f_back
    if f_locals is None:
        return []
    reasons = []
    for entry in entries:
        try:
            info = entry.guard_manager.check_verbose(f_locals)
            parts = [p.strip() for p in getattr(info, "verbose_code_parts", []) if p.strip()]
            reasons.append("; ".join(parts) or "guards failed")
        except Exception:  # noqa: BLE001 - diagnostics only
            continue
    return reasons


class _GuardFailAdapter:
    """Dynamo's ``guard_fail_fn(GuardFail(reason, orig_code))`` as ``fn(reason, code)``.
    Pickles (``torch.save`` of a compiled module) as whatever ``fn`` pickles as."""

    def __init__(self, fn: Callable[[str, types.CodeType], None]) -> None:
        self.fn = fn

    def __call__(self, failure: Any) -> None:
        self.fn(str(failure.reason), failure.orig_code)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _guard_fail_adapter, (self.fn,)


def _guard_fail_adapter(fn: Callable[[str, types.CodeType], None] | None
                        ) -> _GuardFailAdapter | None:
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
        original = obj._torchdynamo_orig_callable
        code = getattr(obj, "__code__", None)
        cells = dict(zip(code.co_freevars, obj.__closure__ or ())) if code else {}
        ctx = cells["self"].cell_contents if "self" in cells else None
        if inspect.ismethod(obj) and not inspect.ismethod(original):
            original = types.MethodType(original, obj.__self__)
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
        return f"{backend_obj.compiler_name}{sorted((k, repr(v)) for k, v in backend_obj.kwargs.items())}"
    name = getattr(backend_obj, "__qualname__", None) or type(backend_obj).__qualname__
    module = getattr(backend_obj, "__module__", None) or type(backend_obj).__module__
    return f"{module}.{name}"


def innermost_fn(fn: Any) -> Any:
    from torch._dynamo.eval_frame import innermost_fn as _innermost

    return _innermost(fn)


# ------------------------------------------------------------- bytecode constants


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


# ------------------------------------------------------------- backend artifacts


def subscribe_backend_artifacts(callback: Callable[[str, Any], None]) -> None:
    """Call ``callback(backend_id, artifact)`` whenever AOTAutograd records a bundled
    artifact (``PrecompileContext.record_artifact`` in torch/_dynamo/precompile_context.py).

    AOTAutograd records once after the forward compiles and again, under the same backend id,
    when a lazily compiled backward is saved, so the latest call is the most complete.
    """
    from torch._dynamo.precompile_context import PrecompileContext as TorchContext

    original = TorchContext.__dict__["record_artifact"].__func__
    if getattr(original, "_precompile_hooked", False):
        return

    # torch keeps a deep copy of every artifact in a class-level dict forever; precompile
    # keeps its own record instead, and leaves torch's alone unless torch's own
    # caching_precompile is on in this process and needs it.
    @functools.wraps(original)
    def record_artifact(cls: Any, artifact: Any) -> None:
        from torch.utils._mode_utils import no_dispatch

        with no_dispatch():  # artifacts are recorded while FakeTensorMode may be active
            callback(str(artifact.key), artifact)
        if torch._dynamo.config.caching_precompile:
            original(cls, artifact)

    record_artifact._precompile_hooked = True  # type: ignore[attr-defined]
    TorchContext.record_artifact = classmethod(record_artifact)  # type: ignore[assignment]


def serialize_backend(artifact: Any) -> tuple[str, bytes, bool]:
    """Return (kind, bytes, has_backward) for a backend artifact or an eager graph."""
    from torch._functorch._aot_autograd.aot_autograd_result import BundledAOTAutogradCacheArtifact

    if isinstance(artifact, BundledAOTAutogradCacheArtifact):
        entry = artifact.content
        try:
            data = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - any pickling failure means "cannot capture"
            raise NotCapturableError(f"AOTAutograd artifact does not pickle: {e}") from e
        return KIND_AOT_BUNDLED, data, _entry_has_backward(entry)
    gm = getattr(artifact, "graph_module", None) or getattr(artifact, "__self__", artifact)
    if isinstance(gm, torch.fx.GraphModule):
        try:
            return KIND_FX_GRAPH, pickle.dumps(gm, protocol=pickle.HIGHEST_PROTOCOL), True
        except Exception as e:  # noqa: BLE001
            raise NotCapturableError(f"eager graph does not pickle: {e}") from e
    raise NotCapturableError(
        f"backend output of type {type(artifact).__name__} cannot be stored; precompile can "
        "store backends that go through AOTAutograd (inductor, aot_eager, aot_autograd(...)) "
        "and backend='eager'")


def _entry_has_backward(entry: Any) -> bool:
    """Whether an AOTAutograd result can run backward without compiling anything."""
    if not hasattr(entry, "compiled_bw"):
        return True  # an inference-only result never needs a backward
    return getattr(entry, "compiled_bw", None) is not None


def deserialize_backend(kind: str, data: bytes, backend_id: str) -> Callable[..., Any]:
    """Rebuild a callable from a stored artifact, wrapped so Dynamo never traces into it."""
    if kind == KIND_AOT_BUNDLED:
        from torch._functorch._aot_autograd.aot_autograd_result import (
            BundledAOTAutogradCacheArtifact,
        )

        entry = _ArtifactUnpickler(io.BytesIO(data)).load()
        with light_inductor_imports():
            fn = BundledAOTAutogradCacheArtifact(backend_id, entry).after_deserialization()
    elif kind == KIND_FX_GRAPH:
        fn = pickle.loads(data).forward
    else:
        raise NotCapturableError(f"unknown backend artifact kind {kind!r}")
    return torch._dynamo.disable(fn)


# ------------------------------------------------------------------- light graph loads
# A warm start that compiles nothing still imported about 1.7 s of compiler code (torch 2.13
# CPU, measured after torch._dynamo) for a handful of names. Each is deferred until
# something really compiles, and each stand-in is checked against torch's in
# tests/test_light_loads.py:
#   * the generated wrapper module runs
#       from torch._inductor.select_algorithm import extern_kernels   (autotuner + lowering)
#       from torch._inductor.codegen.memory_planning import _align     (wrapper codegen)
#   * codecache.FxGraphCache.cache_hit_post_compile runs ``from .graph import GraphLowering``
#     (0.9 s) only to read the test hook ``GraphLowering.save_output_code``, which nobody can
#     have set while graph is unimported;
#   * loading a C++ kernel asks cpp_extension (setuptools, 0.3 s) for two library paths;
#   * unpickling an AOTAutograd entry imports Inductor's decompositions (0.2 s) for a
#     function only a compile calls (``_ArtifactUnpickler``);
#   * ``torch._dynamo.optimize`` imports the minifier (0.15-0.35 s) to wrap the backend
#     (``_DeferredBackendDebug``).
# The module-level ones are ``_StandIn``s, registered in sys.modules only while precompile
# loads a graph (or calls optimize): they give their names to exactly those importers and
# forward everything else, and every other importer, to the real module. Afterwards
# sys.modules holds only real modules again. ``PRECOMPILE_FULL_IMPORTS=1`` turns all of
# this off.

# ``extern_kernels.<name>`` is what ``ExternKernelChoice(kernel, name=...)`` registered. These
# names are registered with plain torch functions in torch 2.13, 2.14 and 2.15 alike
# (kernel/mm.py, bmm.py, conv.py, mm_grouped.py, quantized_lowerings.py);
# tests/test_light_loads.py checks each against the running torch's own registry. Any other
# name (2.15 adds a few, none a plain torch function) imports the real module on first use.
_EXTERN_KERNEL_FUNCTIONS = {
    "mm": "mm", "mm_dtype": "mm", "addmm": "addmm", "_int_mm": "_int_mm",
    "_sparse_semi_structured_mm": "_sparse_semi_structured_mm", "_scaled_mm": "_scaled_mm",
    "bmm": "bmm", "bmm_dtype": "bmm", "baddbmm": "baddbmm", "convolution": "convolution",
    "_weight_int8pack_mm": "_weight_int8pack_mm", "_grouped_mm": "_grouped_mm",
    "_scaled_grouped_mm": "_scaled_grouped_mm",
}
# Generated wrapper modules are named after this module (runtime/compile_tasks.py).
_GENERATED_CODE = "torch._inductor.runtime.compile_tasks."
# Modules the compiler imports that a loaded graph's runtime reads as attributes without
# importing them (``torch._inductor.debug.RECORD_GRAPH_EXECUTION`` in
# ``output_code.CompiledFxGraph.__call__``): imported for real before a light load.
_RUNTIME_MODULES = ("torch._inductor.debug",)


def _real_module(name: str) -> types.ModuleType:
    """Import the real module ``name``, first removing a stand-in registered under it."""
    if isinstance(sys.modules.get(name), _StandIn):
        del sys.modules[name]
    return importlib.import_module(name)


class _LazyExternKernels:
    """``select_algorithm.extern_kernels`` as generated wrapper code sees it: a known name
    is its torch function; any other name (a custom op's kernel, a Python helper such as
    ``bias_addmm``) is read from Inductor's real namespace, imported on that first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = _EXTERN_KERNEL_FUNCTIONS.get(name)
        value = (getattr(torch, target) if target is not None
                 else getattr(_real_module("torch._inductor.select_algorithm").extern_kernels,
                              name))
        setattr(self, name, value)  # the next lookup is a plain attribute read
        return value


class _ForwardToGraphLowering(type):
    def __getattr__(cls, name: str) -> Any:
        return getattr(_real_module("torch._inductor.graph").GraphLowering, name)


class _GraphLoweringView(metaclass=_ForwardToGraphLowering):
    """``GraphLowering`` as a graph load reads it before the compiler is imported."""

    save_output_code = None


class _StandIn(types.ModuleType):
    """Registered under a heavy module's name during a load. ``answers`` maps a name to
    (value, importer-module name prefix): that importer gets the value, anyone else the
    real module's attribute, so an unrelated import in the window (another thread, a
    cudagraph post-compile importing the compiler) still gets real objects."""

    def __init__(self, name: str, answers: dict[str, tuple[Any, str]]) -> None:
        super().__init__(name)
        self.__dict__["_precompile_answers"] = answers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        answer = self.__dict__["_precompile_answers"].get(name)
        if answer is not None:
            importer = sys._getframe(1).f_globals.get("__name__", "")
            if importer.startswith(answer[1]):
                return answer[0]
        return getattr(_real_module(self.__name__), name)


# One namespace for every generated module: a name resolved for one graph is resolved for all.
_EXTERN_KERNELS = _LazyExternKernels()


def _graph_load_stand_ins() -> list[_StandIn]:
    """The stand-ins for one graph load; first imports ``_RUNTIME_MODULES`` for real."""
    from torch._inductor.utils import _align  # memory_planning re-exports this one

    for name in _RUNTIME_MODULES:
        _real_module(name)
    return [
        _StandIn("torch._inductor.select_algorithm",
                 {"extern_kernels": (_EXTERN_KERNELS, _GENERATED_CODE)}),
        _StandIn("torch._inductor.codegen.memory_planning",
                 {"_align": (_align, _GENERATED_CODE)}),
        _StandIn("torch._inductor.graph",
                 {"GraphLowering": (_GraphLoweringView, "torch._inductor.codecache")}),
        # Loading a C++ kernel builds its command line (cpp_builder) for the library path;
        # the names it reads import setuptools with the extension builder (~0.3 s).
        _StandIn("torch.utils.cpp_extension",
                 {"include_paths": (_include_paths, "torch._inductor.cpp_builder"),
                  "library_paths": (_library_paths, "torch._inductor.cpp_builder"),
                  "TORCH_LIB_PATH": (_TORCH_LIB, "torch._inductor.cpp_builder"),
                  "CUDA_HOME": (_cuda_home_seen_by_builder(), "torch._inductor.cpp_builder")}),
    ]


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_TORCH_LIB = os.path.join(_TORCH_DIR, "lib")


# ``cpp_extension.include_paths`` and ``library_paths`` as torch 2.13 computes them for the
# CPU; any other device gets the real function. Checked in tests/test_light_loads.py.
def _include_paths(device_type: str = "cpu", torch_include_dirs: bool = True) -> list[str]:
    if device_type != "cpu":
        return _real_module("torch.utils.cpp_extension").include_paths(
            device_type, torch_include_dirs)
    include = os.path.join(_TORCH_DIR, "include")
    return [include, os.path.join(include, "torch", "csrc", "api", "include")] \
        if torch_include_dirs else []


def _library_paths(device_type: str = "cpu", torch_include_dirs: bool = True,
                   cross_target_platform: str | None = None) -> list[str]:
    if device_type != "cpu":
        return _real_module("torch.utils.cpp_extension").library_paths(
            device_type, torch_include_dirs, cross_target_platform)
    return [_TORCH_LIB] if torch_include_dirs else []


def _cuda_home_seen_by_builder() -> str | None:
    """``cpp_extension.CUDA_HOME`` as torch 2.14+'s cpp_builder reads it while the real module
    is still unimported: it only asks whether CUDA_HOME needs refreshing from the environment
    (``CUDA_HOME is None and os.environ.get("CUDA_HOME")``), and a module imported now would
    have read that variable first (``_find_cuda_home``), so the answer is the variable."""
    return os.environ.get("CUDA_HOME")


def _minifier_stand_in() -> list[_StandIn]:
    return [_StandIn("torch._dynamo.repro.after_dynamo",
                     {"wrap_backend_debug": (_DeferredBackendDebug, "torch._dynamo.eval_frame")})]


@contextlib.contextmanager
def _stand_ins_while(make: Callable[[], list[_StandIn]]) -> Iterator[None]:
    """Register the stand-ins ``make()`` returns for the modules not imported yet (an
    imported one is simply used); afterwards sys.modules holds only real modules again.
    Only on the torch releases they were checked against
    (``_torch_compat.light_loads_checked``); ``PRECOMPILE_FULL_IMPORTS=1`` turns them off."""
    if not _torch_compat.light_loads_checked() or settings.or_default(
            lambda: settings.flag(settings.FULL_IMPORTS), False, strict=False):
        yield
        return
    added = [mod for mod in make() if mod.__name__ not in sys.modules]
    sys.modules.update((mod.__name__, mod) for mod in added)
    try:
        yield
    finally:
        for mod in added:
            if sys.modules.get(mod.__name__) is mod:
                del sys.modules[mod.__name__]


def light_inductor_imports() -> Any:
    """The stand-ins a graph load uses (a context manager)."""
    return _stand_ins_while(_graph_load_stand_ins)


class _ArtifactUnpickler(pickle.Unpickler):
    """Unpickles an AOTAutograd entry. Its config refers to Inductor's
    ``decomposition.select_decomp_table``, which only a compile calls, and importing that
    module costs about 0.2 s: until something imports it, the entry gets
    ``_DeferredDecompTable``, which imports and calls the real function."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _DECOMP_TABLE and module not in sys.modules:
            return _DEFERRED_DECOMP_TABLE
        return super().find_class(module, name)


_DECOMP_TABLE = ("torch._inductor.decomposition", "select_decomp_table")


class _DeferredDecompTable:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _real_module(_DECOMP_TABLE[0]).select_decomp_table(*args, **kwargs)

    def __copy__(self) -> _DeferredDecompTable:
        return self  # a function: copies are the object itself (AOTAutograd copies entries)

    def __deepcopy__(self, memo: Any) -> _DeferredDecompTable:
        return self

    def __reduce__(self) -> Any:  # pickles as the real function, by name
        import pkgutil

        return pkgutil.resolve_name, (":".join(_DECOMP_TABLE),)


_DEFERRED_DECOMP_TABLE = _DeferredDecompTable()


# ------------------------------------------------------------------- installing


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
    torch's own loader gives a pruned value (``_torch_compat.pruned_value_pid``)."""
    from torch._dynamo.guards import _Missing

    if pid is None or pid != _torch_compat.pruned_value_pid():
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
    return CheckFunctionManager(
        code, OutputGraphCommon(state.output_graph), shape_code_parts=state.shape_code_parts,
        runtime_global_scope=f_globals,
        guard_fail_fn=_guard_fail_adapter(guard_fail_fn),
    ).guard_manager


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


def _hook_guard_serialization() -> None:
    """Two repairs to Dynamo's guard serialization (torch/_dynamo/guards.py):

    * ``serialize_guards`` leaves out the identity guards kept live (``keep_guard_live_only``),
      and turns any error into a bypass of this entry (its reason kept for
      ``take_guard_failure``): torch 2.13 lets a ``TypeError`` from pickling an object in
      the guarded scope escape into the user's call;
    * precompile's own front functions (``_precompile`` attribute; one replaces
      ``model.forward`` in Hugging Face's ``generate`` recipe) pickle as Dynamo's placeholder,
      never with their closure (which holds locks);
    * ``GuardsStatePickler`` stores a function whose name finds its decorator's wrapper
      (``_shadowed_function``, e.g. the ``forward`` that transformers' ``can_return_tuple``
      wraps) as an unresolvable placeholder, and the guards on its ``__defaults__`` then fail
      to load; it rebuilds nested functions with the wrong ``__name__``. Both are pickled as
      code, module, names, defaults and closure (``rebuild_function``).
    """
    from torch._dynamo.guards import CheckFunctionManager, GuardsStatePickler

    original = CheckFunctionManager.__dict__["serialize_guards"]
    if getattr(original, "_precompile_hooked", False):
        return
    original_reduce = GuardsStatePickler.__dict__["reducer_override"]

    @functools.wraps(original_reduce)
    def reducer_override(self: Any, obj: Any) -> Any:
        if getattr(_RECORDING, "depth", 0) and inspect.isfunction(obj) and (
                "<locals>" in obj.__qualname__ or _shadowed_function(obj)) and not hasattr(
                obj, "_precompile"):
            return rebuild_function, (
                obj.__code__, obj.__module__, obj.__name__, obj.__qualname__, obj.__defaults__,
                obj.__kwdefaults__, obj.__closure__)
        return original_reduce(self, obj)

    GuardsStatePickler.reducer_override = reducer_override  # type: ignore[method-assign]

    @functools.wraps(original)
    def serialize_guards(self: Any, builder: Any, sorted_guards: list[Any],
                         output_graph: Any) -> bytes:
        if not getattr(_RECORDING, "depth", 0):
            return original(self, builder, sorted_guards, output_graph)
        if _LIVE_ONLY_GUARDS:
            sorted_guards = [g for g in sorted_guards if id(g) not in _LIVE_ONLY_GUARDS]
        try:
            return original(self, builder, sorted_guards, output_graph)
        except Exception as e:  # noqa: BLE001 - any failure here is a bypass, never a crash
            # Not re-raised as Dynamo's PackageError: torch 2.13 turns that into a bypass but
            # then asserts that guard state exists (convert_frame._compile_inner), which
            # crashes the user's call. Bypass here and hand back an empty state instead.
            _RECORDING.guard_failure = f"{type(e).__name__}: {e}"
            output_graph.bypass_package(f"Guard serialization failed: {_RECORDING.guard_failure}")
            return b""

    serialize_guards._precompile_hooked = True  # type: ignore[attr-defined]
    CheckFunctionManager.serialize_guards = serialize_guards  # type: ignore[method-assign]


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


def guard_source_helpers() -> dict[str, Any]:
    """The helpers Dynamo's guard code may call by name (``___odict_getitem``...)."""
    from torch._dynamo.guards import _get_closure_vars

    return _get_closure_vars()


def add_call_guard(guard_manager: Any, check: Callable[[Any], bool],
                   description: list[str]) -> None:
    """Add a Python check of the frame's locals to a loaded entry's guards (the same hook
    Dynamo uses for its own lambda guards)."""
    guard_manager.root.add_lambda_guard(check, description, None)


def install_entry(code: types.CodeType, guard_manager: Any, dynamo_code: types.CodeType) -> None:
    """Attach one guarded entry to ``code`` (eval_frame.c ExtraState precompile entries)."""
    torch._C._dynamo.eval_frame._load_precompile_entry(code, guard_manager, dynamo_code)


def reset_entries(code: types.CodeType) -> None:
    torch._C._dynamo.eval_frame._reset_precompile_entries(code)


def skip_code(code: types.CodeType) -> None:
    """Dynamo found nothing to compile in this frame last time: never trace it again."""
    torch._dynamo.eval_frame.skip_code(code)


def reserve_global_names(names: Sequence[str]) -> None:
    """Keep Dynamo from generating global names that an installed package already uses.

    Dynamo numbers the globals it installs (``__builtins_dict___0``, ``__resume_at_30_1``)
    with one per-process counter and asserts a new name is free. A package from another
    process brings its numbers along, so move the counter past every number it uses.
    """
    import itertools
    import re

    from torch._dynamo import bytecode_transformation as bt

    numbers = [int(m.group(1)) for n in names if (m := re.search(r"_(\d+)$", n))]
    if not numbers:
        return
    current = next(bt._unique_id_counter)
    bt._unique_id_counter = itertools.count(max(current, max(numbers) + 1))


# ------------------------------------------------------------------ observing


def system_info() -> dict[str, Any]:
    """What a package's compiled code depends on, beyond its own source."""
    info: dict[str, Any] = {
        "python": PYTHON_VERSION,
        "python_impl": sys.implementation.name,
        "torch": TORCH_VERSION,
        "platform": f"{platform.system()}-{platform.machine()}",
    }
    info["triton"] = _triton_version()
    return info


def _triton_version() -> str | None:
    try:
        from torch.utils._triton import has_triton

        if has_triton():
            import triton

            return str(triton.__version__)
    except Exception:  # noqa: BLE001 - triton absent or broken: treat as absent
        pass
    return None


def gpu_info(device_type: str) -> dict[str, Any]:
    """GPU name and capability for ``device_type``; GPU-only, not exercised on CPU CI."""
    mod = getattr(torch, device_type, None)
    if mod is None or not hasattr(mod, "is_available") or not mod.is_available():
        return {}
    info: dict[str, Any] = {"gpu_name": mod.get_device_name()}
    if hasattr(mod, "get_device_capability"):
        info["capability"] = list(mod.get_device_capability())
    info["toolkit"] = getattr(torch.version, device_type, None)
    return info


def config_diffs() -> dict[str, dict[str, str]]:
    """Non-default settings of the configs that change generated code.

    Compared by repr so any value type works; precompile's own switches are left out.
    """
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    ignored = {"bundled_autograd_cache", "cache_dir", "fx_graph_cache", "autograd_cache",
               "fx_graph_remote_cache", "autotune_local_cache", "autotune_remote_cache",
               "bundled_autotune_remote_cache", "force_disable_caches",
               "caching_precompile", "recompile_limit", "cache_size_limit",
               "accumulated_recompile_limit", "accumulated_cache_size_limit", "verbose",
               "suppress_errors", "log_compilation_metrics"}
    out: dict[str, dict[str, str]] = {}
    for label, cfg in (("inductor", inductor_config), ("functorch", functorch_config),
                       ("dynamo", dynamo_config)):
        diff: dict[str, str] = {}
        for name, entry in cfg._config.items():
            if (name in ignored or name.startswith("_") or "debug" in name or "log" in name
                    or getattr(entry, "deprecated", False) or getattr(entry, "alias", None)):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = getattr(cfg, name)
            except Exception:  # noqa: BLE001
                continue
            if callable(value) and not isinstance(value, type):
                continue
            if value != entry.default:
                diff[name] = repr(value)
        out[label] = diff
    return out


_ENV_IGNORED = {"TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                "TORCHINDUCTOR_AUTOGRAD_CACHE", "TORCHINDUCTOR_FORCE_DISABLE_CACHES",
                "TORCHINDUCTOR_COMPILE_THREADS", "TORCHINDUCTOR_WORKER_START"}


def codegen_env() -> dict[str, str]:
    """Environment variables that change what torch generates (paths and cache switches out)."""
    return {k: v for k, v in sorted(os.environ.items())
            if (k.startswith("TORCHINDUCTOR_") or k.startswith("TORCH_COMPILE_")
                or k.startswith("TORCHDYNAMO_")) and k not in _ENV_IGNORED
            and "CACHE" not in k and "LOG" not in k and "DEBUG" not in k}


def global_numerics() -> dict[str, str]:
    """Process-wide numerics settings that Dynamo's guards do not cover."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "default_dtype": str(torch.get_default_dtype()),
    }


def tensor_device_types(objs: Sequence[Any]) -> list[str]:
    """Device types of the tensors among ``objs`` (and inside lists/dicts/modules)."""
    found: set[str] = set()
    stack = list(objs)
    seen = 0
    while stack and seen < 10_000:
        seen += 1
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            found.add(obj.device.type)
        elif isinstance(obj, torch.nn.Module):
            for t in obj.parameters():
                found.add(t.device.type)
                break
            for t in obj.buffers():
                found.add(t.device.type)
                break
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return sorted(found)


# ------------------------------------------------------------- CPU vector ISA

_RECORDED_ISA: dict[str, Any] | None = None


def _cpu_features() -> dict[str, Any]:
    """The CPU features Inductor's ISA choice depends on, read via CPUID (cheap)."""
    feats: dict[str, Any] = {"machine": platform.machine()}
    for name in sorted(dir(torch.cpu)):
        if name.startswith("_is_") and name.endswith("_supported"):
            try:
                feats[name[4:-10]] = bool(getattr(torch.cpu, name)())
            except Exception:  # noqa: BLE001 - a probe this torch lacks
                continue
    return feats


def cpu_isa_record() -> dict[str, Any] | None:
    """What Inductor's vector-ISA probe decided in this process, and on which CPU.

    None if Inductor never probed here (no C++ kernels were compiled or loaded).
    """
    if _RECORDED_ISA is not None:
        return _RECORDED_ISA
    mod = sys.modules.get("torch._inductor.cpu_vec_isa")
    if mod is None:
        return None
    probe = mod.valid_vec_isa_list
    if not hasattr(probe, "cache_info") or probe.cache_info().currsize == 0:
        return None
    return {"cpu": _cpu_features(),
            "valid": [[str(isa), isa._arch_flags] for isa in probe()]}


def use_recorded_cpu_isa(record: Any) -> bool:
    """Skip Inductor's ISA probe (it builds test programs and dlopens them in subprocesses:
    ~1-2.5 s of every warm start) when this CPU has exactly the features of the CPU the
    package recorded the probe's answer on. Never applies an ISA this CPU lacks: the
    features must match exactly, or the probe runs as usual.
    """
    global _RECORDED_ISA
    from torch._inductor import cpu_vec_isa as cvi

    if _RECORDED_ISA is not None:
        return _RECORDED_ISA == record
    probe = cvi.valid_vec_isa_list
    if not hasattr(probe, "cache_info") or probe.cache_info().currsize:
        return False  # already probed in this process: nothing to save
    if not isinstance(record, dict) or record.get("cpu") != _cpu_features():
        return False
    by_name = {str(isa): isa for isa in cvi.supported_vec_isa_list}
    try:
        chosen = [(by_name[name], flags) for name, flags in record["valid"]]
    except (KeyError, TypeError, ValueError):
        return False
    for isa, flags in chosen:
        isa._arch_flags = flags
    isas = [isa for isa, _ in chosen]
    cvi.valid_vec_isa_list = lambda: list(isas)
    _RECORDED_ISA = record
    return True


# ------------------------------------------------------------- kernel libraries

_LIBRARY_RECORDERS: list[list[str]] = []


def _hook_library_loads() -> None:
    """Observe every C++ kernel library Inductor loads (CppCodeCache._load_library)."""
    from torch._inductor.codecache import CppCodeCache

    original = CppCodeCache.__dict__["_load_library"].__func__
    if getattr(original, "_precompile_hooked", False):
        return

    @functools.wraps(original)
    def _load_library(cls: Any, path: str, key: str) -> Any:
        for rec in _LIBRARY_RECORDERS:
            rec.append(path)
        return original(cls, path, key)

    _load_library._precompile_hooked = True  # type: ignore[attr-defined]
    CppCodeCache._load_library = classmethod(_load_library)  # type: ignore[assignment]


@contextlib.contextmanager
def recording_kernel_libraries(inductor: bool, found: list[str]) -> Iterator[None]:
    """Append to ``found`` the paths of the C++ kernel libraries loaded inside the block
    (``inductor``: the backend is Inductor, so importing its code cache up front is free)."""
    if inductor or "torch._inductor.codecache" in sys.modules:
        _hook_library_loads()
    _LIBRARY_RECORDERS.append(found)
    try:
        yield
    finally:
        _LIBRARY_RECORDERS.remove(found)


def inductor_cache_dir() -> str:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


def no_precompiled_headers() -> Any:
    """Compile and load Inductor's C++ without its precompiled header (a context manager).

    Inductor preprocesses (and on a new machine builds: 5-7 s) that header before it even
    checks whether a kernel library already exists, and the header setting is part of each
    library's cache key. precompile turns it off both when it compiles and when it loads,
    so stored libraries are found and nothing is built; compiling without it costs less
    than building the header once.
    """
    import torch._inductor.config as inductor_config

    return inductor_config.patch(cpp_cache_precompile_headers=False)
