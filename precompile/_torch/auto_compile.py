"""``torch.compile`` replaced in place, for ``PRECOMPILE_AUTO``: each call is handed to
precompile (``wrap``) with the backend and options it was given, or, when it asks for
something precompile does not take, to torch's own ``torch.compile`` unchanged.

One attribute of the ``torch`` module is replaced, right after ``torch`` finishes importing
(``precompile.auto``), so every later way of reaching it sees the replacement:
``torch.compile(f)``, ``@torch.compile``, ``@torch.compile(...)``, ``from torch import
compile``, ``torch.compiler.compile`` and ``nn.Module.compile()`` (both look the attribute up
when called). torch's decorator form calls the module-level ``compile`` again, which would be
this function too; the decorator form is therefore handled here and torch's original is only
ever given a model.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch

# torch.compile's arguments that precompile.cached takes as they are
CACHED_ARGS = frozenset({"fullgraph", "dynamic", "backend", "mode", "options"})
# torch.compile's other arguments, each with the value under which it changes nothing
NEUTRAL_ARGS: dict[str, Any] = {"name": None, "disable": False, "recompile_limit": None,
                                "isolate_recompiles": False, "shapes_spec": None}
# ``options`` keys torch.compile takes out of the Inductor options for itself
_TORCH_ONLY_OPTIONS = ("guard_filter_fn", "use_aoti")
_ORIGINAL_ATTR = "_precompile_auto_original"


class PlainCompile(Exception):
    """Raised by ``wrap``: this call stays torch's own ``torch.compile`` (the message says
    why)."""


@dataclasses.dataclass(frozen=True)
class CompileCall:
    """One ``torch.compile(model, ...)`` call precompile takes over."""

    model: Any
    backend: Any
    compile_kwargs: dict[str, Any]  # mode, options, dynamic, fullgraph (as given)


def plain_reason(kwargs: dict[str, Any]) -> str | None:
    """Why this call must stay torch's own ``torch.compile``; None when precompile can take
    it. Torch handles whatever it would reject, too (its errors are the user's)."""
    why = _arguments_reason(kwargs) or _options_reason(kwargs)
    if why is None and torch.compiler.is_exporting():
        return "torch.compile inside torch.export"
    return why


def _arguments_reason(kwargs: dict[str, Any]) -> str | None:
    """An argument precompile does not take, or one given a value that changes something."""
    for name, value in kwargs.items():
        if name in CACHED_ARGS:
            continue
        if name not in NEUTRAL_ARGS:
            return f"torch.compile argument {name}= is not one precompile knows"
        neutral = NEUTRAL_ARGS[name]
        if value is not neutral and value != neutral:
            return f"torch.compile({name}={value!r}) is compiled by torch as asked"
    return None


def _options_reason(kwargs: dict[str, Any]) -> str | None:
    """``options`` precompile cannot pass on as Inductor options."""
    options = kwargs.get("options")
    if options is not None and not isinstance(options, dict):
        return "torch.compile options that are not a dict"
    torch_only = sorted(k for k in _TORCH_ONLY_OPTIONS if k in (options or ()))
    if torch_only:
        return f"torch.compile options {torch_only}"
    if kwargs.get("mode") is not None and options is not None:
        return "torch.compile given both mode and options"
    return None


def default_backend() -> Any:
    """What ``backend=None`` means to ``torch.compile`` (``"inductor"`` unless changed)."""
    try:
        from torch._dynamo.backends.registry import get_default_backend
    except ImportError:
        return "inductor"
    return get_default_backend()


def patch_compile(wrap: Callable[[CompileCall], Any],
                  passed: Callable[[str], None]) -> bool:
    """Make ``torch.compile`` call ``wrap(CompileCall)``; a call precompile cannot take, or
    whose ``wrap`` raises, goes to torch's own and ``passed(reason)`` hears why. False if
    ``torch.compile`` was already replaced (once per process)."""
    original = torch.compile
    if getattr(original, _ORIGINAL_ATTR, None) is not None:
        return False

    @functools.wraps(original)
    def compile(model: Any = None, **kwargs: Any) -> Any:  # noqa: A001 - torch's name
        if model is None:
            def decorate(model: Any) -> Any:
                if model is None:
                    raise RuntimeError("Model can't be None")
                return compile(model, **kwargs)
            return decorate
        reason = plain_reason(kwargs)
        if reason is None:
            backend = kwargs.get("backend")
            call = CompileCall(model, default_backend() if backend is None else backend,
                               {k: v for k, v in kwargs.items() if k in CACHED_ARGS
                                and k != "backend" and v is not None})
            try:
                return wrap(call)
            except PlainCompile as e:
                reason = str(e)
            except Exception as e:  # noqa: BLE001 - plain torch.compile must still work
                reason = f"precompile could not take it ({type(e).__name__}: {e})"
        passed(f"{_name(model)}: {reason}")
        return original(model, **kwargs)

    setattr(compile, _ORIGINAL_ATTR, original)
    torch.compile = compile
    return True


def unpatch_compile() -> None:
    """Give ``torch.compile`` back (tests; a process that turns the mode off)."""
    original = getattr(torch.compile, _ORIGINAL_ATTR, None)
    if original is not None:
        torch.compile = original


def dynamo_frames_total() -> int:
    """Frames Dynamo traced in this process, precompile's or not (0 if it never loaded).
    Each trace is one ``_compile.compile_inner`` timing; ``counters["frames"]["total"]``
    would also count every frame Dynamo only looked at and skipped (DDP's helpers, frames
    without tensors), which a warm process sees too."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return 0
    metrics = getattr(utils, "compilation_time_metrics", None)
    if isinstance(metrics, dict):
        return len(metrics.get("_compile.compile_inner", ()))
    return int(utils.counters["stats"].get("unique_graphs", 0))


def _name(model: Any) -> str:
    target = getattr(model, "__func__", model)
    qualname = getattr(target, "__qualname__", None) or type(model).__qualname__
    return f"{getattr(target, '__module__', None) or type(model).__module__}:{qualname}"
