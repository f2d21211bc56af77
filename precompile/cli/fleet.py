"""``warmup`` and ``coverage``: build a cache from a bucket spec, and gate a rollout on it.

    precompile warmup mypkg.serve:make_model --spec buckets.json [--cache DIR]
    precompile coverage mypkg.serve:make_model --spec buckets.json [--cache DIR]

FACTORY names a zero-argument callable that returns the function or module to serve (a
plain one is wrapped with ``precompile.cached``'s defaults and ``--cache``; one already
wrapped keeps its own options), or names that function or module itself when it is
already wrapped or is an ``nn.Module`` instance. Like ``explain``, these import user code.

Exit status: 0 every signature compiled or covered; 1 a signature failed (``warmup``) or
would miss (``coverage``; ``--strict`` also fails on signatures that cannot be checked
without running); 2 the command could not run (bad spec, factory that raises).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any

from . import _library as lib
from . import text
from .common import EXIT_OK, EXIT_PROBLEMS, CliError
from .explain import import_ref


def load_callable(ref: str) -> Any:
    """The callable FACTORY names, calling it when it is a factory."""
    obj = import_ref(ref)
    if hasattr(obj, "_precompile") or isinstance(obj, lib.torch.nn.Module):
        return obj
    if not callable(obj):
        raise CliError(f"{ref} is a {type(obj).__name__}; name a factory function that "
                       "returns the function or module to serve")
    return _call_factory(ref, obj)


def _call_factory(ref: str, factory: Callable[[], Any]) -> Any:
    """What the factory returns (its prints go to stderr); whatever it raises ends the
    command with a message that tells a wrong signature from a failing factory."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep --json output clean
            return factory()
    except TypeError as e:
        raise CliError(f"calling {ref}() failed ({e}); name a factory that takes no "
                       "arguments and returns the function or module to serve") from e
    except Exception as e:
        raise CliError(f"the factory {ref}() raised {type(e).__name__}: {e}") from e


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"store": args.cache} if args.cache else {}


def _report(args: argparse.Namespace, make: Callable[..., Any]) -> Any:
    """What ``make(fn, spec, **options)`` reports for the command's FACTORY and SPEC; a
    bad spec or a warmup that cannot run ends the command with its message."""
    try:
        spec = lib.signatures.load_spec(args.spec)
        fn = load_callable(args.factory)
        with contextlib.redirect_stdout(sys.stderr):  # keep --json output clean
            return make(fn, spec, **_options(args))
    except (lib.errors.SpecError, lib.errors.WarmupError) as e:
        raise CliError(str(e)) from e


def cmd_warmup(args: argparse.Namespace) -> int:
    report = _report(args, functools.partial(lib.fleet_warmup.warmup, progress=not args.quiet))
    if args.json:
        text.print_json(report.to_dict())
    elif args.quiet:  # otherwise the summary followed the progress bar on stderr
        text.emit(report.summary())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_coverage(args: argparse.Namespace) -> int:
    report = _report(args, lib.fleet_coverage.coverage)
    text.show(report.to_dict(), args.json, lambda: text.emit(report.summary()))
    unchecked = report.with_status(lib.fleet_report.UNCHECKED)
    return EXIT_OK if report.ok and not (args.strict and unchecked) else EXIT_PROBLEMS


def add_commands(add: Any) -> None:
    """Register both commands with the parser's ``add(name, help)``."""
    for name, help_, func in (
            ("warmup", "compile every signature of a spec ahead of time and save the "
                       "package (no real data needed)", cmd_warmup),
            ("coverage", "say, without running the model, whether the cache covers every "
                         "signature of a spec; exit 1 on a miss", cmd_coverage)):
        p = add(name, help_)
        p.add_argument("factory", metavar="FACTORY", help="module:factory returning the "
                       "function or module to serve, e.g. mypkg.serve:make_model")
        p.add_argument("--spec", required=True, metavar="SPEC.json",
                       help="the signatures (see precompile/fleet/signatures.py)")
        p.add_argument("--cache", metavar="DIR_OR_URL",
                       help="the store, when the factory returns an unwrapped callable")
        if name == "warmup":
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        else:
            p.add_argument("--strict", action="store_true", help="also exit 1 when a "
                           "signature cannot be checked without running (graph breaks)")
        p.set_defaults(func=func)
