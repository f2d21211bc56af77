"""Content keys and source hashing: what a package is valid for, and how to say why not.

A package's *lookup key* is a sha256 over its key factors: the function's identity and
bytecode, python/torch versions, device types, backend and options, and the compiler
configuration that changes generated code. Everything Dynamo *inlined* is only known after
tracing, so those source ranges are stored in the package and re-hashed before install: an
edit there is a clean miss whose reason names the file and lines.

Nothing per-process (pid, rank, hostname, temp paths) goes into a key, so every rank and
every CI job shares one package.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.machinery
import inspect
import json
import linecache
import sys
import types
from typing import Any

from ..identity.names import code_fingerprint

KEY_SCHEMA = "3"  # 2: identity checks name sources unstripped (L[...]); 3: guard trees



def _engine() -> types.ModuleType:
    """``precompile._torch``, imported on first use: ``package_key`` and the source checks
    need no torch, so reading and binding a package (``precompile import``, ``prune``,
    ``export``) does not pay for importing it."""
    from .. import _torch

    return _torch


# --------------------------------------------------------------- inlined sources


@dataclasses.dataclass(frozen=True)
class SourceRange:
    """One function's source lines that a package was compiled from."""

    module: str
    qualname: str
    first_line: int
    last_line: int  # exclusive
    sha256: str
    text: str  # kept so a miss can show a diff

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceRange:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    @property
    def where(self) -> str:
        lines = f"lines {self.first_line}-{self.last_line - 1}"
        return f"{module_file_label(self.module)} {lines} ({self.qualname})"


def module_file_label(module_name: str) -> str:
    mod = sys.modules.get(module_name)
    path = getattr(mod, "__file__", None) if mod is not None else find_module_file(module_name)
    return str(path or module_name)


def find_module_file(name: str, fallback_dirs: tuple[str, ...] = ()) -> str | None:
    """The ``.py`` file of module ``name`` on sys.path, found *without importing* it or its
    parent packages (so checking a cache from the shell never runs user code). A top-level
    module not on sys.path is looked for in ``fallback_dirs`` (the CLI's working directory),
    which therefore never shadows an installed module."""
    parts = name.split(".")
    spec = _top_level_spec(parts[0], fallback_dirs)
    for i in range(1, len(parts)):
        if spec is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: i + 1]), list(spec.submodule_search_locations or []))
    origin = getattr(spec, "origin", None) or ""  # None, or "built-in" and such
    return origin if origin.endswith(".py") else None


def _top_level_spec(name: str, fallback_dirs: tuple[str, ...]) -> Any:
    """Where a top-level module is found: on sys.path, else in ``fallback_dirs``."""
    spec = importlib.machinery.PathFinder.find_spec(name)
    if spec is None and fallback_dirs:
        spec = importlib.machinery.PathFinder.find_spec(name, list(fallback_dirs))
    return spec


def source_range_for(code: types.CodeType) -> SourceRange | None:
    """The source lines of ``code``, or None when it has no readable source (REPL, exec)."""
    module = inspect.getmodule(code)
    if module is None or is_engine_module(module.__name__):
        return None
    try:
        lines, first = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return None
    text = "".join(lines)
    return SourceRange(module=module.__name__, qualname=code.co_qualname, first_line=first,
                       last_line=first + len(lines), sha256=_sha(text), text=text)


def is_engine_module(name: str) -> bool:
    """torch's own code is covered by the torch version in the key."""
    return name == "torch" or name.startswith(("torch.", "precompile.", "functorch."))


def current_text(rng: SourceRange, *, import_module: bool = True,
                 fallback_dirs: tuple[str, ...] = ()) -> str | None:
    """The text now at ``rng``'s lines in the module's file, or None if unreadable. Without
    ``import_module`` a module not imported yet is read from its file on sys.path (or in
    ``fallback_dirs``, see ``find_module_file``)."""
    if sys.modules.get(rng.module) is None and not import_module:
        path = find_module_file(rng.module, fallback_dirs)
        return _lines(path, rng, None) if path else None
    mod = _imported(rng.module)
    path = getattr(mod, "__file__", None)
    if not path:
        return None
    return _lines(path, rng, getattr(mod, "__dict__", None))


def _imported(name: str) -> types.ModuleType | None:
    """Module ``name``, imported if it is not yet; None when importing it fails."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - a module that fails to import has changed
        return None


def _lines(path: str, rng: SourceRange, module_globals: dict[str, Any] | None) -> str | None:
    linecache.checkcache(path)
    lines = linecache.getlines(path, module_globals)
    if not lines:
        return None
    return "".join(lines[rng.first_line - 1:rng.last_line - 1])


def changed_sources(ranges: list[SourceRange], *, import_modules: bool = True,
                    fallback_dirs: tuple[str, ...] = ()) -> list[str]:
    """Human-readable descriptions of every stored range whose text changed, with a diff.
    ``import_modules=False`` reads modules not imported yet from their files instead, for
    checks that must not run user code (``precompile verify``)."""
    out = []
    for rng in ranges:
        now = current_text(rng, import_module=import_modules, fallback_dirs=fallback_dirs)
        if now is None:
            out.append(f"{rng.where}: source is no longer readable")
        elif _sha(now) != rng.sha256:
            out.append(f"{rng.where} changed:\n{short_diff(rng.text, now)}")
    return out


def short_diff(old: str, new: str, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "cached", "now",
                                      n=0, lineterm=""))[2:]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join("    " + ln for ln in lines)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ key factors


def system_factors() -> dict[str, str]:
    """This process's python, torch and platform, as key factors spell them."""
    info = _engine().system_info()
    return {"python": f"{info['python_impl']}-{info['python']}", "torch": info["torch"],
            "platform": info["platform"]}


def key_factors(code: types.CodeType, module_name: str, backend_desc: str, *,
                dynamic: bool | None, fullgraph: bool, device_types: list[str],
                module_tree: str | None = None,
                closure: str | None = None, label: str | None = None) -> dict[str, str]:
    """Everything a package's validity depends on that is known before tracing.

    ``module_tree`` (for nn.Modules) describes the submodule structure, so two models that
    share a class (every ``nn.Sequential``) get packages of their own; ``closure`` does the
    same for functions made by one decorator (same code, different wrapped function).
    ``label`` names the function in keys and messages when the compiled code is a
    decorator's wrapper (default ``module:qualname`` of ``code``)."""
    configs = _engine().config_diffs()
    factors = {
        "schema": KEY_SCHEMA,
        "function": label or f"{module_name}:{code.co_qualname}",
        "code": code_fingerprint(code),
        **system_factors(),
        "device": ",".join(device_types) or "none",
        "backend": backend_desc,
        "dynamic": repr(dynamic),
        "fullgraph": repr(fullgraph),
        "env": json.dumps(_engine().codegen_env(), sort_keys=True),
        "numerics": json.dumps(_engine().global_numerics(), sort_keys=True),
    }
    for name, diff in configs.items():
        factors[f"{name}_config"] = json.dumps(diff, sort_keys=True)
    if module_tree is not None:
        factors["module_tree"] = module_tree
    if closure is not None:
        factors["closure"] = closure
    return factors


def module_tree(module: Any) -> str:
    """A short hash of a module's submodule names and classes."""
    parts = [f"{name}:{type(m).__module__}.{type(m).__qualname__}"
             for name, m in module.named_modules()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def package_key(factors: dict[str, str]) -> str:
    """The lookup key: a readable function name plus a hash of all factors."""
    digest = hashlib.sha256(json.dumps(factors, sort_keys=True).encode()).hexdigest()[:32]
    name = factors.get("function", "fn").split(":")[-1]
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)[:60]
    return f"{safe}-{digest}"


def changed_factor_names(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return [n for n in sorted(set(old) | set(new)) if old.get(n) != new.get(n)]


def explain_factor_change(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Which key factors differ between a stored package and this call, in words."""
    reasons = []
    for name in changed_factor_names(old, new):
        if name == "code":
            reasons.append(f"the source of {new.get('function', 'the function')} changed")
        else:
            reasons.append(f"{name} changed: {_clip(old.get(name))} -> {_clip(new.get(name))}")
    return reasons


def _clip(value: str | None, limit: int = 160) -> str:
    text = "(absent)" if value is None else value
    return text if len(text) <= limit else text[:limit] + "..."
