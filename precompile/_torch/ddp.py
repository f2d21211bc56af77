"""DistributedDataParallel under precompile: the frames DDPOptimizer compiles stay ours.

When a frame runs inside a compiled DDP module's forward (the wrapped module's own
``forward``, compiled as its own frame after DDP's graph break), Dynamo's
``CatchErrorsWrapper`` swaps in a clone of the frame converter with ``DDPOptimizer`` as its
backend (``ConvertFrame._clone_with_backend``, torch/_dynamo/convert_frame.py). That clone
is built without the package object, so the one frame that holds the model's compute was
compiled outside precompile: never recorded, traced again by every process.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

# How AOTAutograd's cache refuses a graph DDPOptimizer split by gradient bucket (a model
# larger than one bucket, ``bucket_cap_mb``): it compiles each piece with
# ``fakify_first_call`` (backends/distributed.py) and never caches such a graph
# (autograd_cache.py ``check_cacheable``). One graph per frame is what warm-starts.
SPLIT_GRAPH_REFUSAL = "fakify_first_call"
SPLIT_GRAPH_HINT = (
    "DDPOptimizer compiled this graph in pieces, one per gradient bucket, and torch never "
    "caches those; torch._dynamo.config.optimize_ddp = False compiles it as one graph, which "
    "warm-starts (DDP's all-reduce then waits for the compiled backward instead of overlapping "
    "it)")


def keep_package_in_ddp_clones() -> None:
    """Make the converters' ``_clone_with_backend`` hand precompile's recorder to the clone
    (process-wide, once; a converter without one clones exactly as before, so plain
    ``torch.compile`` is unchanged). A release whose converters are shaped otherwise
    is left alone: its DDP frames then compile unrecorded, as before."""
    from torch._dynamo import convert_frame

    for name in ("ConvertFrame", "ConvertFrameAssert"):
        cls = getattr(convert_frame, name, None)
        prop = getattr(cls, "__dict__", {}).get("_clone_with_backend")
        if isinstance(prop, property) and not getattr(prop.fget, "_precompile_hooked", False):
            cls._clone_with_backend = property(_keeping_package(prop.fget))


def _keeping_package(original: Callable[[Any], Callable[[Any], Any]],
                     ) -> Callable[[Any], Callable[[Any], Any]]:
    def _clone_with_backend(self: Any) -> Callable[[Any], Any]:
        clone = original(self)
        package = _package_of(self)
        if package is None:
            return clone

        def with_package(backend: Any) -> Any:
            cloned = clone(backend)
            holder = getattr(cloned, "_inner_convert", cloned)
            if getattr(holder, "_package", False) is None:
                holder._package = package
            return cloned

        return with_package

    _clone_with_backend._precompile_hooked = True  # type: ignore[attr-defined]
    return _clone_with_backend


def _package_of(converter: Any) -> Any:
    """The precompile recorder a ``ConvertFrame`` (through its inner converter) or a
    ``ConvertFrameAssert`` was built with, or None. torch's own ``caching_precompile``
    package is left as torch treats it (its DDP frames compile without it)."""
    holder = getattr(converter, "_inner_convert", converter)
    package = getattr(holder, "_package", None)
    if package is None or type(package).__module__.startswith("torch."):
        return None
    return package
