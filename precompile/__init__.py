"""precompile: torch.compile warm starts with zero tracing.

    @precompile.cached
    def f(x): ...

records every frame Dynamo compiles for ``f`` (guards, transformed bytecode, resume
functions, backend artifacts, source hashes) into a package in a cache store, and a later
process installs it before its first call. See README.md.

The public names load lazily, so ``import precompile.errors``, the pytest plugin's
counters and ``precompile stats``/``--help`` do not pay for importing torch. Commands that
read packages (``precompile ls`` included) do: the library's store and manifest checks
that decide whether a package is trusted and well-formed need it.
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

from .record import recorder_hook as _recorder_hook

__all__ = ["cached", "save", "load", "flush", "stats", "warmup", "coverage", "errors",
           "PrecompileContext", "CompilePackage"]
__version__ = "0.1.0"

_LAZY = {
    "cached": "api", "save": "api", "load": "api", "flush": "api", "stats": "api",
    "warmup": "fleet.warmup", "coverage": "fleet.coverage",
    "PrecompileContext": "package.artifacts", "CompilePackage": "record.recorder", "errors": None,
}


# Pickles of compiled modules name the recorder's stand-in where it lived before the record/
# folder (``precompile.recorder_hook._no_recorder``, earlier ``precompile.recorder``); both
# still resolve to it (recorder_hook imports nothing, so this costs no torch import).
sys.modules.setdefault(f"{__name__}.recorder_hook", _recorder_hook)
sys.modules.setdefault(f"{__name__}.recorder", _recorder_hook)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'precompile' has no attribute {name!r}")
    module = _LAZY[name]
    value = (importlib.import_module(f".{name}", __name__) if module is None
             else getattr(importlib.import_module(f".{module}", __name__), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _configure_logging() -> None:
    """``PRECOMPILE_LOG``'s level and handler; whatever handles the records, they carry
    store text escaped (``counters.EscapingFilter``)."""
    from . import counters, settings

    counters.escape_log()
    level = settings.log_level()
    if level:
        logger = logging.getLogger("precompile")
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)


_configure_logging()
