"""The object behind every decorated function or module: its first call runs the warm path.

First call: key -> fetch (single flight: wait for or lead the one process compiling it) ->
decode and verify (``loading``) -> install -> call into Dynamo, so a warm process traces
nothing. Afterwards whatever Dynamo compiles lands in the recorder, and ``saving`` writes it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch

from . import _torch
from .format import envelope as format
from .package import keys
from .read import loading
from .counters import STATS, warn_once
from .install.entry_order import ORDER
from .errors import PackageError
from .read.explain import explain_absent
from .install.installation import Installation, install
from .read.loading import Miss
from .package.model import Package
from .identity.main_function import (closure_fingerprint, function_label, main_code,
                                     main_locals, unowned_globals)
from .policy import Policy
from .record.recorder import CompilePackage
from .record.recorder_hook import RecorderHook
from .record.saving import _SAVER, PackageWriter
from .read.single_flight import Lease, wait_or_lead

log = logging.getLogger("precompile")
_LIVE: weakref.WeakSet[CachedFunction] = weakref.WeakSet()


class CachedFunction:
    """The machinery behind one decorated function or module."""

    def __init__(self, target: Any, *, backend_obj: Any, fullgraph: bool,
                 dynamic: bool | None, policy: Policy,
                 preloaded: format.Envelope | None = None) -> None:
        self.target = target
        self.policy = policy
        self.store = policy.store
        self.strict = policy.strict
        self.signing_key = policy.signing_key
        self._lease: Lease | None = None
        self.backend_desc = _torch.describe_backend(backend_obj)
        self.backend_name = backend_obj if isinstance(backend_obj, str) else getattr(
            backend_obj, "compiler_name", "inductor" if "inductor" in self.backend_desc else None)
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.main_code, self.module = main_code(target)
        self.package = CompilePackage(self.main_code, self.module, "", {},
                                      eager_backward=policy.eager_backward,
                                      capture_kernels=self.backend_desc.startswith("inductor"),
                                      skip_on_soft_failure=not fullgraph)
        self.package.main_globals = unowned_globals(target)
        self.package.main_locals = main_locals(target)
        self.compiled = _torch.optimize(backend_obj, self.package, dynamic=dynamic,
                                        fullgraph=fullgraph,
                                        guard_filter_fn=RecorderHook(self.package.guard_filter),
                                        guard_fail_fn=RecorderHook(self.package.on_guard_fail))
        self.writer = PackageWriter(self.package, self.store, self.backend_name, self.signing_key)
        self.installation: Installation | None = None
        self.last_miss: str | None = None  # why the first call found nothing to install
        self._preloaded = preloaded
        self._ready = False
        self._first_lock = threading.Lock()
        if not _LIVE:  # the first one: torch._dynamo is imported by now (optimize)
            _torch.on_dynamo_reset(_after_dynamo_reset)
        _LIVE.add(self)

    def forget_installed(self) -> None:
        """Uninstall what the warm path installed; the next call takes it again."""
        with self._first_lock:
            if self.installation is not None:
                self.installation.uninstall()
                self.installation = None
            self._ready = False

    # ------------------------------------------------------------- calling

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ORDER.enter()  # installed entries are only reordered between calls (entry_order)
        try:
            if not self._ready:
                self._first_call(args, kwargs, lead=self.policy.single_flight)
            try:
                return fn(*args, **kwargs)
            finally:
                self._after_call()
        finally:
            ORDER.leave()

    def _after_call(self) -> None:
        """End the lease (saving now) or schedule a save. Never raises: what the user's
        call returned or raised is what the caller gets."""
        try:
            if self._lease is not None and self._lease.held:
                self._end_lease()
            elif self.writer.needs_save():
                _SAVER.schedule(self.writer)
        except Exception as e:  # noqa: BLE001 - a cache must never break the user's call
            STATS.note_miss(f"{self.label()}: could not save: {e!r}")
            warn_once(f"after-call:{type(e).__name__}", f"could not save the compiled code "
                      f"of {self.label()} ({e!r}); the program goes on without saving it")
            log.debug("precompile: save failed", exc_info=True)

    def prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Run the first call's warm path (key, fetch, verify, install) for these arguments
        without calling the function, and without taking the single-flight lease: ``warmup``
        and ``coverage`` ask what is installed before (or instead of) compiling."""
        self._first_call(args, kwargs, lead=False)

    def _first_call(self, args: tuple[Any, ...], kwargs: dict[str, Any], lead: bool) -> None:
        with self._first_lock:
            if self._ready:
                return
            t0 = time.perf_counter()
            try:
                self._load_guarded(args, kwargs, lead)
            except BaseException:
                self._drop_lease()  # a strict miss or ^C: let the waiters in now
                raise
            finally:
                spent = time.perf_counter() - t0
                STATS.load_seconds += spent
                if self.installation is not None and self.installation.installed_entries:
                    STATS.seconds_saved -= spent
                self._ready = True

    def _load_guarded(self, args: tuple[Any, ...], kwargs: dict[str, Any], lead: bool) -> None:
        """Key, fetch, verify, install. Anything unexpected (a key factor that cannot be
        computed, a store that raises the wrong thing) is one warning and a normal compile;
        in strict mode a PackageError."""
        try:
            self._load_and_install(self._key_factors(args, kwargs), lead)
        except Exception as e:  # noqa: BLE001 - a cache must never break the user's call
            if self.strict and isinstance(e, PackageError):
                raise
            log.debug("precompile: unexpected error in the cache path", exc_info=True)
            reason = f"{self.label()}: could not use the cache ({e!r}); compiling normally"
            self._miss(Miss(reason, PackageError(reason)))

    def _key_factors(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
        """The package key's inputs for this first call; sets the package's key."""
        roots = [self.target, *args, *kwargs.values()]
        # a module's bound method (``model.compile()`` compiles ``model._call_impl``): the
        # code is shared by every module, the submodule structure tells models apart
        owner = getattr(self.target, "__self__", self.target)
        tree = keys.module_tree(owner) if isinstance(owner, torch.nn.Module) else None
        factors = keys.key_factors(self.main_code, self.module, self.backend_desc,
                                   dynamic=self.dynamic, fullgraph=self.fullgraph,
                                   device_types=_torch.tensor_device_types(roots),
                                   module_tree=tree, closure=closure_fingerprint(self.target),
                                   label=function_label(self.target))
        self.package.key = keys.package_key(factors)
        self.package.factors = factors
        return factors

    def label(self) -> str:
        """The function's name for messages, also before its key factors exist."""
        return (self.package.factors.get("function")
                or f"{self.module}:{self.main_code.co_qualname}")

    # ---------------------------------------------------------- the warm path

    def _load_and_install(self, factors: dict[str, str], lead: bool) -> None:
        found = self._find(factors, lead)
        if found is None:
            return
        loaded = found if isinstance(found, Miss) else loading.load(
            found, self.main_code, self.module, factors, self.package.key, self.signing_key,
            self.store)
        if isinstance(loaded, Miss):
            self._miss(loaded)
            return
        self._install(loaded, factors)

    def _find(self, factors: dict[str, str],
              lead: bool) -> bytes | format.Envelope | Miss | None:
        """The package given to ``load``, else the stored one; when none is stored and
        ``lead`` (single flight on, and a call that will compile), waiting for another
        process to compile it, or taking the lease to compile it here. None without a
        store."""
        if self._preloaded is not None or self.store is None:
            return self._preloaded
        key = self.package.key
        data = loading.fetch(self.store, key)
        if data is None and lead:
            data, self._lease = wait_or_lead(self.store, key, self.policy.wait_timeout)
        return data if data is not None else Miss(explain_absent(self.store, key, factors,
                                                             self.signing_key))

    def _install(self, loaded: Package, factors: dict[str, str]) -> None:
        self.package.merge(loaded)
        self.package.created = loaded.created
        self.package.cpu_isa = loaded.cpu_isa
        try:
            self.installation = install(self.package, self.package.on_guard_fail)
        except PackageError as e:
            self._miss(Miss(str(e), e))
            return
        for code, frame in self.installation.bound:
            self.package.bind_code(code, frame)
        STATS.kernels_restored += self.installation.kernels_restored
        STATS.unbundled_kernels.extend(sorted(self.package.unbundled))
        for reason in self.installation.skipped:
            STATS.note_miss(f"{factors['function']}: entry not installed: {reason}")
        if not self.installation.installed_entries:
            self._miss(Miss(f"{factors['function']}: package {self.package.key} had no entry "
                            "that still applies"))
            return
        self._hit(self.installation.installed_entries, factors["function"])

    def _hit(self, entries: int, function: str) -> None:
        STATS.hits += 1
        STATS.seconds_saved += self.package.compile_seconds
        log.info("precompile: installed %d entries for %s from %s", entries, function,
                 self.store.url if self.store else "package file")

    def _miss(self, miss: Miss) -> None:
        self.last_miss = miss.reason
        STATS.misses += 1
        STATS.note_miss(miss.reason)
        if miss.error is None:
            log.info("precompile: miss: %s", miss.reason)
            error = PackageError(f"strict mode: cache miss: {miss.reason}")
        else:
            STATS.load_errors += 1
            log.warning("precompile: %s", miss.reason)
            error = miss.error
        if self.strict:
            raise error

    # ----------------------------------------------------------- single flight

    def _end_lease(self) -> None:
        """The leader's first call is done: save its package now, then let waiters in."""
        try:
            self.writer.save_now()
        finally:
            self._drop_lease()

    def _drop_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    # ------------------------------------------------------------------ saving

    def envelope_bytes(self) -> bytes:
        return self.writer.envelope_bytes()

    def save_now(self, timeout: float | None = None) -> bool:
        return self.writer.save_now(timeout)


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: a first-call lock another thread held
    would stay locked forever."""
    for item in list(_LIVE):
        item._first_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_dynamo_reset() -> None:
    """``torch._dynamo.reset()`` makes a process compile as if it had just started: every
    decorated function's next call takes the warm path again (key, fetch, verify, install),
    instead of running entries installed before the reset."""
    for cached in list(_LIVE):
        cached.forget_installed()

