"""Light graph loads: the compiler modules a warm start would import for a handful of names,
stood in for while precompile loads a graph or calls ``optimize``.

A warm start that compiles nothing still imported about 1.7 s of compiler code (torch 2.13
CPU, measured after torch._dynamo) for a handful of names. Each is deferred until
something really compiles, and each stand-in is checked against torch's in
tests/engine/test_light_loads.py:
  * the generated wrapper module runs
      from torch._inductor.select_algorithm import extern_kernels   (autotuner + lowering)
      from torch._inductor.codegen.memory_planning import _align     (wrapper codegen)
  * codecache.FxGraphCache.cache_hit_post_compile runs ``from .graph import GraphLowering``
    (0.9 s) only to read the test hook ``GraphLowering.save_output_code``, which nobody can
    have set while graph is unimported;
  * loading a C++ kernel asks cpp_extension (setuptools, 0.3 s) for two library paths;
  * unpickling an AOTAutograd entry imports Inductor's decompositions (0.2 s) for a
    function only a compile calls (``ArtifactUnpickler``);
  * ``torch._dynamo.optimize`` imports the minifier (0.15-0.35 s) to wrap the backend
    (``_DeferredBackendDebug``).
The module-level ones are ``_StandIn``s, registered in sys.modules only while precompile
loads a graph (or calls optimize): they give their names to exactly those importers and
forward everything else, and every other importer, to the real module. Afterwards
sys.modules holds only real modules again. ``PRECOMPILE_FULL_IMPORTS=1`` turns all of
this off.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .. import settings
from . import compat


class _DeferredBackendDebug:
    """``repro.after_dynamo.WrapBackendDebug`` (the minifier's wrapper that ``optimize`` puts
    around every backend) with the same attributes, built for real at the first compile:
    importing the minifier costs 0.15-0.35 s of a warm start that compiles nothing.
    ``__init__`` mirrors torch 2.13's; tests/engine/test_light_loads.py compares the two."""

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


# ``extern_kernels.<name>`` is what ``ExternKernelChoice(kernel, name=...)`` registered. These
# names are registered with plain torch functions in torch 2.13, 2.14 and 2.15 alike
# (kernel/mm.py, bmm.py, conv.py, mm_grouped.py, quantized_lowerings.py);
# tests/engine/test_light_loads.py checks each against the running torch's own registry. Any other
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
# CPU; any other device gets the real function. Checked in tests/engine/test_light_loads.py.
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
    (``compat.light_loads_checked``); ``PRECOMPILE_FULL_IMPORTS=1`` turns them off."""
    if not compat.light_loads_checked() or settings.or_default(
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


def light_optimize_imports() -> Any:
    """The stand-in ``torch._dynamo.optimize`` uses, the deferred minifier (a context manager)."""
    return _stand_ins_while(_minifier_stand_in)


class ArtifactUnpickler(pickle.Unpickler):
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
