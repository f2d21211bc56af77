"""The package of one function as it lives in this process: filled by the recorder, saved
by the background saver, bound to this process's code objects by an install.

Dynamo, the saver and the first call reach it from several threads: every change happens
under ``lock`` and bumps ``version`` (a save records the version it wrote, and writes again
once it moves). What a save writes but the package does not hold itself, the freshest
backend artifacts (``PrecompileContext``) and the bytes of the kernel libraries recorded,
it takes in :meth:`LivePackage.gather`. Copies of a compiled module share it, pickles drop
it (``recorder_hook.py``). The recorder (``recorder.py``) adds Dynamo's protocol on top.
"""
from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterable
from typing import Any

from ..identity.names import code_fingerprint, module_globals
from ..package.artifacts import BackendArtifact, PrecompileContext
from ..package.model import ROLE_MAIN, FrameRecord, Package, merge
from .recorder_hook import KeptByDynamo


class LivePackage(KeptByDynamo, Package):
    """One function's package in this process, safe to share between threads."""

    def __init__(self, main_code: types.CodeType, module: str, key: str,
                 factors: dict[str, str]) -> None:
        super().__init__(main_code, module, key, dict(factors))
        # C++ kernel libraries recorded here: path relative to the Inductor cache dir ->
        # absolute path, read into ``kernel_blobs`` when a save gathers them
        self.kernel_paths: dict[str, str] = {}
        self.dirty = False
        self.version = 0  # bumps on every change; a save records the version it wrote
        self.lock = threading.RLock()
        self._by_code: dict[types.CodeType, FrameRecord] = {}
        self._context = PrecompileContext.get()
        self._artifact_generation = -1  # the context's generation last compared with
        self.add_frame(FrameRecord(ROLE_MAIN, module, main_code.co_qualname,
                                   code_fingerprint(main_code), main_code), main_code)

    # --------------------------------------------------------------- frames

    def add_frame(self, frame: FrameRecord, code: types.CodeType) -> FrameRecord:
        """Add ``frame`` (or return the one with the same identity) and map ``code`` to it."""
        with self.lock:
            existing = next((f for f in self.frames if f.identity == frame.identity), None)
            if existing is None:
                self.frames.append(frame)
                existing = frame
            self._by_code[code] = existing
            return existing

    def bind_code(self, code: types.CodeType, frame: FrameRecord) -> None:
        """After install: ``code`` (this process's object) runs ``frame``."""
        with self.lock:
            self._by_code[code] = frame

    def touch(self) -> None:
        """Something changed that a save should write."""
        self.dirty = True
        self.version += 1

    def _frame_globals(self, frame: FrameRecord) -> dict[str, Any] | None:
        """The globals a frame runs in: its module's (``names.module_globals``: a spawned
        rank's ``__mp_main__`` functions read a copy), or the main function's own
        (``main_globals``, for generated code no module owns)."""
        if frame.role == ROLE_MAIN and self.main_globals is not None:
            return self.main_globals
        mod = sys.modules.get(frame.module)
        return module_globals(mod) if mod is not None else None

    def _take_artifacts(self, backend_ids: Iterable[str]) -> None:
        for backend_id in backend_ids:
            art = self._context.artifact(backend_id)
            if art is not None:
                self.artifacts[backend_id] = art

    def gather(self) -> None:
        """Take what a save writes from outside the package: the freshest artifact of
        every backend id it uses, and the bytes of the kernel libraries it recorded."""
        with self.lock:
            self._take_artifacts(self.backend_ids())
            for rel, path in self.kernel_paths.items():
                if rel in self.kernel_blobs:
                    continue
                try:
                    with open(path, "rb") as fh:
                        self.kernel_blobs[rel] = fh.read()
                except OSError as e:
                    self.unbundled.add(f"{rel}: {e.strerror}")

    def note_artifact_updates(self) -> bool:
        """Mark the package changed if an artifact it uses arrived or changed since it last
        took them: a backward compiled lazily (``eager_backward=False``) arrives at
        ``.backward()``, after the call that recorded its entry. Polled by the saver and
        after each call; cheap while the context has recorded nothing new."""
        generation = self._context.generation
        if generation == self._artifact_generation:
            return False
        with self.lock:
            self._artifact_generation = generation
            changed = any(_differs(self._context.artifact(b), self.artifacts.get(b))
                          for b in self.backend_ids())
            if changed:
                self.touch()
            return changed

    def merge(self, other: Package) -> int:
        """Fold in what another process stored under this key (see ``model.merge``)."""
        with self.lock:
            return merge(self, other)


# ------------------------------------------------------------------ helpers


def _differs(live: BackendArtifact | None, kept: BackendArtifact | None) -> bool:
    return live is not None and live is not kept and live != kept
