"""The differences between the torch releases precompile supports, one function each.

precompile runs on torch 2.13, 2.14 and 2.15 (pyproject: ``torch>=2.13,<2.16``). Only
the ``_torch`` package calls this module, so nothing else in precompile asks which torch it runs on.
Each difference is decided by feature detection where torch offers something to detect,
and by release where it does not; a release outside ``CHECKED_RELEASES`` gets the careful
path of every difference (slower, never wrong).
"""
from __future__ import annotations

import re

import torch


# Releases whose internals tests/engine/test_light_loads.py checked the light-load stand-ins against
# (import graph, extern-kernel registry, WrapBackendDebug, cpp_extension paths). CI runs those
# tests on each of them (.ci/run).
CHECKED_RELEASES = frozenset({(2, 13), (2, 14), (2, 15)})


def torch_release(version: str | None = None) -> tuple[int, int] | None:
    """(major, minor) of ``version`` (default: the running torch), or None if unparsable."""
    match = re.match(r"(\d+)\.(\d+)", version if version is not None else str(torch.__version__))
    return (int(match.group(1)), int(match.group(2))) if match else None


def light_loads_checked() -> bool:
    """Whether the light-load stand-ins were checked against this torch's internals. They
    mirror private code (which names generated wrappers import, what ``optimize`` wraps a
    backend in), which nothing but a per-release test can vouch for; on any other release a
    warm start imports the real compiler instead."""
    return torch_release() in CHECKED_RELEASES


def pruned_value_pid() -> str | None:
    """The persistent id torch 2.15's guard pickler writes for a mutable container no guard
    reads (``torch._dynamo.package._PRUNED_VALUE_PID``; loaded as one ``_Missing`` per load by
    its ``_GuardsStateUnpickler.persistent_load``), or None on releases that do not prune
    that way: their guard state holds no persistent ids, and any is refused."""
    from torch._dynamo import package

    pid = getattr(package, "_PRUNED_VALUE_PID", None)
    return pid if isinstance(pid, str) else None
