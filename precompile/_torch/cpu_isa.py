"""Inductor's CPU vector-ISA probe: recording its answer, and reusing it on the same CPU."""
from __future__ import annotations

import platform
import re
import sys
from typing import Any

import torch


_RECORDED_ISA: dict[str, Any] | None = None
# How torch names a CPU feature probe (``torch.cpu._is_avx2_supported``) and what a vector
# ISA's check found out (``VecAVX512._is_avx512_bf16_supported``).
_PROBE_FLAG = re.compile(r"_is_(\w+)_supported")


def _cpu_features() -> dict[str, Any]:
    """The CPU features Inductor's ISA choice depends on, read via CPUID (cheap)."""
    feats: dict[str, Any] = {"machine": platform.machine()}
    for name in sorted(dir(torch.cpu)):
        found = _PROBE_FLAG.fullmatch(name)
        if found:
            try:
                feats[found.group(1)] = bool(getattr(torch.cpu, name)())
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
            "valid": [[str(isa), isa._arch_flags, _probed_flags(isa)] for isa in probe()]}


def _probed_flags(isa: Any) -> dict[str, bool]:
    """What the probe found out beyond the ISA itself and set on it: AVX-512's check also
    builds a bf16 test program and sets ``_is_avx512_bf16_supported``, which adds
    ``-mavx512bf16`` to every kernel's flags (torch/_inductor/cpu_vec_isa.py), and so to
    every kernel library's cache key: restored without it, each stored kernel is rebuilt."""
    return {name: value for name, value in vars(isa).items()
            if _PROBE_FLAG.fullmatch(name) and isinstance(value, bool)}


def _recorded_choice(record: Any, supported: Any) -> list[tuple[Any, Any, Any]] | None:
    """The (ISA, compiler flags, probed flags) ``record`` names, if it was made on a CPU with
    exactly this CPU's features and names only ISAs this torch knows; otherwise None (also
    for records without the probed flags, written before they were kept)."""
    if not isinstance(record, dict) or record.get("cpu") != _cpu_features():
        return None
    by_name = {str(isa): isa for isa in supported}
    try:
        chosen = [(by_name[name], flags, probed) for name, flags, probed in record["valid"]]
    except (KeyError, TypeError, ValueError):
        return None
    return chosen if all(_is_probed_flags(p) for _, _, p in chosen) else None


def _is_probed_flags(probed: Any) -> bool:
    """A record's probed flags: a map of ``_is_*_supported`` names to booleans."""
    return isinstance(probed, dict) and all(
        isinstance(v, bool) and _PROBE_FLAG.fullmatch(k) for k, v in probed.items())


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
    for isa, flags, probed in chosen:
        isa._arch_flags = flags
        for name, value in probed.items():
            setattr(isa, name, value)
    isas = [isa for isa, _, _ in chosen]
    cvi.valid_vec_isa_list = lambda: list(isas)
    _RECORDED_ISA = record
    return True
