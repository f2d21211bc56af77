"""``PRECOMPILE_AUTO=1``: every ``torch.compile`` in a process and in the processes it
starts is ``precompile.cached``, with no change to the program.

How it turns on without an import in user code: the ``precompile-auto.pth`` file the
package installs into site-packages runs one line at every interpreter start; with the
variable unset that line reads ``os.environ`` and stops (``precompile`` is not imported).
With it set, :func:`boot` puts an import hook in front of ``sys.meta_path`` that waits for
``torch``: when ``torch`` has finished importing, and before the importing code gets it back,
``torch.compile`` is replaced (``_torch.auto_compile``), so every later way of reaching it is
covered. Child processes (``subprocess`` with the environment, ``torchrun`` ranks,
``torch.multiprocessing.spawn``) inherit the variable and boot the same way.
``precompile run`` sets the variable for a command (``cli/run.py``).

Each call becomes ``precompile.cached(model, backend=..., **options)``: the same key as the
explicit decorator, so both find the same packages; ``precompile.cached`` given what such a
call returned caches the model once (``AutoSource``). A call precompile cannot take (an
argument it does not know, ``disable=True``, ...) is torch's own, with the reason in the
report. At exit the process reports what it did (``auto_report``).

Standard library only at import: the ``.pth`` line imports this before anything else.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import settings

log = logging.getLogger("precompile")
SOURCE_ATTR = "_precompile_auto"  # on what a taken torch.compile call returned


@dataclasses.dataclass(frozen=True)
class AutoSource:
    """What ``torch.compile`` was given, kept on what it returned under the mode, so an
    explicit ``precompile.cached`` on top caches the same model with the same options."""

    model: Any
    backend: Any
    compile_kwargs: dict[str, Any]


@dataclasses.dataclass
class AutoState:
    """This process's record of the mode: what ``torch.compile`` calls it took or not."""

    booted: bool = False
    patched: bool = False
    seen: int = 0  # torch.compile calls taken over by precompile
    passed: list[str] = dataclasses.field(default_factory=list)  # left to torch, and why
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)


STATE = AutoState()
_MAX_PASSED = 100
_INSIDE = threading.local()  # set while precompile builds a cached function


def enabled() -> bool:
    """``PRECOMPILE_AUTO`` is on and ``PRECOMPILE_DISABLE`` is not (disable wins); a bad
    value is one warning and off."""
    auto = settings.or_default(lambda: settings.flag(settings.AUTO), False, strict=False,
                               instead="not caching torch.compile")
    return auto and not disabled()


def disabled() -> bool:
    return settings.or_default(lambda: settings.flag(settings.DISABLE), False, strict=False)


def boot() -> bool:
    """Turn the mode on in this process if the environment asks for it. Never raises: a
    failure here is a warning, and the program runs with plain ``torch.compile``."""
    if STATE.booted or not enabled():
        return False
    STATE.booted = True
    try:
        settings.share_auto_run()
        atexit.register(_report_at_exit)
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "compile"):
            _patch(torch)
        else:
            sys.meta_path.insert(0, AfterImport("torch", _patch))
    except Exception as e:  # noqa: BLE001 - the program must run without the mode
        log.warning("precompile: PRECOMPILE_AUTO could not be turned on (%r); torch.compile "
                    "runs without a cache", e)
    return True


class AfterImport:
    """A ``sys.meta_path`` finder that runs ``callback(module)`` once ``name`` has finished
    executing, before the import statement that asked for it returns; it then leaves
    ``sys.meta_path``. It finds nothing itself: the spec comes from the finders behind it."""

    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        spec = self._spec_from_others(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if spec is None or not hasattr(loader, "exec_module"):
            return None
        _remove(self)
        real_exec = loader.exec_module
        callback = self.callback

        def exec_module(module: Any) -> None:
            del loader.exec_module  # the loader's own method again
            real_exec(module)
            callback(module)

        loader.exec_module = exec_module
        return spec

    def _spec_from_others(self, fullname: str, path: Any, target: Any) -> Any:
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec
        return None


def _remove(finder: AfterImport) -> None:
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


def _patch(torch_module: Any) -> None:
    """Replace ``torch.compile`` (``torch`` has just finished importing). Never raises."""
    try:
        from . import _torch

        STATE.patched = _torch.patch_compile(_take, _passed) or STATE.patched
    except Exception as e:  # noqa: BLE001 - an import of torch must never fail because of us
        log.warning("precompile: PRECOMPILE_AUTO could not hook torch.compile (%r); it runs "
                    "without a cache", e)


def _take(call: Any) -> Any:
    """One ``torch.compile(model, ...)`` call as ``precompile.cached``; PlainCompile when it
    must stay torch's own."""
    from . import api
    from ._torch import PlainCompile

    if getattr(_INSIDE, "active", False):
        raise PlainCompile("called while precompile builds a cached function")
    if disabled():
        raise PlainCompile("PRECOMPILE_DISABLE is set")

    model = call.model
    if api.is_cached(model):  # precompile.cached's result is cached already
        return model
    _INSIDE.active = True
    try:
        front = api.cached(model, backend=call.backend, **call.compile_kwargs)
    finally:
        _INSIDE.active = False
    object.__setattr__(front, SOURCE_ATTR, AutoSource(model, call.backend,
                                                      dict(call.compile_kwargs)))
    with STATE.lock:
        STATE.seen += 1
    return front


def _passed(reason: str) -> None:
    with STATE.lock:
        if reason not in STATE.passed and len(STATE.passed) < _MAX_PASSED:
            STATE.passed.append(reason)
    log.info("precompile: torch.compile left to torch: %s", reason)


def _report_at_exit() -> None:
    from .auto_report import report

    report(STATE.seen, list(STATE.passed))
