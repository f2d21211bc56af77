"""Count the compiler work a process does, without importing the compiler to count it.

Tests and benchmarks prove a warm start by counting Inductor codegens
(``torch._inductor.compile_fx.fx_codegen_and_compile``) and C++ builds
(``torch._inductor.cpp_builder.CppBuilder.build``). Importing ``compile_fx`` up front to wrap
them loads about 1 s of Inductor's compiler that a precompile warm start never imports, so
the measurement itself would change what it measures. ``count_engine_work`` wraps each
function when its module is first imported (an import hook), or at once if it already is.

No torch import here, and nothing from the rest of precompile: ``bench/`` loads this file by
path so that PyTorch-only benchmark modes are measured without importing precompile. That is
why the probed torch internals are named here and not in ``_torch`` (the one exception,
allowed by name in tests/layout/test_engine_layer.py); the library never imports this module.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import time
import types
from collections.abc import Callable
from typing import Any

# (module, attribute path, counter name): the engine calls counted.
PROBED = (
    ("torch._inductor.compile_fx", "_compile_fx_inner", "compile_fx_inner"),
    ("torch._inductor.compile_fx", "fx_codegen_and_compile", "codegens"),
    ("torch._inductor.cpp_builder", "CppBuilder.build", "cpp_builds"),
)


def count_engine_work() -> dict[str, float]:
    """Return a dict that counts each probed call (``codegens``, ``cpp_builds``, ...) and
    its seconds (``codegens_s``, ...) from now on, in this process."""
    counts: dict[str, float] = {}
    for module, attr, name in PROBED:
        counts[name] = 0
        counts[name + "_s"] = 0.0
        after_import(module, lambda mod, attr=attr, name=name: _wrap(mod, attr, name, counts))
    return counts


def _wrap(module: types.ModuleType, attr: str, name: str, counts: dict[str, float]) -> None:
    *owner_path, fn_name = attr.split(".")
    owner: Any = module
    for part in owner_path:
        owner = getattr(owner, part)
    original = getattr(owner, fn_name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            counts[name + "_s"] += time.perf_counter() - start

    setattr(owner, fn_name, counted)


def after_import(module: str, patch: Callable[[types.ModuleType], None]) -> None:
    """Call ``patch(module)`` right after ``module`` is imported (now, if it already is)."""
    if module in sys.modules:
        patch(sys.modules[module])
        return
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
    _HOOK.pending.setdefault(module, []).append(patch)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds a pending module as the normal path finder would, then patches it once it has
    executed; any module it is not waiting for is left to the other finders."""

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[types.ModuleType], None]]] = {}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patches = self.pending.pop(fullname, None)
        if patches is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(mod: types.ModuleType) -> None:
            exec_module(mod)
            for patch in patches:
                patch(mod)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


_HOOK = _AfterImport()
