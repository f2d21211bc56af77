"""Import aliases an installed entry placed never make a later compile fail.

Dynamo reads an imported module through a global alias it places in the frame's module
(``__import_shim`` for ``import shim``; ``InstructionTranslatorBase.import_source``) and
asserts that an alias already there is the module the import gives *now*, which it finds
through a process-wide cache (``_import_module``, ``functools.cache``). In the compiling
process the cache was filled when the alias was placed, so both agree even after the program
swaps ``sys.modules['shim']``. An installed entry places its aliases without tracing, so the
cache is empty: after a swap, the next compile of any function that imports ``shim`` found
the old module under the alias and raised ``AssertionError: expected alias not in f_globals
or f_globals[alias] is value``.

``rebind_stale_aliases`` makes Dynamo rebind such an alias to the module the import gives
now before it checks it. Installed entries read their aliases on every call (guards such as
``G['__import_shim'].VALUE == 2``), so they then see the new module too: they run where its
values match what they were compiled for and recompile where not, which is eager's answer.
"""
from __future__ import annotations

import functools
import threading
import types
from typing import Any

_HOOKED = threading.Lock()


def rebind_stale_aliases() -> None:
    """Install the rebinding once per process (idempotent)."""
    from torch._dynamo.symbolic_convert import InstructionTranslatorBase

    with _HOOKED:
        original = InstructionTranslatorBase.__dict__.get("import_source")
        if original is None or getattr(original, "_precompile_hooked", False):
            return  # (a release without it asserts nothing to rebind for)
        InstructionTranslatorBase.import_source = _rebinding(original)  # type: ignore


def _rebinding(original: Any) -> Any:
    @functools.wraps(original)
    def import_source(self: Any, module_name: str) -> Any:
        try:
            _rebind(self.output.global_scope, module_name)
        except Exception:  # noqa: BLE001 - never worse than Dynamo's own check
            pass
        return original(self, module_name)

    import_source._precompile_hooked = True  # type: ignore[attr-defined]
    return import_source


def _rebind(f_globals: dict[str, Any], module_name: str) -> None:
    """Point ``f_globals``'s alias for ``module_name`` at the module an import gives now,
    when it holds another module (the way Dynamo names and finds it)."""
    from torch._dynamo.symbolic_convert import _import_module

    if "torch_package" in module_name:
        return
    alias = f"__import_{module_name.replace('.', '_dot_')}"
    held = f_globals.get(alias)
    if not isinstance(held, types.ModuleType):
        return
    value = _import_module(module_name)
    if held is not value:
        f_globals[alias] = value
