"""Process-wide counters behind ``precompile.stats()``, and the warnings a run gives once."""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

log = logging.getLogger("precompile")

_MAX_REASONS = 200


@dataclasses.dataclass
class Stats:
    hits: int = 0  # packages installed with at least one entry
    misses: int = 0  # first calls that found no usable package
    saves: int = 0  # packages written
    bypasses: int = 0  # compiled entries that could not be stored
    frames_traced: int = 0  # frames Dynamo compiled under precompile
    load_errors: int = 0  # stored packages that were corrupt, stale or incompatible
    load_seconds: float = 0.0  # time spent fetching, verifying and installing
    waited_s: float = 0.0  # time spent waiting for another process to compile (single flight)
    led: int = 0  # keys this process compiled for others waiting on it
    followed: int = 0  # keys another process compiled while this one waited
    seconds_saved: float = 0.0  # compile time the installed packages took to make, less load time
    kernels_restored: int = 0  # C++ kernel libraries written from packages into the Inductor cache
    miss_reasons: list[str] = dataclasses.field(default_factory=list)
    unbundled_kernels: list[str] = dataclasses.field(default_factory=list)  # must be rebuilt here
    recompile_reasons: list[str] = dataclasses.field(default_factory=list)  # failing guards
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def note_miss(self, reason: str) -> None:
        with self._lock:
            if reason not in self.miss_reasons and len(self.miss_reasons) < _MAX_REASONS:
                self.miss_reasons.append(reason)

    def note_recompile(self, reason: str) -> None:
        with self._lock:
            if len(self.recompile_reasons) < _MAX_REASONS:
                self.recompile_reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if not f.name.startswith("_")}
        d["miss_reasons"] = list(self.miss_reasons)
        d["unbundled_kernels"] = list(self.unbundled_kernels)
        d["recompile_reasons"] = list(self.recompile_reasons)
        return d

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            if not f.name.startswith("_"):
                setattr(self, f.name, f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]


STATS = Stats()

_WARNED: set[str] = set()


def warn_once(topic: str, message: str) -> None:
    """Log ``message`` the first time ``topic`` comes up: one store that fails (read-only,
    full, down) is one warning however many functions and calls meet it."""
    if topic not in _WARNED:
        _WARNED.add(topic)
        log.warning("precompile: %s", message)
