"""What compiled code depends on beyond its source: versions, GPUs, configs, environment."""
from __future__ import annotations

import itertools
import os
import platform
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import torch


TORCH_VERSION = str(torch.__version__)
PYTHON_VERSION = platform.python_version()


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
    if not getattr(mod, "is_available", lambda: False)():
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

    return {label: _changed_settings(cfg) for label, cfg in (
        ("inductor", inductor_config), ("functorch", functorch_config), ("dynamo", dynamo_config))}


# Settings that change where and whether things are cached, logged or retried, not the code.
_SETTINGS_IGNORED = {
    "bundled_autograd_cache", "cache_dir", "fx_graph_cache", "autograd_cache",
    "fx_graph_remote_cache", "autotune_local_cache", "autotune_remote_cache",
    "bundled_autotune_remote_cache", "force_disable_caches", "caching_precompile",
    "recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
    "accumulated_cache_size_limit", "verbose", "suppress_errors", "log_compilation_metrics",
}


def _changed_settings(cfg: Any) -> dict[str, str]:
    """``{name: repr(value)}`` for one config module's code-relevant settings off their default."""
    diff: dict[str, str] = {}
    for name, entry in cfg._config.items():
        if not _may_change_code(name, entry):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = getattr(cfg, name)
        except Exception:  # noqa: BLE001 - a setting that cannot be read changes nothing here
            continue
        if callable(value) and not isinstance(value, type):
            continue  # hooks (process objects, compared by identity) are not settings
        if value != entry.default:
            diff[name] = repr(value)
    return diff


def _may_change_code(name: str, entry: Any) -> bool:
    """Whether a config entry can change generated code: not private, debug, logging, a
    cache switch, deprecated or an alias of another entry."""
    return not (name in _SETTINGS_IGNORED or name.startswith("_") or "debug" in name
                or "log" in name or getattr(entry, "deprecated", False)
                or getattr(entry, "alias", None))


_ENV_IGNORED = {"TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                "TORCHINDUCTOR_AUTOGRAD_CACHE", "TORCHINDUCTOR_FORCE_DISABLE_CACHES",
                "TORCHINDUCTOR_COMPILE_THREADS", "TORCHINDUCTOR_WORKER_START"}


def codegen_env() -> dict[str, str]:
    """Environment variables that change what torch generates (paths and cache switches out)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(("TORCHINDUCTOR_", "TORCH_COMPILE_", "TORCHDYNAMO_"))
            and k not in _ENV_IGNORED and "CACHE" not in k and "LOG" not in k
            and "DEBUG" not in k}


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
        elif isinstance(obj, torch.nn.Module):  # its first parameter and first buffer
            stack.extend(itertools.islice(obj.parameters(), 1))
            stack.extend(itertools.islice(obj.buffers(), 1))
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return sorted(found)
