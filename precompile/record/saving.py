"""Saving: serialize a recorder's package and write it, merged with what is stored.

A :class:`PackageWriter` per cached function writes its package under the store's lock for
the key, folding in entries other processes stored since (``model.merge``). The background
:class:`_Saver` thread runs those writes off the caller's thread soon after a package
changes; it also polls live packages for artifacts that arrive after their call (a lazily
compiled backward). ``flush()`` writes everything now, and runs at exit, on SIGTERM, and
never waits on a lock the interrupted thread or a forked child's parent holds.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import types
import weakref
from typing import Any

from cache_backends import CacheBackend

from .. import _torch
from ..format import envelope as format
from ..read import read_path
from ..counters import STATS, warn_once
from ..errors import PackageError, StoreError
from ..read.loading import verify
from ..package.manifest import to_manifest
from .recorder import CompilePackage
from ..read.shared_blobs import put_blobs

log = logging.getLogger("precompile")

_SIGTERM_SAVE_S = 30.0  # how long the SIGTERM handler waits for the last saves
_POLL_S = 1.0  # how often an idle saver looks for artifacts that arrived after their call
_IDLE_EXIT_S = 30.0  # an idle saver thread ends after this long; the next change restarts it


def envelope_bytes(pkg: CompilePackage, backend_name: str | None,
                   signing_key: bytes | None,
                   shared_kernels: dict[str, bytes] | None = None) -> bytes:
    """The package as stored: its manifest and blobs, with the metadata a reader checks.
    Given ``shared_kernels``, the package only names its kernels and this dict receives
    their bytes by digest, for the writer to store once (``shared_blobs``)."""
    with pkg.lock:
        pkg.gather()
        manifest, blobs = to_manifest(pkg, share_kernels=shared_kernels is not None)
        if shared_kernels is not None:
            shared_kernels.update({format.sha256_hex(d): d for d in pkg.kernel_blobs.values()})
    return format.encode(_meta(pkg, manifest, backend_name), manifest, blobs,
                         signing_key=signing_key)


def _meta(pkg: CompilePackage, manifest: dict[str, Any],
          backend_name: str | None) -> dict[str, Any]:
    """What a reader checks before it decodes anything else: the key factors, the system
    and CPU ISA it was written on, the GPUs its graphs were compiled for."""
    return {
        "factors": pkg.factors,
        "system": _torch.system_info(),
        "created": pkg.created or time.time(),
        "saved": time.time(),
        "backend_name": backend_name,
        "entries": sum(len(f["entries"]) for f in manifest["frames"]),
        "function": pkg.factors.get("function", ""),
        "cpu_isa": _torch.cpu_isa_record(),
        # GPU name/capability/toolkit per device type the graphs use (GPU path: written
        # and unit-checked on CPU only; no GPU run has verified it yet)
        "gpus": {d: _torch.gpu_info(d) for d in sorted(pkg.device_types) if d != "cpu"},
    }


class PackageWriter:
    """Writes one cached function's package to its store."""

    def __init__(self, pkg: CompilePackage, store: CacheBackend | None,
                 backend_name: str | None, signing_key: bytes | None) -> None:
        self.package = pkg
        self.store = store
        self.backend_name = backend_name
        self.signing_key = signing_key
        self._save_lock = threading.Lock()
        self._saving_in: int | None = None  # the thread inside save_now, if any
        self._saved_version = 0
        _LIVE.add(self)
        _install_exit_hooks()

    def needs_save(self) -> bool:
        self.package.note_artifact_updates()
        return self.package.dirty

    def envelope_bytes(self) -> bytes:
        return envelope_bytes(self.package, self.backend_name, self.signing_key)

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
            return self._write(self.store, timeout)
        finally:
            self._saving_in = None
            self._save_lock.release()

    def _write(self, store: CacheBackend, timeout: float | None) -> bool:
        version = self.package.version
        if version == self._saved_version:
            return False
        try:
            with store.lock(self.package.key, timeout=60.0 if timeout is None else timeout):
                self._merge_stored(store)
                kernels: dict[str, bytes] = {}
                data = envelope_bytes(self.package, self.backend_name, self.signing_key,
                                      shared_kernels=kernels)
                put_blobs(store, kernels, self.signing_key)  # before the package naming them
                store.put(self.package.key, data)
        except (StoreError, PackageError) as e:
            warn_once(f"store:{store.url}", f"cannot save to the cache ({e}); "
                      "the program goes on without saving")
            self._saved_version = version
            return False
        self._saved_version = version
        if self.package.version == version:
            self.package.dirty = False
        STATS.saves += 1
        return True

    def _merge_stored(self, store: CacheBackend) -> None:
        """Fold in entries another process stored under our key since we loaded."""
        pkg = self.package
        data = store.get(pkg.key)
        if data is None:
            return
        try:
            env = read_path.open_package(data, signing_key=self.signing_key, key=pkg.key)
            other = verify(env, pkg.main_code, pkg.module, pkg.factors)
        except PackageError as e:
            log.info("precompile: replacing stored package %s: %s", pkg.key, e)
            return
        pkg.merge(other)

    def _after_fork_in_child(self) -> None:
        """The forked child has only the forking thread: a save lock another thread held
        stays locked forever. Start with a fresh one and treat what the parent compiled as
        saved (the parent saves it; the child saves only its own new compiles)."""
        self._save_lock = threading.Lock()
        self._saving_in = None
        self._saved_version = self.package.version
        self.package.dirty = False


_LIVE: weakref.WeakSet[PackageWriter] = weakref.WeakSet()


class _Saver:
    """Writes dirty packages off the caller's thread, soon after they change."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pending: set[PackageWriter] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def schedule(self, writer: PackageWriter) -> None:
        with self._cond:
            self._pending.add(writer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="precompile-saver",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _next(self) -> PackageWriter | None:
        """The next writer to run, or None when idle long enough to stop. While idle,
        looks for packages whose artifacts arrived after their call (a lazy backward)."""
        idle_since = time.monotonic()
        while True:
            with self._cond:
                if self._pending:
                    self._busy += 1
                    return self._pending.pop()
                if time.monotonic() - idle_since >= _IDLE_EXIT_S:
                    self._thread = None
                    return None
                if self._cond.wait(timeout=_POLL_S):
                    continue
            self._queue_late_artifacts()

    def _queue_late_artifacts(self) -> None:
        """Queue every package an artifact arrived for after its call (a lazy backward). Each
        package is asked under its own lock, so outside this saver's condition."""
        late = [w for w in list(_LIVE) if w.package.note_artifact_updates()]
        with self._cond:
            self._pending.update(late)

    def _run(self) -> None:
        while (item := self._next()) is not None:
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
        for item in self._take_dirty():
            _save_logged(item, deadline, "save")
        self._wait_idle(deadline)

    def _take_dirty(self) -> set[PackageWriter]:
        """The writers queued for the thread, plus every live one with unsaved changes: at
        exit the thread may never get to them, and a lazy backward may have arrived since."""
        with self._cond:
            items = set(self._pending)
            self._pending.clear()
        return items | {w for w in list(_LIVE) if w.needs_save()}

    def _wait_idle(self, deadline: float | None) -> None:
        """Wait until no background save is running (or ``deadline`` passes): a save the
        thread started must not be cut off by the exit that called ``flush``."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=_seconds_left(deadline))

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
                if item._saving_in == interrupted or not item.needs_save():
                    continue
                _save_logged(item, deadline, "save on SIGTERM")

        helper = threading.Thread(target=save_all, name="precompile-sigterm-save", daemon=True)
        helper.start()
        helper.join(timeout)


def _seconds_left(deadline: float | None) -> float | None:
    """What is left of ``deadline`` (a ``time.monotonic`` value) as a timeout: never below
    zero, and None (wait as long as it takes) when there is no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _save_logged(writer: PackageWriter, deadline: float | None, what: str) -> None:
    """One save by ``deadline`` that never raises: a failed save is logged and the other
    packages still get theirs (this runs at exit and from the SIGTERM handler)."""
    try:
        writer.save_now(_seconds_left(deadline))
    except Exception:  # noqa: BLE001 - one failed save must not stop the others
        log.warning("precompile: %s failed", what, exc_info=True)


_SAVER = _Saver()
_HOOKS_INSTALLED = False
_TERMINATING = False


def flush(timeout: float | None = None) -> None:
    """Write every package with unsaved compiles now."""
    _SAVER.flush(timeout)


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
    try:  # ValueError too outside the main thread, where no handler can be set
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(previous, signum, frame))
    except (ValueError, OSError):
        pass


def _on_sigterm(previous: Any, signum: int, frame: types.FrameType | None) -> None:
    global _TERMINATING
    if not _TERMINATING:  # a second SIGTERM while saving goes straight on
        _TERMINATING = True
        _SAVER.save_interrupted(_SIGTERM_SAVE_S)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
