"""PrecompileContext: the process-wide record of backend artifacts compiled so far.

Dynamo gives every compiled graph a backend id (``__compiled_fn_<n>_<uuid>``). The backend
(AOTAutograd for inductor/aot_eager; the graph itself for eager) produces an artifact that a
later process can load instead of compiling. This context collects those artifacts as bytes,
says which are complete (an inference graph, or a training graph whose backward is compiled),
and counts every change (``generation``), so a package can see that an artifact it uses was
updated in place (a backward arriving later) and be saved again.

Artifacts are serialized the moment they are recorded: bytes cannot be mutated behind our
back, and a background save never has to touch live torch objects.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, ClassVar

from .. import _torch
from ..errors import NotCapturableError
from ..format.envelope import sha256_hex

log = logging.getLogger("precompile")


@dataclasses.dataclass(frozen=True)
class BackendArtifact:
    """One compiled graph, ready to store."""

    backend_id: str
    kind: str  # _torch.KIND_*
    data: bytes
    has_backward: bool  # a training graph whose backward is compiled and included

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def completeness(self) -> str:
        return "forward+backward" if self.has_backward else "forward"


class PrecompileContext:
    """Singleton (``PrecompileContext.get()``); thread-safe."""

    _instance: ClassVar[PrecompileContext | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._artifacts: dict[str, BackendArtifact] = {}
        self._failures: dict[str, str] = {}
        self.generation = 0  # bumps on every artifact recorded or updated

    @classmethod
    def get(cls) -> PrecompileContext:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = PrecompileContext()
                _torch.subscribe_backend_artifacts(cls._instance.record_torch_artifact)
            return cls._instance

    # ------------------------------------------------------------- recording

    def record_torch_artifact(self, backend_id: str, artifact: Any) -> None:
        """Hook target: AOTAutograd recorded (or updated) the artifact for ``backend_id``."""
        try:
            kind, data, has_bw = _torch.serialize_backend(artifact)
        except NotCapturableError as e:
            log.info("precompile: cannot store backend %s: %s", backend_id, e)
            with self._lock:
                self._failures[backend_id] = str(e)
            return
        self._store(BackendArtifact(backend_id, kind, data, has_bw))

    def record_compiled_fn(self, backend_id: str, compiled_fn: Any) -> None:
        """Dynamo reported the callable it will run for ``backend_id``.

        For AOTAutograd backends the artifact already arrived through the hook. For
        ``backend="eager"`` the callable *is* the graph, so store that.
        """
        with self._lock:
            if backend_id in self._artifacts:
                return
        try:
            kind, data, has_bw = _torch.serialize_backend(compiled_fn)
        except NotCapturableError:
            # Not a graph: an AOTAutograd wrapper whose artifact arrives through the hook
            # (with a lazily compiled backward, only at .backward()), or a custom backend's
            # opaque callable. The package tells the two apart when the frame finishes.
            return
        self._store(BackendArtifact(backend_id, kind, data, has_bw))

    def record_refusal(self, backend_id: str, why: str) -> None:
        """The backend compiled ``backend_id`` but said why it cannot produce an artifact
        (AOTAutograd's cache refused the graph); kept unless an artifact arrives anyway."""
        with self._lock:
            if backend_id not in self._artifacts:
                self._failures[backend_id] = why

    def add(self, artifact: BackendArtifact) -> None:
        """Register an artifact read from a package, so a later save can include it."""
        with self._lock:
            self._artifacts.setdefault(artifact.backend_id, artifact)

    def _store(self, artifact: BackendArtifact) -> None:
        with self._lock:
            previous = self._artifacts.get(artifact.backend_id)
            self._artifacts[artifact.backend_id] = artifact
            self._failures.pop(artifact.backend_id, None)
            self.generation += 1
        if previous is not None and previous.data != artifact.data:
            log.debug("precompile: artifact %s updated in place (%s)", artifact.backend_id,
                      artifact.completeness)

    # ---------------------------------------------------------------- reading

    def artifact(self, backend_id: str) -> BackendArtifact | None:
        with self._lock:
            return self._artifacts.get(backend_id)

    def failure(self, backend_id: str) -> str | None:
        with self._lock:
            return self._failures.get(backend_id)
