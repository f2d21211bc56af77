"""The public API: ``cached`` (decorator), ``save``, ``load``, ``flush``, ``stats``.

One :class:`Cached` object sits behind every decorated function or module. Its first call
computes the package key, fetches and verifies the stored package, installs it, and only
then calls into Dynamo, so a warm process traces nothing. Whenever Dynamo compiles something
new, the package is marked dirty and written soon after (by a background thread, merged
with whatever other processes stored under the same key), on ``flush()``, at exit, and on
SIGTERM.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch

from cache_backends import CacheBackend, open_store
from cache_backends.local import write_atomically

from . import _torch, format, keys, settings
from .context import PrecompileContext
from .errors import (FormatError, IncompatibleError, LockTimeout, PackageError,
                     SettingError, SourceChangedError, StoreError)
from .install import Installation, check_sources, install
from .names import closure_fingerprint, function_label, main_code
from .package import CompilePackage, RecorderHook
from .counters import STATS

log = logging.getLogger("precompile")

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "precompile")
_LIVE: weakref.WeakSet[Cached] = weakref.WeakSet()
_WARNED: set[str] = set()
_LEASE_SUFFIX = ".compile"  # the lock a leader holds while it compiles a key
_SIGTERM_SAVE_S = 30.0  # how long the SIGTERM handler waits for the last saves


def default_store(cache_dir: Any = None, store: Any = None) -> CacheBackend:
    """Precedence: explicit argument, then $PRECOMPILE_CACHE_URL / $PRECOMPILE_CACHE_DIR,
    then ~/.cache/precompile. A store the environment names that cannot be opened is a
    SettingError naming the variable (an explicit argument's ValueError is the caller's)."""
    if store is not None:
        return open_store(store)
    if cache_dir is not None:
        return open_store(os.fspath(cache_dir))
    named = settings.cache_spec()
    if named is None:
        return open_store(os.path.expanduser(DEFAULT_CACHE_DIR))
    try:
        return open_store(named[1])
    except (ValueError, TypeError, StoreError) as e:
        raise SettingError(f"{named[0]} does not name a usable cache store: {e}") from e


def warn_once(topic: str, message: str) -> None:
    """Log ``message`` the first time ``topic`` comes up: one store that fails (read-only,
    full, down) is one warning however many functions and calls meet it."""
    if topic not in _WARNED:
        _WARNED.add(topic)
        log.warning("precompile: %s", message)


# --------------------------------------------------------------------- Cached


@dataclasses.dataclass(frozen=True)
class Policy:
    """How one cached function uses its store: arguments resolved against the environment
    once, here, so the rest of the code reads plain values."""

    store: CacheBackend | None
    strict: bool = False
    eager_backward: bool = True
    single_flight: bool = True
    wait_timeout: float = 600.0
    signing_key: bytes | None = None

    @classmethod
    def resolve(cls, *, cache_dir: Any = None, store: Any = None, env_store: bool = True,
                strict: bool | None = None, eager_backward: bool = True,
                single_flight: bool = True, wait_timeout: float | None = None,
                signing_key: str | bytes | None = None) -> Policy:
        """``env_store=False``: no store unless ``cache_dir``/``store`` names one. A bad
        environment setting is one warning and its default (strict mode: SettingError), so
        a typo in a fleet-wide variable never stops a program at import."""
        if strict is None:
            strict = settings.or_default(lambda: settings.flag(settings.STRICT), False,
                                         strict=False)
        the_store = None
        if env_store or cache_dir is not None or store is not None:
            the_store = settings.or_default(lambda: default_store(cache_dir, store), None,
                                            strict=strict, instead="running without a cache")
        if wait_timeout is None:
            wait_timeout = settings.or_default(
                lambda: settings.seconds(settings.WAIT_TIMEOUT, 600.0), 600.0, strict=strict)
        return cls(store=the_store, strict=strict, eager_backward=eager_backward,
                   single_flight=single_flight, wait_timeout=wait_timeout,
                   signing_key=_signing_key(signing_key))


class Cached:
    """The machinery behind one decorated function or module."""

    def __init__(self, target: Any, *, backend_obj: Any, fullgraph: bool,
                 dynamic: bool | None, policy: Policy,
                 preloaded: format.Envelope | None = None) -> None:
        self.target = target
        self.policy = policy
        self.store = policy.store
        self.strict = policy.strict
        self.signing_key = policy.signing_key
        self._lease: contextlib.ExitStack | None = None
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
        self.compiled = _torch.optimize(backend_obj, self.package, dynamic=dynamic,
                                        fullgraph=fullgraph,
                                        guard_filter_fn=RecorderHook(self.package.guard_filter),
                                        guard_fail_fn=RecorderHook(self.package.on_guard_fail))
        self.installation: Installation | None = None
        self._preloaded = preloaded
        self._ready = False
        self._first_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saving_in: int | None = None  # the thread inside save_now, if any
        self._saved_version = 0
        PrecompileContext.get().add_listener(self._on_artifact)
        _LIVE.add(self)
        _install_exit_hooks()

    # ------------------------------------------------------------- calling

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self._ready:
            self._first_call(args, kwargs)
        try:
            return fn(*args, **kwargs)
        finally:
            self._after_call()

    def _after_call(self) -> None:
        """End the lease (saving now) or schedule a save. Never raises: what the user's
        call returned or raised is what the caller gets."""
        try:
            if self._lease is not None:
                self._end_lease()
            elif self.package.dirty:
                _SAVER.schedule(self)
        except Exception as e:  # noqa: BLE001 - a cache must never break the user's call
            STATS.note_miss(f"{self._label()}: could not save: {e!r}")
            warn_once(f"after-call:{type(e).__name__}", f"could not save the compiled code "
                      f"of {self._label()} ({e!r}); the program goes on without saving it")
            log.debug("precompile: save failed", exc_info=True)

    def _first_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._first_lock:
            if self._ready:
                return
            t0 = time.perf_counter()
            try:
                self._load_guarded(args, kwargs)
            except BaseException:
                self._drop_lease()  # a strict miss or ^C: let the waiters in now
                raise
            finally:
                spent = time.perf_counter() - t0
                STATS.load_seconds += spent
                if self.installation is not None and self.installation.installed_entries:
                    STATS.seconds_saved -= spent
                self._ready = True

    def _load_guarded(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Key, fetch, verify, install. Anything unexpected (a key factor that cannot be
        computed, a store that raises the wrong thing) is one warning and a normal compile;
        in strict mode a PackageError."""
        try:
            self._load_and_install(self._key_factors(args, kwargs))
        except Exception as e:  # noqa: BLE001 - a cache must never break the user's call
            if self.strict and isinstance(e, PackageError):
                raise
            log.debug("precompile: unexpected error in the cache path", exc_info=True)
            reason = f"{self._label()}: could not use the cache ({e!r}); compiling normally"
            self._miss(reason, error=PackageError(reason))

    def _key_factors(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
        """The package key's inputs for this first call; sets the package's key."""
        roots = [self.target, *args, *kwargs.values()]
        tree = keys.module_tree(self.target) if isinstance(self.target, torch.nn.Module) else None
        factors = keys.key_factors(self.main_code, self.module, self.backend_desc,
                                   dynamic=self.dynamic, fullgraph=self.fullgraph,
                                   device_types=_torch.tensor_device_types(roots),
                                   module_tree=tree, closure=closure_fingerprint(self.target),
                                   label=function_label(self.target))
        self.package.key = keys.package_key(factors)
        self.package.factors = factors
        return factors

    def _label(self) -> str:
        """The function's name for messages, also before its key factors exist."""
        return (self.package.factors.get("function")
                or f"{self.module}:{self.main_code.co_qualname}")

    def _load_and_install(self, factors: dict[str, str]) -> None:
        key = self.package.key
        env = self._preloaded
        if env is None and self.store is not None:
            data = self._fetch(key)
            if data is None and self.policy.single_flight:
                data = self._wait_or_lead(key)
            if data is None:
                self._miss(self._explain_absent(factors))
                return
            try:
                env = format.decode(data, signing_key=self.signing_key)
            except PackageError as e:
                self._miss(f"stored package {key} is unusable ({e}); compiling and replacing it",
                           error=e)
                return
        if env is None:
            return
        try:
            loaded = verify(env, self.main_code, self.module, factors)
            _torch.use_recorded_cpu_isa(env.meta.get("cpu_isa"))
            self.package.merge(loaded)
            created = env.meta.get("created", 0.0)
            self.package.created = float(created) if isinstance(created, (int, float)) else 0.0
            self.installation = install(self.package)
        except PackageError as e:
            self._miss(str(e), error=e)
            return
        STATS.kernels_restored += self.installation.kernels_restored
        STATS.unbundled_kernels.extend(sorted(self.package.unbundled))
        for reason in self.installation.skipped:
            STATS.note_miss(f"{factors['function']}: entry not installed: {reason}")
        if self.installation.installed_entries:
            STATS.hits += 1
            STATS.seconds_saved += self.package.compile_seconds
            log.info("precompile: installed %d entries for %s from %s",
                     self.installation.installed_entries, factors["function"],
                     self.store.url if self.store else "package file")
        else:
            self._miss(f"{factors['function']}: package {key} had no entry that still applies")

    # -------------------------------------------------------- single flight

    def _wait_or_lead(self, key: str) -> bytes | None:
        """No package yet. Become the one process that compiles it (hold the compile lease
        until it is saved) or wait for whoever holds the lease to save it.

        Returns the package if it appeared while waiting; None means "compile here" (as the
        leader, or because waiting timed out or the store cannot coordinate).
        """
        assert self.store is not None
        t0 = time.monotonic()
        deadline = t0 + self.policy.wait_timeout
        delay = 0.02
        try:
            while True:
                lease = contextlib.ExitStack()
                try:
                    lease.enter_context(self.store.lock(key + _LEASE_SUFFIX, timeout=0))
                except LockTimeout:
                    if time.monotonic() >= deadline:
                        STATS.note_miss(f"{key}: waited {self.policy.wait_timeout:g}s for another "
                                        "process to compile it; compiling here")
                        return None
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.5)
                    data = self._fetch(key)
                    if data is not None:
                        STATS.followed += 1
                        return data
                    continue
                except StoreError as e:
                    warn_once(f"store:{self.store.url}", f"cannot coordinate compiles "
                              f"through the cache ({e}); every process compiles for itself")
                    return None
                self._lease = lease  # from here every exit path releases it (_drop_lease)
                data = self._fetch(key)  # the leader may have finished just now
                if data is not None:
                    self._drop_lease()
                    STATS.followed += 1
                    return data
                STATS.led += 1
                return None
        finally:
            STATS.waited_s += time.monotonic() - t0

    def _end_lease(self) -> None:
        """The leader's first call is done: save its package now, then let waiters in."""
        if self._lease is None:
            return
        try:
            self.save_now()
        finally:
            self._drop_lease()

    def _drop_lease(self) -> None:
        """Let the processes waiting for this key in (they compile or load what was saved)."""
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            lease.close()
        except Exception as e:  # noqa: BLE001 - the store's lock frees itself (lease, exit)
            warn_once(f"unlock:{type(e).__name__}", f"cannot release the compile lease ({e!r})")

    def _fetch(self, key: str) -> bytes | None:
        assert self.store is not None
        try:
            return self.store.get(key)
        except StoreError as e:
            warn_once(f"store:{self.store.url}", f"cannot read the cache ({e}); compiling normally")
            return None

    def _miss(self, reason: str, error: Exception | None = None) -> None:
        STATS.misses += 1
        STATS.note_miss(reason)
        if error is not None:
            STATS.load_errors += 1
            log.warning("precompile: %s", reason)
        else:
            log.info("precompile: miss: %s", reason)
        if self.strict:
            raise error if error is not None else PackageError(f"strict mode: cache miss: {reason}")

    def _explain_absent(self, factors: dict[str, str]) -> str:
        """Why there is no package: compare with packages stored for the same function."""
        head = f"{factors['function']}: no package under key {self.package.key}"
        if self.store is None or not self.store.cheap_listing:
            return head
        prefix = self.package.key.rsplit("-", 1)[0] + "-"
        try:
            for other in self.store.list():
                if not other.startswith(prefix) or other == self.package.key:
                    continue
                data = self.store.get(other)
                if data is None:
                    continue
                try:
                    meta = format.decode(data).meta
                except PackageError:
                    continue
                old = meta.get("factors", {})
                if old.get("function") != factors["function"]:
                    continue
                reasons = keys.explain_factor_change(old, factors)
                if reasons and set(keys.changed_factor_names(old, factors)) <= {"closure"}:
                    return (f"{head}; packages under this name belong to other functions made "
                            f"by the same code (what it closes over differs)")
                if reasons:
                    return f"{head}; a package for it exists but {'; '.join(reasons)}"
        except StoreError:
            pass
        return head + " (first compile)"

    # --------------------------------------------------------------- saving

    def _on_artifact(self, backend_id: str) -> None:
        """A backend artifact was recorded or updated (a backward arriving later)."""
        if backend_id in self.package.backend_ids():
            self.package.touch()
            _SAVER.schedule(self)

    def envelope_bytes(self) -> bytes:
        manifest, blobs = self.package.to_manifest()
        meta = {
            "factors": self.package.factors,
            "system": _torch.system_info(),
            "created": self.package.created or time.time(),
            "saved": time.time(),
            "backend_name": self.backend_name,
            "entries": sum(len(f["entries"]) for f in manifest["frames"]),
            "function": self.package.factors.get("function", ""),
            "cpu_isa": _torch.cpu_isa_record(),
            # GPU name/capability/toolkit per device type the graphs use (GPU path: written
            # and unit-checked on CPU only; no GPU run has verified it yet)
            "gpus": {d: _torch.gpu_info(d) for d in sorted(self.package.device_types)
                     if d != "cpu"},
        }
        return format.encode(meta, manifest, blobs, signing_key=self.signing_key)

    def save_now(self, timeout: float | None = None) -> bool:
        """Merge with the stored package and write. Returns True if something was written.

        ``timeout`` bounds the waits for another thread's save of this package and for the
        store's lock (the SIGTERM path: False when either takes longer); None waits."""
        if self.store is None or not self.package.key:
            return False
        if not self._save_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._saving_in = threading.get_ident()
        try:
            version = self.package.version
            if version == self._saved_version:
                return False
            try:
                with self.store.lock(self.package.key,
                                     timeout=60.0 if timeout is None else timeout):
                    self._merge_stored()
                    data = self.envelope_bytes()
                    self.store.put(self.package.key, data)
            except (StoreError, PackageError) as e:
                warn_once(f"store:{self.store.url}", f"cannot save to the cache ({e}); "
                          "the program goes on without saving")
                self._saved_version = version
                return False
            self._saved_version = version
            if self.package.version == version:
                self.package.dirty = False
            STATS.saves += 1
            return True
        finally:
            self._saving_in = None
            self._save_lock.release()

    def _after_fork_in_child(self) -> None:
        """The forked child has only the forking thread: locks another thread held stay
        locked forever, and a lease is the parent's. Start with fresh locks and treat
        what the parent compiled as saved (the parent saves it; the child saves only its
        own new compiles)."""
        self._first_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saving_in = None
        if self._lease is not None:
            # Never close it here: that would unlock the parent's lock file.
            _PARENT_LEASES.append(self._lease)
            self._lease = None
        self._saved_version = self.package.version
        self.package.dirty = False

    def _merge_stored(self) -> None:
        """Fold in entries another process stored under our key since we loaded."""
        assert self.store is not None
        data = self.store.get(self.package.key)
        if data is None:
            return
        try:
            env = format.decode(data, signing_key=self.signing_key)
            other = verify(env, self.main_code, self.module, self.package.factors)
        except PackageError as e:
            log.info("precompile: replacing stored package %s: %s", self.package.key, e)
            return
        self.package.merge(other)


def verify(env: format.Envelope, main_code: types.CodeType, module: str,
           current: dict[str, str]) -> CompilePackage:
    """Everything checked before a decoded package is used: python, torch, platform and GPU
    match this process (``current`` holds its key factors), the function's code is unchanged,
    the manifest is well formed, and no source it inlined has changed. Raises
    IncompatibleError, SourceChangedError or FormatError."""
    stored = env.meta.get("factors", {})
    if not isinstance(stored, dict):
        raise FormatError("package metadata has no key factors")
    for name in ("python", "torch", "platform"):
        if stored.get(name) != current.get(name):
            raise IncompatibleError(
                f"package was written for {name} {stored.get(name)}, this process has "
                f"{current.get(name)}; it will be recompiled for this {name}")
    for device, recorded in (env.meta.get("gpus") or {}).items():
        here = _torch.gpu_info(device)
        if recorded and here != recorded:
            raise IncompatibleError(
                f"package was compiled for {device} {recorded}, this machine has "
                f"{here or 'none'}; it will be recompiled here")
    if stored.get("code") != current.get("code"):
        raise SourceChangedError(f"the source of {stored.get('function', 'the function')} "
                                 "changed since the package was written")
    pkg = CompilePackage.from_manifest(main_code, module, stored, env.manifest, env.blobs)
    check_sources(list(pkg.sources.values()))
    return pkg


# ------------------------------------------------------------ background saver


class _Saver:
    """Writes dirty packages off the caller's thread, soon after they change."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pending: set[Cached] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def schedule(self, cached: Cached) -> None:
        with self._cond:
            self._pending.add(cached)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="precompile-saver",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if not self._cond.wait(timeout=30):
                        self._thread = None
                        return
                item = self._pending.pop()
                self._busy += 1
            try:
                item.save_now()
            except Exception:  # noqa: BLE001 - a failed background save must never crash
                log.warning("precompile: background save failed", exc_info=True)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Save everything pending in the calling thread, then wait for in-flight saves."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            items = list(self._pending) + [c for c in list(_LIVE) if c.package.dirty]
            self._pending.clear()
        for item in set(items):
            try:
                item.save_now(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001
                log.warning("precompile: save failed", exc_info=True)
        with self._cond:
            while self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(timeout=left)

    def save_interrupted(self, timeout: float) -> None:
        """Save what is dirty from a signal handler, waiting at most ``timeout`` seconds.

        The handler runs in the main thread between two bytecodes of whatever it
        interrupted, which may hold a package's save lock, this saver's condition, a store
        lock or a logging lock. So the handler takes no lock: a helper thread saves every
        dirty package except the one the interrupted thread is saving, and the handler
        waits for it with a bound. A save cut short leaves the previous package whole
        (writes are atomic)."""
        interrupted = threading.get_ident()
        deadline = time.monotonic() + timeout

        def save_all() -> None:
            for item in list(_LIVE):
                if item._saving_in == interrupted or not item.package.dirty:
                    continue
                try:
                    item.save_now(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001
                    log.warning("precompile: save on SIGTERM failed", exc_info=True)

        helper = threading.Thread(target=save_all, name="precompile-sigterm-save", daemon=True)
        helper.start()
        helper.join(timeout)


_SAVER = _Saver()
_PARENT_LEASES: list[contextlib.ExitStack] = []  # kept open, never released, in a child
_HOOKS_INSTALLED = False
_TERMINATING = False


def _after_fork_in_child() -> None:
    """A forked child (os.fork, multiprocessing's fork, Pool workers) inherits the saver's
    state and every lock in whatever state another thread held it; without this its exit
    (or SIGTERM from Pool.terminate) waits forever on a save running in the parent."""
    global _TERMINATING
    _TERMINATING = False
    _SAVER._reset()
    for item in list(_LIVE):
        item._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _install_exit_hooks() -> None:
    """Save at normal exit and on SIGTERM (torchrun, xdist, schedulers stop processes so)."""
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(flush)
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        global _TERMINATING
        if not _TERMINATING:  # a second SIGTERM while saving goes straight on
            _TERMINATING = True
            _SAVER.save_interrupted(_SIGTERM_SAVE_S)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        pass


def _signing_key(explicit: str | bytes | None = None) -> bytes | None:
    """The HMAC key: an explicit argument, else $PRECOMPILE_SIGNING_KEY, else None.

    An explicit empty key is an error, not "no signing": it used to switch off the key set in
    the environment without a word, and a package written or accepted unsigned by mistake is
    exactly what signing is there to prevent.
    """
    if explicit is None:
        return settings.signing_key()
    if not explicit:
        raise SettingError("signing_key is empty, which would disable PRECOMPILE_SIGNING_KEY; "
                           "pass the key, or leave signing_key out (None) to use the "
                           "environment's. To run without signing, unset "
                           "PRECOMPILE_SIGNING_KEY")
    return explicit.encode() if isinstance(explicit, str) else bytes(explicit)


# --------------------------------------------------------------- public API


def cached(fn: Any = None, *, cache_dir: Any = None, backend: Any = "inductor",
           store: Any = None, strict: bool | None = None, eager_backward: bool = True,
           single_flight: bool = True, wait_timeout: float | None = None,
           signing_key: str | bytes | None = None, **compile_kwargs: Any) -> Any:
    """``torch.compile`` with a warm-start cache.

    Use as ``@precompile.cached``, ``@precompile.cached(cache_dir=...)``, or on what
    ``torch.compile`` returned (its backend and options are kept). ``compile_kwargs`` are
    ``torch.compile``'s (``mode``, ``options``, ``dynamic``, ``fullgraph``).
    ``strict=True`` (or ``PRECOMPILE_STRICT=1``) raises on a miss instead of compiling.
    ``PRECOMPILE_DISABLE=1`` makes this plain ``torch.compile``.
    ``single_flight`` (default on): when several processes miss the same package at once,
    one compiles and saves it right away, the others wait up to ``wait_timeout`` seconds
    (``$PRECOMPILE_WAIT_TIMEOUT``, default 600) and load it; a waiter whose leader dies
    takes over. ``signing_key`` (or ``$PRECOMPILE_SIGNING_KEY``): sign packages written and
    refuse unsigned ones.
    """
    if fn is None:
        return functools.partial(
            cached, cache_dir=cache_dir, backend=backend, store=store, strict=strict,
            eager_backward=eager_backward, single_flight=single_flight,
            wait_timeout=wait_timeout, signing_key=signing_key, **compile_kwargs)
    if settings.or_default(lambda: settings.flag(settings.DISABLE), False, strict=False):
        return fn if _torch.unwrap_compiled(fn) is not None else torch.compile(
            fn, backend=backend, **compile_kwargs)
    policy = Policy.resolve(cache_dir=cache_dir, store=store, strict=strict,
                            eager_backward=eager_backward, single_flight=single_flight,
                            wait_timeout=wait_timeout, signing_key=signing_key)
    return _wrap(fn, backend, compile_kwargs, policy)


def _wrap(fn: Any, backend: Any, compile_kwargs: dict[str, Any], policy: Policy,
          preloaded: format.Envelope | None = None) -> Any:
    """Build the Cached machinery for ``fn`` (possibly what torch.compile returned)."""
    unknown = set(compile_kwargs) - {"mode", "options", "dynamic", "fullgraph"}
    if unknown:
        raise TypeError(f"precompile.cached got unexpected arguments {sorted(unknown)}")
    parts = _torch.unwrap_compiled(fn)
    if parts is not None:
        target, backend_obj = parts.original, parts.backend_obj
        fullgraph = compile_kwargs.get("fullgraph", parts.fullgraph)
        dynamic = compile_kwargs.get("dynamic", parts.dynamic)
    else:
        target = fn
        dynamic = compile_kwargs.get("dynamic")
        fullgraph = bool(compile_kwargs.get("fullgraph", False))
        backend_obj = _torch.make_backend(backend, compile_kwargs.get("mode"),
                                          compile_kwargs.get("options"), dynamic)
    impl = Cached(target, backend_obj=backend_obj, fullgraph=fullgraph, dynamic=dynamic,
                  policy=policy, preloaded=preloaded)
    return _front(impl)


def _front(impl: Cached) -> Any:
    """What the user holds: an nn.Module for modules, a function otherwise."""
    compiled = impl.compiled(impl.target)
    if isinstance(impl.target, torch.nn.Module):
        inner_forward = compiled.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            return impl.call(inner_forward, args, kwargs)

        compiled.forward = forward
        # On the OptimizedModule itself, not (through its __setattr__) on the user's module:
        # copy.deepcopy / pickle / state_dict of the user's module then never meet it, and a
        # copy is what plain torch.compile's copy is (OptimizedModule.__reduce__).
        object.__setattr__(compiled, "_precompile", impl)
        return compiled

    @functools.wraps(impl.target if callable(impl.target) else compiled)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return impl.call(compiled, args, kwargs)

    wrapper._precompile = impl  # type: ignore[attr-defined]
    return wrapper


def _impl_of(obj: Any) -> Cached:
    impl = getattr(obj, "_precompile", None)
    if not isinstance(impl, Cached):
        raise PackageError("precompile.save needs what precompile.cached or precompile.load "
                           "returned (it records compiles); wrap your function with "
                           "precompile.cached first")
    return impl


def save(compiled: Any, path: str | os.PathLike[str]) -> str:
    """Write one self-contained package file with every frame ``compiled`` compiled so far."""
    impl = _impl_of(compiled)
    if not impl.package.key:
        raise PackageError("nothing compiled yet: call the function at least once before "
                           "precompile.save")
    data = impl.envelope_bytes()
    path = os.fspath(path)
    try:
        write_atomically(os.path.dirname(os.path.abspath(path)), path, data, mode=0o644)
    except OSError as e:
        raise StoreError(f"cannot write package file {path}: {e.strerror}") from e
    return path


def load(fn_or_module: Any, path: str | os.PathLike[str], *, backend: Any = None,
         strict: bool | None = None, cache_dir: Any = None, store: Any = None,
         signing_key: str | bytes | None = None, **compile_kwargs: Any) -> Any:
    """A callable for ``fn_or_module`` whose first call runs the package file's code.

    Raises FormatError/IntegrityError for a bad file, IncompatibleError for another python or
    torch, SourceChangedError when the code changed. New compiles are saved only if
    ``cache_dir``/``store`` is given.
    """
    try:
        with open(os.fspath(path), "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise StoreError(f"cannot read package file {path}: {e.strerror}") from e
    env = format.decode(data, signing_key=_signing_key(signing_key))
    parts = _torch.unwrap_compiled(fn_or_module)
    code, module = main_code(parts.original if parts else fn_or_module)
    verify(env, code, module, {**keys.system_factors(), "code": keys.code_fingerprint(code)})
    if backend is None:
        backend = env.meta.get("backend_name") or "inductor"
    policy = Policy.resolve(cache_dir=cache_dir, store=store, env_store=False, strict=strict,
                            signing_key=signing_key)
    return _wrap(fn_or_module, backend, compile_kwargs, policy, preloaded=env)


def flush(timeout: float | None = None) -> None:
    """Write every package with unsaved compiles now (also runs at exit and on SIGTERM)."""
    _SAVER.flush(timeout)


def stats() -> dict[str, Any]:
    """Counters for this process: hits, misses, saves, bypasses, frames_traced, reasons."""
    return STATS.as_dict()


# The CLI's names for these until it imports them from names.py.
_main_code = main_code
_function_label = function_label
