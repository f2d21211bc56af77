"""The names tests and the CLI import from before the package code was split: the data
lives in ``model.py``, the recorder in ``recorder.py``, the stored form in ``manifest.py``,
names and bytecode in ``names.py``."""
from __future__ import annotations

from .model import ROLE_MAIN, ROLE_RESUME, ROLE_USER, FrameRecord, GuardedEntry, IdentityCheck
from .names import _code_with_refs, importable_name, resolve_importable
from .recorder import CompilePackage
from .recorder_hook import RecorderHook

__all__ = ["CompilePackage", "RecorderHook", "FrameRecord", "GuardedEntry", "IdentityCheck",
           "ROLE_MAIN", "ROLE_RESUME", "ROLE_USER", "importable_name", "resolve_importable",
           "_code_with_refs"]
