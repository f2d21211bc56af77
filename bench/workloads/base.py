"""Shared pieces of the workloads: ``Built``, ``Skip``, seeding and the default runner.

This module imports torch; the registry in ``__init__`` does not (the parent process of the
suite never imports torch).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

SEED = 0


class Skip(Exception):
    """Raised by ``build()`` when an optional dependency is missing: the run is reported as
    skipped, not failed."""


@dataclasses.dataclass
class Built:
    """One ready-to-run instance of a workload."""

    target: Any  # what gets compiled: an nn.Module or a function
    inputs: tuple[Any, ...]
    # How to produce the output from a callable (the compiled target or the eager target).
    # The default is inference: ``fn(*inputs)`` under torch.no_grad(). Workloads that call
    # several times (dynamic shapes) or train (forward, backward, optimizer step) set it.
    run: Callable[[Callable[..., Any], tuple[Any, ...]], Any] = (
        lambda fn, inputs: infer(fn, inputs))
    # Called before the eager reference run, to undo state the compiled run changed.
    reset: Callable[[], None] | None = None
    # torch.compile / precompile.cached keyword arguments (e.g. dynamic=...).
    compile_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 1e-4


def infer(fn: Callable[..., Any], inputs: tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return fn(*inputs)


def seeded() -> None:
    torch.manual_seed(SEED)


def transformers_or_skip():
    """The ``transformers`` module, quiet, with the seed set; ``Skip`` when it is missing."""
    try:
        import transformers
    except ImportError as e:
        raise Skip("transformers is not installed (pip install transformers)") from e
    transformers.logging.set_verbosity_error()
    seeded()
    return transformers
