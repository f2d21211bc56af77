"""Inductor's CPU vector-ISA probe: recording its answer, and reusing it on the same CPU."""
from __future__ import annotations

import platform
import sys
from typing import Any

import torch


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
            "valid": [[str(isa), isa._arch_flags, _bf16(isa)] for isa in probe()]}


def _bf16(isa: Any) -> bool:
    """What the probe found about AVX512-BF16 (VecAVX512 and its subclasses): it adds
    ``-mavx512bf16`` to every kernel's compile command, hence to every kernel's cache key."""
    return bool(getattr(isa, "_is_avx512_bf16_supported", False))


def _recorded_choice(record: Any, supported: Any) -> list[tuple[Any, Any]] | None:
    """The (ISA, (compiler flags, BF16)) pairs ``record`` names, if it was made on a CPU with exactly
    this CPU's features and names only ISAs this torch knows; otherwise None."""
    if not isinstance(record, dict) or record.get("cpu") != _cpu_features():
        return None
    by_name = {str(isa): isa for isa in supported}
    try:  # a record without the BF16 answer (an earlier precompile): probe as usual
        return [(by_name[name], (flags, bool(bf16))) for name, flags, bf16 in record["valid"]]
    except (KeyError, TypeError, ValueError):
        return None


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
    chosen = _recorded_choice(record, cvi.supported_vec_isa_list)
    if chosen is None:
        return False
    for isa, (flags, bf16) in chosen:
        isa._arch_flags = flags
        if bf16:
            isa._is_avx512_bf16_supported = True
    isas = [isa for isa, _ in chosen]
    cvi.valid_vec_isa_list = lambda: list(isas)
    _RECORDED_ISA = record
    return True
