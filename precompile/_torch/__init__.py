"""The engine layer: every place precompile touches torch internals, and nowhere else.

The rest of precompile calls only the names below (``from . import _torch``;
``_torch.optimize(...)``), so a torch upgrade is a change inside this package. Written
against torch 2.13; what differs in 2.14 and 2.15 is one function each in ``compat``.

One module per engine concern:

    compile          the backend as torch.compile builds it; ``torch._dynamo.optimize``
    light_loads      stand-ins for compiler modules a warm start would import for nothing
    artifacts        AOTAutograd / fx backend artifacts: hear them recorded, to bytes and back
    fx_graphs        backend="eager"'s FX graph node by node, subgraph modules included
    hops             higher-order operators stored soundly: their subgraphs checked like graphs
    constants        torch values Dynamo bakes into bytecode, as plain data and back
    guard_recording  guard serialization while one of precompile's frames compiles
    guard_loading    serialized guard state -> Dynamo's C++ guard manager
    guard_parity     the rebuilt guard tree checks what Dynamo's tree checked when compiling
    standins         objects Dynamo's guard pickler refuses, stored as stand-ins
    entries          Dynamo's per-code cache of precompiled entries (eval_frame)
    environment      versions, GPUs, configs and variables compiled code depends on
    cpu_isa          Inductor's CPU vector-ISA probe, recorded and reused
    kernels          Inductor's C++ kernel libraries
    optimizer_state  the optimizer state Dynamo creates while tracing: heard, made again
    constant_calls   calls to assume_constant_result functions Dynamo answers while tracing
    ddp              frames DDPOptimizer compiles keep precompile's package
    compat           the differences between torch 2.13, 2.14 and 2.15
    auto_compile     ``torch.compile`` replaced in place, for ``PRECOMPILE_AUTO``
    in_process_assumptions  what Dynamo leaves unchecked inside one process, checked instead
    import_aliases   import aliases an installed entry placed never fail a later compile

Every change precompile makes to torch's state, and how long it lasts:

* process-wide, installed once, behaving as torch's own unless precompile is recording:
  ``PrecompileContext.record_artifact`` (artifacts.subscribe_backend_artifacts: torch's copy
  is kept only when torch's caching_precompile is on), AOTAutograd's
  ``autograd_cache.check_cacheable`` (hops.checking_subgraphs: also checks every subgraph
  while precompile records, or when a graph calls one of ``hops.STORABLE_HOPS``),
  ``CheckFunctionManager.serialize_guards`` and ``GuardsStatePickler.reducer_override``
  (guard_recording.recording_guards), ``CppCodeCache._load_library`` and ``CppCodeCache.load_async`` (kernels: only
  observe);
* on installed entries of a code object that has several: a hit counter as the last
  epilogue guard of each (entries.HitCounter), and the order of the code's precompiled
  entries (``precompile/install/entry_order.py`` re-attaches them most-hit first);
* process-wide settings: ``torch._functorch.config.bundled_autograd_cache = True``
  (compile.bundle_lazy_backwards, only for lazily compiled backwards); Dynamo's global-name
  counter moved past the numbers an installed package uses (entries.reserve_global_names);
  ``cpu_vec_isa.valid_vec_isa_list`` answered from a package's record, with the flags the
  probe set on the ISA objects, when this CPU's features match exactly
  (cpu_isa.use_recorded_cpu_isa); ``torch._dynamo.reset_code_caches`` also tells
  precompile, which uninstalls its entries (entries.on_dynamo_reset);
* under ``PRECOMPILE_AUTO`` only, from the end of ``import torch``: the ``torch.compile``
  attribute, a function that hands each call to ``precompile.cached`` or to torch's own
  (auto_compile.patch_compile);
* while one of precompile's frames compiles: ``torch._dynamo.decorators.mark_static_address``
  with ``guard=False`` (compile.optimizer_state_as_inputs), Inductor's
  ``unsafe_marked_cacheable_functions`` (compile.cacheable_graph_calls: a few graph calls and
  the HOPs of ``hops.STORABLE_HOPS``) and
  ``cpp_cache_precompile_headers=False`` (kernels.no_precompiled_headers),
  ``OptimizerVariable.get_python_args`` wrapped to hear ``_init_group`` calls
  (optimizer_state.recording_state_inits), ``invoke_and_store_as_constant`` wrapped to hear
  marked-constant calls (constant_calls.recording_constant_calls);
* process-wide, installed once: ``ConvertFrame._clone_with_backend`` (and
  ``ConvertFrameAssert``'s) hand their package to DDPOptimizer's clone
  (ddp.keep_package_in_ddp_clones; unchanged for a converter without a package);
  ``AOTEagerOutputCode.prepare_for_serialization`` drops the provenance metadata that names
  module classes before the graph is pickled (compile.storable_aot_eager_graphs);
* on an installed entry whose trace created optimizer state, before its guards read that
  state: the optimizer's own ``_init_group`` calls, as Dynamo made them
  (optimizer_state.init_optimizer_state, from first_step.StatePrologue);
* once an entry with import aliases is installed: Dynamo's ``import_source`` rebinds an alias
  holding another module than the import gives now before checking it
  (import_aliases.rebind_stale_aliases);
* a rebuilt guard tree is replaced by its clone, which has no recorded dict tags
  (in_process_assumptions.forget_dict_tags);
* while a stored entry's guards are rebuilt: the thread's ``torch.inference_mode`` set to the
  mode the entry was compiled in (guard_loading.load_guard_manager);
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
    first_frame_function,
    functorch_patch,
    innermost_fn,
    make_backend,
    mark_dynamic,
    optimize,
    optimizer_state_as_inputs,
    unwrap_compiled,
)
from .auto_compile import (
    CompileCall,
    PlainCompile,
    dynamo_frames_total,
    patch_compile,
    unpatch_compile,
)
from .constant_calls import marked_constant, recording_constant_calls
from .constants import rebuild_value, value_ref
from .cpu_isa import cpu_isa_record, use_recorded_cpu_isa
from .entries import (
    EntryVerdict,
    HitCounter,
    add_call_guard,
    add_epilogue_guard,
    check_entries,
    failed_precompiled_guards,
    install_entry,
    on_dynamo_reset,
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
from .hops import take_cache_refusal
from .guard_loading import dataclass_fields, load_guard_manager, unpickle_guards_state
from .guard_parity import tree_changes
from .standins import refused_type_match
from .guard_recording import (
    IDENTITY_GUARD_TYPES,
    dict_key_by_id,
    forget_live_only,
    guard_source_name,
    keep_guard_live_only,
    recording_guards,
    take_guard_failure,
    take_guard_tree,
)
from .import_aliases import rebind_stale_aliases
from .in_process_assumptions import INVENTORY, hook_dict_source
from .kernels import inductor_cache_dir, no_precompiled_headers, recording_kernel_libraries
from .light_loads import light_inductor_imports
from .optimizer_state import (
    init_optimizer_state,
    is_optimizer,
    optimizer_param_count,
    optimizer_state_size,
    recording_state_inits,
)


# Where pickles written by earlier precompile releases look these up (functions in guard
# state; a ``torch.save``d compiled module's guard-fail hook).
from .compile import guard_fail_adapter as _guard_fail_adapter  # noqa: E402
from .guard_recording import rebuild_function  # noqa: E402


__all__ = [
    "CompileCall", "PlainCompile", "dynamo_frames_total", "patch_compile", "unpatch_compile",
    "IDENTITY_GUARD_TYPES", "KIND_AOT_BUNDLED", "KIND_FX_GRAPH", "CompiledParts",
    "INVENTORY", "hook_dict_source", "rebind_stale_aliases",
    "EntryVerdict", "HitCounter", "add_call_guard", "add_epilogue_guard", "bundle_lazy_backwards",
    "cacheable_graph_calls", "check_entries", "codegen_env", "compiled_original",
    "config_diffs", "cpu_isa_record", "dataclass_fields", "describe_backend",
    "deserialize_backend", "dict_key_by_id", "dynamo_skips_frame_after",
    "failed_precompiled_guards", "first_frame_function", "forget_live_only", "functorch_patch", "global_numerics",
    "gpu_info", "guard_source_name", "inductor_cache_dir", "init_optimizer_state",
    "innermost_fn", "install_entry", "is_optimizer", "keep_guard_live_only",
    "light_inductor_imports", "load_guard_manager", "make_backend", "mark_dynamic",
    "marked_constant", "recording_constant_calls",
    "no_precompiled_headers", "on_dynamo_reset", "optimize", "optimizer_param_count",
    "optimizer_state_as_inputs", "optimizer_state_size", "rebuild_value", "recording_guards",
    "recording_state_inits", "refused_type_match",
    "recording_kernel_libraries", "reserve_global_names", "reset_entries",
    "serialize_backend", "skip_code", "subscribe_backend_artifacts", "system_info",
    "take_cache_refusal", "take_guard_failure", "take_guard_tree", "tensor_device_types",
    "tree_changes", "unpickle_guards_state", "unwrap_compiled",
    "use_recorded_cpu_isa", "value_ref",
    "_guard_fail_adapter", "rebuild_function",  # for earlier releases' pickles, above
]
