"""Would this machine use a stored package? The library's own checks (python/torch/platform
factors, inlined source hashes), applied from the shell without running user code."""
from __future__ import annotations

import sys
from typing import Any

from . import _library as lib
from .common import user_module_dirs
from .inventory import Pkg


def compat_problems(pkg: Pkg) -> list[str]:
    """Why this machine's python/torch/platform cannot use ``pkg`` (the library's checks)."""
    out = []
    for name, mine in lib.keys.system_factors().items():
        theirs = pkg.factors.get(name)
        if theirs != mine:
            out.append(f"written for {name} {theirs}, this machine has {mine}")
    return out


def source_changes(ranges: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(changed, unchecked): stored inlined source ranges whose text differs now (worded by
    ``keys.changed_sources``), and ranges that cannot be checked here. Modules not imported
    yet are read from their files, never imported."""
    keys = lib.keys
    checkable, unchecked = [], []
    for raw in ranges:
        try:
            rng = keys.SourceRange.from_dict(raw)
        except (KeyError, TypeError):
            unchecked.append(f"malformed source record {raw!r:.80}")
            continue
        why_not = _why_unchecked(rng)
        if why_not:
            unchecked.append(why_not)
        else:
            checkable.append(rng)
    changed = keys.changed_sources(checkable, import_modules=False,
                                   fallback_dirs=user_module_dirs())
    return changed, unchecked


def _why_unchecked(rng: Any) -> str | None:
    """Why a source range cannot be compared from here, or None when it can."""
    if rng.module == "__main__":
        return (f"{rng.qualname} lines {rng.first_line}-{rng.last_line - 1} in a script run "
                "as __main__ (only the script itself can check them)")
    if (rng.module not in sys.modules
            and lib.keys.find_module_file(rng.module, user_module_dirs()) is None):
        return (f"module {rng.module} is not on sys.path here (run from the project directory "
                "or set PYTHONPATH)")
    return None


def stale_reason(pkg: Pkg) -> str | None:
    """Why no process on this machine would ever load ``pkg`` (corrupt, refused by the
    signing policy, stored under a key it was not written for, another
    python/torch/platform), or None."""
    if pkg.env is None:
        return f"corrupt: {pkg.error}"
    if not pkg.signature_ok:
        return pkg.signature
    compat = compat_problems(pkg)
    return "; ".join(compat) if compat else pkg.key_problem
