"""``explain``: would a function's next first call hit the cache, and if not, why not.

The only command that imports user code: it needs the live function to compute the key the
library would look up, and the live globals to resolve identity checks (of trusted
packages only; they are resolved, never evaluated: see guard_path.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from . import _library as lib
from . import text
from .common import EXIT_OK, EXIT_PROBLEMS, CliError, import_user_module, user_module_dirs
from .inventory import iter_store, open_store

if TYPE_CHECKING:
    from precompile.read.verdict import StoredPackage as Pkg

# -------------------------------------------------------------- the live target


def resolve_ref(ref: str) -> tuple[Any, Any]:
    """``module:qualname`` (or ``module.qualname``) -> (object, precompile impl or None)."""
    return unwrap_target(import_ref(ref))


def import_ref(ref: str) -> Any:
    """The object ``module:qualname`` (or ``module.qualname``) names, its module imported
    from PYTHONPATH or the current directory (``common.import_user_module``)."""
    last_error: Exception | None = None
    for mod_name, qualname in _candidates(ref):
        try:
            with contextlib.redirect_stdout(sys.stderr):  # keep --json output clean
                module = import_user_module(mod_name)
        except ImportError as e:
            last_error = e
            continue
        except Exception as e:
            raise CliError(f"importing {mod_name} failed: {type(e).__name__}: {e}") from e
        return _attribute_path(ref, module, mod_name, qualname)
    raise CliError(f"cannot import a module for {ref!r}: {last_error}. Use module:qualname "
                   "and run from the project directory (or set PYTHONPATH)")


def _candidates(ref: str) -> list[tuple[str, str]]:
    """(module, qualname) splits of ``ref`` to try, the longest module name first."""
    if ":" in ref:
        mod_name, _, qualname = ref.partition(":")
        return [(mod_name, qualname)]
    parts = ref.split(".")
    return [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


def _attribute_path(ref: str, module: Any, mod_name: str, qualname: str) -> Any:
    if "<locals>" in qualname.split("."):
        raise CliError(f"{ref}: functions defined inside other functions cannot be "
                       "looked up; name the outer function's module-level object")
    try:
        return lib.walk_qualname(module, qualname)
    except AttributeError:
        raise CliError(f"{mod_name} has no attribute path {qualname!r}") from None


def unwrap_target(obj: Any) -> tuple[Any, Any]:
    """What precompile keys on for ``obj``: the impl behind a ``precompile.cached`` wrapper,
    the function behind ``torch.compile``, ``functools.wraps`` layers, an nn.Module's
    ``forward``. Returns (target, impl or None)."""
    impl = None
    for _ in range(20):
        pc = _cached_impl(obj)
        if pc is not None:
            impl, obj = pc, pc.target
            continue
        parts = lib.unwrap_compiled(obj)
        if parts is None:
            break
        obj = parts.original
    if isinstance(obj, type) and issubclass(obj, lib.torch.nn.Module):
        obj = obj.forward
    return obj, impl


def _cached_impl(obj: Any) -> Any:
    """The CachedFunction behind a ``precompile.cached`` wrapper, or None."""
    pc = getattr(obj, "_precompile", None)
    return pc if isinstance(pc, lib.CachedFunction) else None


def _main_code(obj: Any) -> tuple[Any, str]:
    try:
        return lib.main_code(obj)
    except TypeError as e:
        raise CliError(str(e)) from e


# What only the running program knows, taken from each stored package as it is: the device
# types of the call's tensors, the module tree and closure of live objects; and, without a
# precompile wrapper to read them from, the call site's options.
_RUNTIME_FACTORS = ("device", "module_tree", "closure")
_CALL_SITE_FACTORS = ("backend", "dynamic", "fullgraph")


@dataclasses.dataclass(frozen=True)
class LiveFunction:
    """The function as this process sees it: the key factors the library computes for its
    next first call (``factors["function"]`` is its name in packages), the
    ``precompile.cached`` machinery in front of it, if any, and the factors only a call
    can tell, which each stored package's own values stand in for."""

    factors: dict[str, str]
    impl: Any  # CachedFunction or None
    from_stored: tuple[str, ...]


def live_function(ref: str) -> LiveFunction:
    """Import what ``ref`` names and compute its key factors as the library would."""
    target, impl = resolve_ref(ref)
    code, module = _main_code(target)
    if impl is not None:
        options, from_stored = (impl.backend_desc, impl.dynamic, impl.fullgraph), _RUNTIME_FACTORS
    else:  # without a precompile wrapper the call site's options are the stored ones
        options, from_stored = ("", None, False), _RUNTIME_FACTORS + _CALL_SITE_FACTORS
    backend, dynamic, fullgraph = options
    factors = lib.keys.key_factors(code, module, backend, dynamic=dynamic, fullgraph=fullgraph,
                                   device_types=[], label=lib.function_label(target))
    return LiveFunction(factors, impl, from_stored)


def _factors_now(live: LiveFunction, pkg: Pkg) -> dict[str, str]:
    """The key factors this process would compute for ``pkg``'s call: the live ones, with
    the stored values for what only the running program knows."""
    stored = pkg.factors
    return {**live.factors, **{n: stored[n] for n in live.from_stored if n in stored}}


# ------------------------------------------------------------ one package's verdict


def _identity_failures(pkg: Pkg) -> tuple[int, list[str]]:
    """(main-frame entries whose identity checks all hold, failures) against live globals."""
    ok_main, failures = 0, []
    for fd in pkg.manifest.get("frames", []):
        mod = sys.modules.get(fd.get("module", ""))
        if mod is None:
            continue
        for i, ed in enumerate(fd.get("entries", []), 1):
            entry_failures = _failed_checks(f"{fd.get('qualname')} entry {i}",
                                            ed.get("identity", []), mod)
            failures.extend(entry_failures)
            if not entry_failures and fd.get("role") == "main":
                ok_main += 1
    return ok_main, failures


def _failed_checks(entry: str, checks: list[dict[str, Any]], mod: Any) -> list[str]:
    """The identity checks of ``entry`` that fail against ``mod``'s globals, in words."""
    out = []
    for c in checks:
        try:
            holds, detail = lib.identity.check_before_call(c["source"], c["fingerprint"],
                                                           mod.__dict__)
        except Exception:  # noqa: BLE001, S112 - a check we cannot evaluate is no verdict
            continue
        if holds is False:
            out.append(f"{entry}: {c['source']} is no longer the object it was compiled for "
                       f"({detail})")
    return out


def _miss_reasons(pkg: Pkg, factor_reasons: list[str], sources_changed: bool, ok_main: int,
                  id_failures: list[str]) -> list[str]:
    """Why ``pkg`` would not serve the call, besides changed sources (listed apart, with
    their diffs). Empty when it would. The entries are judged only when nothing else
    stands in the way, and never those of a package the library will not load (their
    identity checks were not resolved)."""
    if not pkg.trusted:
        return [f"the library will not load it: {pkg.untrusted_reason}", *factor_reasons]
    if sources_changed or factor_reasons:
        return list(factor_reasons)
    return _entry_reasons(pkg, ok_main, id_failures)


def _entry_reasons(pkg: Pkg, ok_main: int, id_failures: list[str]) -> list[str]:
    """Why no entry of the function itself would install (empty when one would): the
    package holds none, or every one has an identity check that fails here."""
    frames = pkg.manifest.get("frames", [])
    if not any(f.get("entries") for f in frames if f.get("role") == "main"):
        return ["the package holds no entry for the function itself"]
    if not ok_main:
        return ["no entry of the function still applies: " + "; ".join(id_failures)]
    return []


def explain_pkg(pkg: Pkg, live: LiveFunction) -> dict[str, Any]:
    """Whether ``pkg`` would serve the next first call, and every reason it would not."""
    now = _factors_now(live, pkg)
    factor_reasons = lib.keys.explain_factor_change(pkg.factors, now)
    changed, unchecked = lib.verdict.source_problems(pkg.manifest.get("sources", []),
                                                      user_module_dirs())
    ok_main, id_failures = _identity_failures(pkg) if pkg.trusted else (0, [])
    reasons = _miss_reasons(pkg, factor_reasons, bool(changed), ok_main, id_failures)
    would_hit = not reasons and not changed
    return {"key": pkg.key, "path": pkg.path, "saved": pkg.meta.get("saved"),
            "entries": pkg.meta.get("entries"), "would_hit": would_hit,
            "expected_key": lib.keys.package_key(now), "reasons": reasons,
            "source_changes": changed, "unchecked_sources": unchecked,
            "identity_failures": id_failures, "options_known": live.impl is not None}


# --------------------------------------------------------------------- command


def _store_for(cache: str | None, impl: Any) -> Any:
    """The cache named, else the decorator's own ``cache_dir=``/``store=``, else the
    default one: where the function itself would look."""
    if cache:
        return open_store(cache)
    if getattr(impl, "store", None) is not None:  # impl: a CachedFunction, or None
        return impl.store
    return open_store(None)


def _closest_first(result: dict[str, Any]) -> tuple[bool, int, float]:
    """Sort key: hits first, then the fewest reasons, then the newest."""
    return (not result["would_hit"], len(result["reasons"]) + len(result["source_changes"]),
            -(result["saved"] or 0))


def explain(ref: str, cache: str | None) -> tuple[dict[str, Any], int]:
    """(what ``explain --json`` prints, how many packages were looked at)."""
    live = live_function(ref)
    function = live.factors["function"]
    store = _store_for(cache, live.impl)
    pkgs = list(iter_store(store))
    results = sorted((explain_pkg(p, live) for p in pkgs
                      if p.function == function), key=_closest_first)  # "" when unreadable
    doc = {"function": function, "code_fingerprint": live.factors["code"],
           "cache": store.url, "would_hit": bool(results) and results[0]["would_hit"],
           "packages": results, "unreadable_packages": [p.key for p in pkgs if p.env is None]}
    return doc, len(pkgs)


def cmd_explain(args: argparse.Namespace) -> int:
    doc, looked_at = explain(args.ref, args.cache)
    text.show(doc, args.json, lambda: text.print_explain(doc, looked_at=looked_at))
    return EXIT_OK if doc["would_hit"] else EXIT_PROBLEMS
