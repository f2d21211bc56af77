"""Backend artifacts: hearing AOTAutograd record them, and turning them into bytes and back."""
from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Callable
from typing import Any

import torch

from ..errors import NotCapturableError
from .light_loads import ArtifactUnpickler, light_inductor_imports


# Backend artifact kinds, stored in the package so the reader knows how to rebuild them.
KIND_AOT_BUNDLED = "aot_bundled"  # AOTAutograd bundled entry (aot_eager, inductor, ...)
KIND_FX_GRAPH = "fx_graph"  # a pickled fx.GraphModule (backend="eager")


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

        entry = ArtifactUnpickler(io.BytesIO(data)).load()
        with light_inductor_imports():
            fn = BundledAOTAutogradCacheArtifact(backend_id, entry).after_deserialization()
    elif kind == KIND_FX_GRAPH:
        # Unpickling a GraphModule traces its code again (torch.fx), which runs every call
        # whose arguments are all constants: ``torch.randn([1, 2])`` draws from the global
        # generator, and a program that seeds before its first call would get other numbers
        # than under plain torch.compile.
        from torch._dynamo.utils import preserve_rng_state

        with preserve_rng_state():
            fn = pickle.loads(data).forward
    else:
        raise NotCapturableError(f"unknown backend artifact kind {kind!r}")
    return torch._dynamo.disable(fn)
