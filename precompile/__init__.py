"""precompile: torch.compile warm starts with zero tracing.

    @precompile.cached
    def f(x): ...

records every frame Dynamo compiles for ``f`` (guards, transformed bytecode, resume
functions, backend artifacts, source hashes) into a package in a cache store, and a later
process installs it before its first call. See README.md.
"""
from __future__ import annotations

import logging
import os

from . import errors
from .api import cached, flush, load, save, stats
from .context import PrecompileContext
from .package import CompilePackage

__all__ = ["cached", "save", "load", "flush", "stats", "errors", "PrecompileContext",
           "CompilePackage"]
__version__ = "0.1.0"


def _configure_logging() -> None:
    level = os.environ.get("PRECOMPILE_LOG", "").strip().upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        logger = logging.getLogger("precompile")
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)


_configure_logging()
