"""The engine layer: every place precompile touches torch internals, and nowhere else.

The rest of precompile calls only the names below (``from . import _torch``;
``_torch.optimize(...)``), so a torch upgrade is a change inside this package. Written
against torch 2.13; what differs in 2.14 and 2.15 is one function each in ``compat``.

One module per engine concern:

    compile          the backend as torch.compile builds it; ``torch._dynamo.optimize``
    light_loads      stand-ins for compiler modules a warm start would import for nothing
    artifacts        AOTAutograd / fx backend artifacts: hear them recorded, to bytes and back
    constants        torch values Dynamo bakes into bytecode, as plain data and back
    guard_recording  guard serialization while one of precompile's frames compiles
    guard_loading    serialized guard state -> Dynamo's C++ guard manager
    entries          Dynamo's per-code cache of precompiled entries (eval_frame)
    environment      versions, GPUs, configs and variables compiled code depends on
    cpu_isa          Inductor's CPU vector-ISA probe, recorded and reused
    kernels          Inductor's C++ kernel libraries
    compat           the differences between torch 2.13, 2.14 and 2.15

Every change precompile makes to torch's state, and how long it lasts:

* process-wide, installed once, behaving as torch's own unless precompile is recording:
  ``PrecompileContext.record_artifact`` (artifacts.subscribe_backend_artifacts: torch's copy
  is kept only when torch's caching_precompile is on), ``CheckFunctionManager.
  serialize_guards`` and ``GuardsStatePickler.reducer_override``
  (guard_recording.recording_guards), ``CppCodeCache._load_library`` and ``CppCodeCache.load_async`` (kernels: only observe);
* on installed entries of a code object that has several: a hit counter as the last
  epilogue guard of each (entries.HitCounter), and the order of the code's precompiled
  entries (``precompile/entry_order.py`` re-attaches them most-hit first);
* process-wide settings: ``torch._functorch.config.bundled_autograd_cache = True``
  (compile.bundle_lazy_backwards, only for lazily compiled backwards); Dynamo's global-name
  counter moved past the numbers an installed package uses (entries.reserve_global_names);
  ``cpu_vec_isa.valid_vec_isa_list`` answered from a package's record when this CPU's
  features match exactly (cpu_isa.use_recorded_cpu_isa);
* while one of precompile's frames compiles: ``torch._dynamo.decorators.mark_static_address``
  with ``guard=False`` (compile.optimizer_state_as_inputs), Inductor's
  ``unsafe_marked_cacheable_functions`` (compile.cacheable_graph_calls) and
  ``cpp_cache_precompile_headers=False`` (kernels.no_precompiled_headers);
* while a graph loads or ``optimize`` runs: stand-in modules in ``sys.modules`` for modules
  not imported yet, removed afterwards (light_loads; off with ``PRECOMPILE_FULL_IMPORTS=1``
  and on releases ``compat`` has not checked).
"""
from __future__ import annotations

from .artifacts import (
    KIND_AOT_BUNDLED,
    KIND_FX_GRAPH,
    deserialize_backend,
    serialize_backend,
    subscribe_backend_artifacts,
)
from .compile import (
    CompiledParts,
    bundle_lazy_backwards,
    cacheable_graph_calls,
    compiled_original,
    describe_backend,
    dynamo_skips_frame_after,
    functorch_patch,
    innermost_fn,
    make_backend,
    optimize,
    optimizer_state_as_inputs,
    unwrap_compiled,
)
from .constants import rebuild_value, value_ref
from .cpu_isa import cpu_isa_record, use_recorded_cpu_isa
from .entries import (
    HitCounter,
    add_call_guard,
    failed_precompiled_guards,
    install_entry,
    reserve_global_names,
    reset_entries,
    skip_code,
)
from .environment import (
    codegen_env,
    config_diffs,
    global_numerics,
    gpu_info,
    system_info,
    tensor_device_types,
)
from .guard_loading import dataclass_fields, load_guard_manager, unpickle_guards_state
from .guard_recording import (
    IDENTITY_GUARD_TYPES,
    forget_live_only,
    guard_source_name,
    keep_guard_live_only,
    recording_guards,
    take_guard_failure,
)
from .kernels import inductor_cache_dir, no_precompiled_headers, recording_kernel_libraries
from .light_loads import light_inductor_imports


# Where pickles written by earlier precompile releases look these up (functions in guard
# state; a ``torch.save``d compiled module's guard-fail hook).
from .compile import guard_fail_adapter as _guard_fail_adapter  # noqa: E402
from .guard_recording import rebuild_function  # noqa: E402


__all__ = [
    "HitCounter", "IDENTITY_GUARD_TYPES", "KIND_AOT_BUNDLED", "KIND_FX_GRAPH", "CompiledParts",
    "add_call_guard", "bundle_lazy_backwards", "cacheable_graph_calls", "codegen_env",
    "compiled_original", "config_diffs", "cpu_isa_record", "dataclass_fields", "describe_backend", "deserialize_backend",
    "dynamo_skips_frame_after", "failed_precompiled_guards", "forget_live_only",
    "functorch_patch", "global_numerics", "gpu_info", "guard_source_name", "inductor_cache_dir",
    "innermost_fn", "install_entry", "keep_guard_live_only", "light_inductor_imports",
    "load_guard_manager", "make_backend", "no_precompiled_headers", "optimize",
    "optimizer_state_as_inputs", "rebuild_value", "recording_guards",
    "recording_kernel_libraries", "reserve_global_names", "reset_entries",
    "serialize_backend", "skip_code", "subscribe_backend_artifacts", "system_info",
    "take_guard_failure", "tensor_device_types", "unpickle_guards_state", "unwrap_compiled",
    "use_recorded_cpu_isa", "value_ref",
    "_guard_fail_adapter", "rebuild_function",  # for earlier releases' pickles, above
]
