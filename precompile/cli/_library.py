"""Every library name the CLI uses, in one table.

The CLI reads packages exactly as the library does, so it needs some of the library's
internals (code-object helpers, the guard unpickler, the manifest validator). Naming them
here, and nowhere else in ``precompile.cli``, means a move inside the library is one edit
in this table. The names load on first use: ``precompile stats`` and ``--help`` must not
pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# CLI name -> (module, attribute); attribute None re-exports the module itself.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    # Code-object helpers.
    "main_code": ("precompile.identity.main_function", "main_code"),
    "function_label": ("precompile.identity.main_function", "function_label"),
    "walk_qualname": ("precompile.identity.names", "walk_qualname"),
    # Private torch glue.
    "unpickle_guards_state": ("precompile._torch", "unpickle_guards_state"),
    "unwrap_compiled": ("precompile._torch", "unwrap_compiled"),
    # Library objects the CLI reuses so its verdicts match the library's.
    "CachedFunction": ("precompile.cached_function", "CachedFunction"),
    "default_store": ("precompile.policy", "default_store"),
    "from_manifest": ("precompile.package.manifest", "from_manifest"),
    "peek_file": ("cache_backends.local", "peek_file"),
    "LocalDirBackend": ("cache_backends.local", "LocalDirBackend"),
    "trust_shared": ("precompile.settings", "trust_shared"),
    # Whole modules.
    "archive": ("precompile.read.archive", None),
    "shared_blobs": ("precompile.read.shared_blobs", None),
    "blobs": ("cache_backends.blobs", None),
    "errors": ("precompile.errors", None),
    "fleet_coverage": ("precompile.fleet.coverage", None),
    "fleet_report": ("precompile.fleet.report", None),
    "fleet_warmup": ("precompile.fleet.warmup", None),
    "format": ("precompile.format.envelope", None),
    "identity": ("precompile.identity.checks", None),
    "keys": ("precompile.package.keys", None),
    "read_path": ("precompile.read.read_path", None),
    "settings": ("precompile.settings", None),
    "signatures": ("precompile.fleet.signatures", None),
    "verdict": ("precompile.read.verdict", None),
    "torch": ("torch", None),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
