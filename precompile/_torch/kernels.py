"""Inductor's C++ kernel libraries: which ones a compile loads, where they live, and how
they are built so that stored ones are found."""
from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Any


_LIBRARY_RECORDERS: list[list[str]] = []
_LOADED: dict[str, str] = {}  # Inductor's key -> path of every library loaded in this process


def _hook_library_loads() -> None:
    """Observe every C++ kernel library Inductor loads (CppCodeCache._load_library), and
    every later compile that gets one of them from Inductor's in-process cache
    (CppCodeCache.load_async): a second function or model compiled in the same process
    uses the same kernel without loading it again, and its package must name it too."""
    from torch._inductor.codecache import CppCodeCache

    original = CppCodeCache.__dict__["_load_library"].__func__
    if getattr(original, "_precompile_hooked", False):
        return
    original_load_async = CppCodeCache.__dict__["load_async"].__func__

    @functools.wraps(original)
    def _load_library(cls: Any, path: str, key: str) -> Any:
        _LOADED[key] = path
        _notify(path)
        return original(cls, path, key)

    @functools.wraps(original_load_async)
    def load_async(cls: Any, *args: Any, **kwargs: Any) -> Any:
        loader = original_load_async(cls, *args, **kwargs)
        if _LIBRARY_RECORDERS and _LOADED:
            key = next((k for k, v in cls.cache.items() if v is loader), None)
            if key in _LOADED:
                _notify(_LOADED[key])
        return loader

    _load_library._precompile_hooked = True  # type: ignore[attr-defined]
    CppCodeCache._load_library = classmethod(_load_library)  # type: ignore[assignment]
    CppCodeCache.load_async = classmethod(load_async)  # type: ignore[assignment]


def _notify(path: str) -> None:
    for rec in _LIBRARY_RECORDERS:
        rec.append(path)


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
