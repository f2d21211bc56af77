"""CompilePackage: everything Dynamo compiled for one function, as data.

Dynamo drives a recording object while it compiles (``torch._dynamo.optimize(...,
package=obj)``): ``code_context`` around each frame, then ``add_import_source``,
``add_resume_function``, ``add_backend_id``, ``add_guarded_code``, ``add_inlined_source``,
``bypass_current_entry``. :class:`CompilePackage` implements that protocol and keeps:

* frames: every code object Dynamo compiled (the function itself, user functions that ran as
  their own frames, resume functions made at graph breaks), each with all its guarded entries
  (serialized guards + transformed bytecode + the backend ids and import aliases it uses);
* the source ranges Dynamo inlined, to detect edits before installing;
* identity checks: guards that hold an ``id()`` (function/module/class identity) cannot be
  stored, so we store a stable fingerprint of the guarded object and check it at install.

The package is plain data: :meth:`to_manifest` / :meth:`from_manifest` map it to the msgpack
manifest of ``format.py``; installing it is ``install.py``'s job.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import logging
import os
import re
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import _torch, keys
from .context import BackendArtifact, PrecompileContext
from .errors import FormatError
from .format import sha256_hex
from .names import (_code_with_refs, _rename_globals, code_fingerprint, global_names,
                    importable_name, object_fingerprint, resolve_importable)  # noqa: F401 - resolve_importable: re-exported
from .counters import STATS

log = logging.getLogger("precompile")

ROLE_MAIN = "main"  # the decorated function (or the module's forward)
ROLE_USER = "user"  # a user function Dynamo could not inline and compiled as its own frame
ROLE_RESUME = "resume"  # a function Dynamo generated to continue after a graph break


@dataclasses.dataclass
class IdentityCheck:
    """A guard on an object's identity, replaced by a fingerprint check at install time."""

    source: str  # Dynamo's source name, e.g. "G['helper']" or "L['self'].act"
    guard_type: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class GuardedEntry:
    """One compiled version of a frame: guards -> transformed bytecode."""

    guards_sha: str  # blob holding Dynamo's pickled GuardsState
    dynamo_code: types.CodeType
    backend_ids: list[str]
    import_sources: dict[str, str]  # global name -> importable_name() of its value
    identity_checks: list[IdentityCheck]

    @property
    def entry_id(self) -> str:
        return hashlib.sha256(self.guards_sha.encode() + code_fingerprint(
            self.dynamo_code).encode()).hexdigest()[:24]


@dataclasses.dataclass
class FrameRecord:
    """A code object Dynamo compiled, how to find it again, and its guarded entries."""

    role: str
    module: str
    qualname: str
    fingerprint: str  # keys.code_fingerprint of the original code
    code: types.CodeType  # the original code (resume functions: the code to install)
    global_name: str | None = None  # resume functions: the global the bytecode calls
    entries: list[GuardedEntry] = dataclasses.field(default_factory=list)
    skipped: bool = False  # Dynamo found nothing to compile here: skip it next time too

    @property
    def identity(self) -> tuple[str, ...]:
        if self.role == ROLE_RESUME:
            return (self.role, self.module, self.global_name or "")
        return (self.role, self.module, self.qualname, self.fingerprint)


@dataclasses.dataclass
class _Pending:
    """What Dynamo told us about the frame being compiled right now."""

    frame: FrameRecord
    globals_before: frozenset[str]
    import_sources: dict[str, str] = dataclasses.field(default_factory=dict)
    backend_ids: list[str] = dataclasses.field(default_factory=list)
    identity_checks: list[IdentityCheck] = dataclasses.field(default_factory=list)
    bypass_reason: str | None = None
    added: list[GuardedEntry] = dataclasses.field(default_factory=list)  # entries stored
    live_only: list[int] = dataclasses.field(default_factory=list)  # see guard_filter


def _keep_all(entries: Sequence[Any]) -> list[bool]:
    return [True] * len(entries)


_KEEP_ALL = _keep_all


def _never_raises(fallback: Callable[..., Any] | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Dynamo calls the recorder in the middle of compiling the user's frame, so an exception
    here would reach the user's call. A recorder step that fails makes the entry being
    compiled a bypass with the reason (``CompilePackage._recording_failed``) and returns
    ``fallback(*args)`` (or None): the call goes on exactly as under plain torch.compile."""
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def step(self: CompilePackage, *args: Any) -> Any:
            try:
                return method(self, *args)
            except Exception as e:  # noqa: BLE001 - see docstring
                self._recording_failed(method.__name__, e)
                return fallback(*args) if fallback is not None else None
        return step
    return decorate


# Code objects Dynamo decided to run eagerly, process-wide. Dynamo reuses a resume function's
# code for the same graph break in another compile (another package, e.g. every optimizer's
# ``step`` wrapper) and never traces a skipped code again, so a package that only meets it
# as a resume function learns from here that it is skipped.
_DYNAMO_SKIPS: set[types.CodeType] = set()


class CompilePackage:
    """Record of one function's compiled frames (Dynamo's package protocol)."""

    def __init__(self, main_code: types.CodeType, module: str, key: str,
                 factors: dict[str, str], *, eager_backward: bool = True,
                 capture_kernels: bool = False, skip_on_soft_failure: bool = True) -> None:
        self.key = key
        self.factors = dict(factors)
        self.module = module
        self.main_code = main_code
        self.eager_backward = eager_backward
        self.capture_kernels = capture_kernels
        # Without fullgraph, Dynamo answers a frame it cannot compile by running it eagerly
        # for good (convert_frame.ConvertFrame); with fullgraph the error reaches the caller.
        self.skip_on_soft_failure = skip_on_soft_failure
        # C++ kernel libraries the compiled code loads: path relative to the Inductor cache
        # dir -> absolute path here (recorded) or bytes (read from a package)
        self.kernel_paths: dict[str, str] = {}
        self.kernel_blobs: dict[str, bytes] = {}
        if not eager_backward:
            _torch.bundle_lazy_backwards()
        self.frames: list[FrameRecord] = []
        self.sources: dict[tuple[str, str, int], keys.SourceRange] = {}
        self.guard_blobs: dict[str, bytes] = {}
        self.artifacts: dict[str, BackendArtifact] = {}
        self.bypasses: list[str] = []
        self.unbundled: set[str] = set()
        self.device_types: set[str] = set()
        self.created = 0.0
        self.compile_seconds = 0.0  # time Dynamo spent compiling what this package holds
        self.dirty = False
        self.version = 0  # bumps on every change; a save records the version it wrote
        self.lock = threading.RLock()
        self._by_code: dict[types.CodeType, FrameRecord] = {}
        self._resume_names: dict[str, str] = {}  # dynamo's global name -> stored name
        self._pending: list[_Pending] = []
        self.add_frame(FrameRecord(ROLE_MAIN, module, main_code.co_qualname,
                                   code_fingerprint(main_code), main_code))

    # ------------------------------------------------ copies of the user's objects

    def __deepcopy__(self, memo: dict[int, Any]) -> CompilePackage:
        """Dynamo keeps the recorder on the compiled module's context, so ``copy.deepcopy``
        of a compiled module reaches it: the copy compiles into the same record (one package
        per function, whichever instance runs it)."""
        return self

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        """``pickle`` / ``torch.save`` of a compiled module reach the recorder too: it
        unpickles as no recorder, so the loaded module is plain ``torch.compile``'s."""
        return _no_recorder, ()

    # --------------------------------------------------------------- frames

    def add_frame(self, frame: FrameRecord, code: types.CodeType | None = None) -> FrameRecord:
        """Add ``frame`` (or return the one with the same identity) and map ``code`` to it."""
        with self.lock:
            existing = next((f for f in self.frames if f.identity == frame.identity), None)
            if existing is None:
                self.frames.append(frame)
                existing = frame
            self._by_code[code if code is not None else frame.code] = existing
            return existing

    def bind_code(self, code: types.CodeType, frame: FrameRecord) -> None:
        """After install: ``code`` (this process's object) runs ``frame``."""
        with self.lock:
            self._by_code[code] = frame

    def backend_ids(self) -> set[str]:
        return {b for f in self.frames for e in f.entries for b in e.backend_ids}

    def touch(self) -> None:
        """Something changed that a save should write."""
        self.dirty = True
        self.version += 1

    # ------------------------------------------------- Dynamo's package protocol

    def is_initialized(self) -> bool:  # asked by torch only under caching_precompile
        return True

    @contextlib.contextmanager
    def code_context(self, code: types.CodeType) -> Iterator[None]:
        frame = self._by_code.get(code) or self._new_user_frame(code)
        STATS.frames_traced += 1
        if frame.entries:
            for reason in _torch.failed_precompiled_guards(code):
                self.on_guard_fail(reason, code)
        mod = sys.modules.get(frame.module)
        before = frozenset(mod.__dict__) if mod is not None else frozenset()
        pending = _Pending(frame, before)
        self._pending.append(pending)
        libs: list[str] = []
        started = time.perf_counter()
        outcome: BaseException | None = None
        try:
            with self._recording(libs):
                yield
        except BaseException as e:
            outcome = e
            raise
        finally:
            self._pending.pop()
            _torch.forget_live_only(pending.live_only)
            self._note_kernel_libraries(libs)
            with self.lock:
                self.compile_seconds += time.perf_counter() - started
            self._note_outcome(pending, outcome)

    @contextlib.contextmanager
    def _recording(self, libs: list[str]) -> Iterator[None]:
        """What is patched while Dynamo compiles one of our frames."""
        # Make AOTAutograd hand every graph it compiles to the PrecompileContext as one
        # self-contained artifact, whatever the backend's own compiler is (aot_eager too).
        patches = {"bundled_autograd_cache": True, "force_autograd_cache": True}
        if self.eager_backward:
            # Compile the backward with the forward, so the stored artifact is complete even
            # if this process never calls .backward() (see DESIGN in README).
            patches["force_non_lazy_backward_lowering"] = True
        with contextlib.ExitStack() as stack:
            stack.enter_context(_torch.functorch_patch(**patches))
            stack.enter_context(_torch.recording_guards())
            stack.enter_context(_torch.cacheable_graph_calls())
            stack.enter_context(_torch.optimizer_state_as_inputs())
            if self.capture_kernels:
                stack.enter_context(_torch.no_precompiled_headers())
            stack.enter_context(_torch.recording_kernel_libraries(self.capture_kernels, libs))
            yield

    def _note_outcome(self, pending: _Pending, error: BaseException | None) -> None:
        """A frame compiled without an entry: if Dynamo will run it eagerly from now on
        (nothing to compile, or a failure it answers by skipping the frame), record that, so
        a loading process skips it too instead of tracing it again."""
        frame = pending.frame
        if pending.added or pending.bypass_reason is not None:
            return
        if error is not None and not (self.skip_on_soft_failure
                                      and _torch.dynamo_skips_frame_after(error)):
            return
        _DYNAMO_SKIPS.add(frame.code)
        with self.lock:
            if not frame.entries and not frame.skipped:
                frame.skipped = True
                self.touch()
                log.debug("precompile: %s: Dynamo runs it eagerly%s; recorded as skipped",
                          frame.qualname, f" ({type(error).__name__})" if error else "")

    def _note_kernel_libraries(self, paths: list[str]) -> None:
        if not paths:
            return
        root = _torch.inductor_cache_dir()
        with self.lock:
            for path in paths:
                rel = os.path.relpath(path, root)
                if rel.startswith(".."):
                    self.unbundled.add(f"{os.path.basename(path)}: outside the Inductor cache dir")
                else:
                    self.kernel_paths[rel] = path

    def _new_user_frame(self, code: types.CodeType) -> FrameRecord:
        module = inspect.getmodule(code)
        name = module.__name__ if module is not None else "__main__"
        frame = FrameRecord(ROLE_USER, name, code.co_qualname, code_fingerprint(code), code)
        return self.add_frame(frame, code)

    @property
    def _current(self) -> _Pending | None:
        return self._pending[-1] if self._pending else None

    @_never_raises(None)
    def add_import_source(self, alias: str, module_name: str) -> None:
        if self._current is not None:
            self._current.import_sources[alias] = module_name

    @_never_raises(None)
    def add_resume_function(self, python_code: types.CodeType, python_module: str,
                            function_name: str) -> None:
        stored = f"{function_name}_pc{uuid.uuid4().hex[:12]}"
        with self.lock:
            self._resume_names[function_name] = stored
        frame = FrameRecord(ROLE_RESUME, python_module, python_code.co_qualname,
                            code_fingerprint(python_code), python_code, global_name=stored,
                            skipped=python_code in _DYNAMO_SKIPS)
        self.add_frame(frame, python_code)

    @_never_raises(None)
    def add_backend_id(self, backend_id: str, backend: Any | None = None) -> None:
        if self._current is not None:
            self._current.backend_ids.append(backend_id)
        if backend is not None:
            PrecompileContext.get().record_compiled_fn(backend_id, backend)

    @_never_raises(None)
    def bypass_current_entry(self) -> None:
        reason = _torch.take_guard_failure()
        if self._current is not None:
            self._current.bypass_reason = "Dynamo could not serialize this frame's guards" + (
                f" ({reason})" if reason else "")

    @_never_raises(None)
    def update_device_type(self, graph: Any) -> None:
        for node in getattr(graph, "nodes", ()):
            val = node.meta.get("example_value") if hasattr(node, "meta") else None
            device = getattr(val, "device", None)
            if device is not None:
                self.device_types.add(device.type)

    @_never_raises(None)
    def add_inlined_source(self, sources: Sequence[types.CodeType]) -> None:
        resume_codes = {f.code for f in self.frames if f.role == ROLE_RESUME}
        for code in sources:
            if code in resume_codes:
                continue
            rng = keys.source_range_for(code)
            if rng is not None:
                with self.lock:
                    self.sources[(rng.module, rng.qualname, rng.first_line)] = rng

    @_never_raises(None)
    def add_guarded_code(self, guards_state: bytes, dynamo_code: types.CodeType) -> None:
        pending = self._current
        if pending is None:
            return
        if pending.bypass_reason is None:
            pending.bypass_reason = self._unstorable_reason(pending, dynamo_code)
        if pending.bypass_reason is not None:
            self._bypass(pending)
            return
        sha = hashlib.sha256(guards_state).hexdigest()
        with self.lock:
            # Dynamo numbers resume functions per process; give them unique stored names so a
            # later process's own resume functions can never shadow ours.
            dynamo_code = _rename_globals(dynamo_code, self._resume_names)
        stored_code = _code_with_refs(dynamo_code)
        if isinstance(stored_code, str):
            pending.bypass_reason = stored_code
            self._bypass(pending)
            return
        dynamo_code = stored_code
        entry = GuardedEntry(sha, dynamo_code, list(pending.backend_ids),
                             dict(pending.import_sources), list(pending.identity_checks))
        with self.lock:
            self.guard_blobs[sha] = guards_state
            pending.frame.entries.append(entry)
            pending.frame.skipped = False
            pending.added.append(entry)
            self.touch()

    def _recording_failed(self, step: str, error: Exception) -> None:
        """A recorder step raised: never store the entry it belongs to, and say why."""
        reason = f"recording failed in {step} ({type(error).__name__}: {error})"
        log.debug("precompile: %s", reason, exc_info=True)
        pending = self._current
        if pending is None:
            STATS.bypasses += 1
            STATS.note_miss(f"not stored: {reason}")
            return
        first = pending.bypass_reason is None
        if first:
            pending.bypass_reason = reason
        if pending.added:  # stored before a later step failed (recording its inlined sources)
            with self.lock:
                pending.frame.entries = [e for e in pending.frame.entries
                                         if e not in pending.added]
                pending.added.clear()
            self._bypass(pending)
        elif step == "add_guarded_code" and first:
            self._bypass(pending)
        # otherwise add_guarded_code reports the reason when Dynamo gets there

    def _bypass(self, pending: _Pending) -> None:
        reason = f"{pending.frame.qualname}: {pending.bypass_reason}"
        log.info("precompile: not storing an entry of %s", reason)
        STATS.bypasses += 1
        STATS.note_miss(f"not stored: {reason}")
        with self.lock:
            self.bypasses.append(reason)

    def _unstorable_reason(self, pending: _Pending, dynamo_code: types.CodeType) -> str | None:
        """Why this entry could not run in another process, or None if it can."""
        ctx = PrecompileContext.get()
        for backend_id in pending.backend_ids:
            why = ctx.failure(backend_id)
            if why is None and ctx.artifact(backend_id) is None:
                if not self.eager_backward:
                    # A training graph's artifact arrives with its lazily compiled backward;
                    # the entry is written once it does (see Cached._on_artifact).
                    continue
                why = ("the backend produced no storable artifact (precompile stores backends "
                       "that go through AOTAutograd, such as inductor and aot_eager, and "
                       "backend='eager')")
            if why is not None:
                return f"graph {backend_id[:20]}... cannot be stored: {why}"
        mod = sys.modules.get(pending.frame.module)
        if mod is None:
            return None
        known = set(pending.backend_ids) | set(pending.import_sources) | set(self._resume_names)
        for name in global_names(dynamo_code):
            if name in known or name in pending.globals_before or name.startswith("__builtins_dict__"):
                continue
            if name in mod.__dict__:
                # Dynamo put an object into the module's globals for its bytecode
                # (install_global_by_id: a module, or a class to rebuild an output with).
                ref = importable_name(mod.__dict__[name])
                if ref is None:
                    return f"its bytecode needs the runtime-only global {name!r}"
                pending.import_sources[name] = ref
        for name in mod.__dict__.keys() - pending.globals_before - known:
            # Globals only guards read: a namedtuple's ``__new__`` runs in a scope of its
            # own, which Dynamo installs by id to guard what it looks up there.
            if _DYNAMO_BY_ID.match(name) and name not in pending.import_sources:
                ref = _namedtuple_scope_ref(mod.__dict__[name], mod)
                if ref is not None:
                    pending.import_sources[name] = ref
        return None

    @_never_raises(None)
    def on_guard_fail(self, reason: str, code: types.CodeType) -> None:
        """An entry's guards failed, so Dynamo recompiles: keep the failing guard."""
        frame = self._by_code.get(code)
        name = frame.qualname if frame is not None else code.co_qualname
        STATS.note_recompile(f"{name}: {reason.strip()}")
        log.info("precompile: %s recompiles: %s", name, reason.strip())

    # -------------------------------------------------------- guard filtering

    @_never_raises(_KEEP_ALL)
    def guard_filter(self, entries: Sequence[Any]) -> list[bool]:
        """Keep every guard. Identity guards stay in this process's entry (as under plain
        torch.compile) but are stored as fingerprint checks instead (see identity.py)."""
        pending = self._current
        checks: list[tuple[str, str, Any]] = []  # (source, guard type, guarded object)
        for e in entries:
            types_ = {e.guard_type, *e.derived_guard_types}
            if types_ & _torch.IDENTITY_GUARD_TYPES:
                if pending is not None:
                    pending.live_only.append(_torch.keep_guard_live_only(e))
                if pending is not None and e.has_value:
                    # The unstripped name (``L['self'].act``, not ``self.act``) says
                    # unambiguously whether the object is reached from the call's locals.
                    checks.append((_torch.guard_source_name(e), e.guard_type, e.value))
        if pending is not None:
            pending.identity_checks.extend(
                IdentityCheck(source, kind, object_fingerprint(value))
                for source, kind, value in _without_by_id_aliases(checks))
        return [True] * len(entries)

    # ------------------------------------------------------ artifacts for save

    def collect_artifacts(self) -> dict[str, BackendArtifact]:
        """The freshest artifact for every backend id the package uses."""
        ctx = PrecompileContext.get()
        with self.lock:
            for backend_id in self.backend_ids():
                art = ctx.artifact(backend_id)
                if art is not None:
                    self.artifacts[backend_id] = art
            return dict(self.artifacts)

    # --------------------------------------------------------------- manifest

    def to_manifest(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(manifest, blobs) for format.encode. Entries whose artifacts are missing are left
        out, so what is written always installs."""
        artifacts = self.collect_artifacts()
        blobs: dict[str, bytes] = {}
        with self.lock:
            frames = []
            for f in self.frames:
                entries = []
                for e in f.entries:
                    if any(b not in artifacts for b in e.backend_ids):
                        continue
                    blobs[e.guards_sha] = self.guard_blobs[e.guards_sha]
                    entries.append({
                        "guards": e.guards_sha,
                        "code": e.dynamo_code,
                        "backends": e.backend_ids,
                        "imports": e.import_sources,
                        "identity": [c.to_dict() for c in e.identity_checks],
                    })
                frames.append({
                    "role": f.role, "module": f.module, "qualname": f.qualname,
                    "fingerprint": f.fingerprint,
                    "code": f.code if f.role == ROLE_RESUME else None,
                    "global_name": f.global_name, "skipped": f.skipped, "entries": entries,
                })
            used = {b for fr in frames for e in fr["entries"] for b in e["backends"]}
            arts = {}
            for backend_id in sorted(used):
                art = artifacts[backend_id]
                blobs[art.sha256] = art.data
                arts[backend_id] = {"kind": art.kind, "blob": art.sha256,
                                    "has_backward": art.has_backward}
            kernels = []
            for rel in sorted(set(self.kernel_paths) | set(self.kernel_blobs)):
                data = self.kernel_blobs.get(rel)
                if data is None:
                    try:
                        with open(self.kernel_paths[rel], "rb") as fh:
                            data = fh.read()
                    except OSError as e:
                        self.unbundled.add(f"{rel}: {e.strerror}")
                        continue
                    self.kernel_blobs[rel] = data
                blobs[sha256_hex(data)] = data
                kernels.append({"path": rel, "blob": sha256_hex(data)})
            manifest = {
                "key": self.key,
                "compile_seconds": round(self.compile_seconds, 3),
                "kernels": kernels,
                "unbundled_kernels": sorted(self.unbundled),
                "function": self.factors.get("function", ""),
                "frames": frames,
                "artifacts": arts,
                "sources": [r.to_dict() for r in self.sources.values()],
                "devices": sorted(self.device_types),
                "bypasses": list(self.bypasses[-50:]),
            }
        return manifest, blobs

    @classmethod
    def from_manifest(cls, main_code: types.CodeType, module: str, factors: dict[str, str],
                      manifest: dict[str, Any], blobs: dict[str, bytes]) -> CompilePackage:
        """Rebuild a package read from a store. Frames are bound to this process's code
        objects by the installer; until then they are only data.

        The envelope was checksummed, but a manifest can still be malformed (a bug, or a
        tampered file with a recomputed checksum): any shape error is a FormatError.
        """
        try:
            return cls._from_manifest(main_code, module, factors, manifest, blobs)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FormatError(f"package manifest is malformed ({type(e).__name__}: {e})") from None

    @classmethod
    def _from_manifest(cls, main_code: types.CodeType, module: str, factors: dict[str, str],
                       manifest: dict[str, Any], blobs: dict[str, bytes]) -> CompilePackage:
        pkg = cls(main_code, module, _expect(manifest["key"], str), factors)
        pkg.frames = []
        pkg._by_code = {}
        for rng in manifest.get("sources", []):
            r = keys.SourceRange.from_dict(rng)
            for value in (r.module, r.qualname, r.sha256, r.text):
                _expect(value, str)
            _expect(r.last_line, int)
            pkg.sources[(r.module, r.qualname, _expect(r.first_line, int))] = r
        pkg.device_types = {_expect(d, str) for d in manifest.get("devices", [])}
        pkg.compile_seconds = float(_expect(manifest.get("compile_seconds", 0.0), (int, float)))
        for fd in manifest["frames"]:
            role = _expect(fd["role"], str)
            if role not in (ROLE_MAIN, ROLE_USER, ROLE_RESUME):
                raise ValueError(f"unknown frame role {role!r}")
            code = main_code if role == ROLE_MAIN else _expect(fd["code"] or main_code, types.CodeType)
            frame = FrameRecord(role, _expect(fd["module"], str), _expect(fd["qualname"], str),
                                _expect(fd["fingerprint"], str), code,
                                fd.get("global_name"), skipped=bool(fd.get("skipped")))
            if role == ROLE_RESUME:
                pkg._resume_names[_expect(frame.global_name, str)] = frame.global_name
            for ed in fd["entries"]:
                pkg.guard_blobs[ed["guards"]] = _expect(blobs[ed["guards"]], bytes)
                frame.entries.append(GuardedEntry(
                    ed["guards"], _expect(ed["code"], types.CodeType),
                    [_expect(b, str) for b in ed["backends"]],
                    {_expect(k, str): _expect(v, str) for k, v in ed["imports"].items()},
                    [IdentityCheck(_expect(c["source"], str), _expect(c["guard_type"], str),
                                   _expect(c["fingerprint"], str)) for c in ed["identity"]]))
            pkg.frames.append(frame)
            if role == ROLE_MAIN:
                pkg._by_code[main_code] = frame
        for kd in manifest.get("kernels", []):
            rel = _expect(kd["path"], str)
            if os.path.isabs(rel) or ".." in rel.split(os.sep):
                raise ValueError(f"kernel path {rel!r} escapes the cache dir")
            pkg.kernel_blobs[rel] = _expect(blobs[kd["blob"]], bytes)
        pkg.unbundled = {_expect(u, str) for u in manifest.get("unbundled_kernels", [])}
        for backend_id, ad in manifest["artifacts"].items():
            pkg.artifacts[_expect(backend_id, str)] = BackendArtifact(
                backend_id, _expect(ad["kind"], str), _expect(blobs[ad["blob"]], bytes),
                bool(ad["has_backward"]))
        ctx = PrecompileContext.get()
        for art in pkg.artifacts.values():
            ctx.add(art)
        return pkg

    def merge(self, other: CompilePackage) -> int:
        """Add ``other``'s frames, entries and artifacts that this package lacks.
        Returns the number of entries added. Used to merge with what another process stored."""
        added = 0
        with self.lock:
            for of in other.frames:
                mine = next((f for f in self.frames if f.identity == of.identity), None)
                if mine is None:
                    mine = dataclasses.replace(of, entries=[])
                    self.frames.append(mine)
                    if of.role == ROLE_RESUME and of.global_name:
                        self._resume_names.setdefault(of.global_name, of.global_name)
                have = {e.entry_id for e in mine.entries}
                for e in of.entries:
                    if e.entry_id not in have:
                        mine.entries.append(e)
                        self.guard_blobs[e.guards_sha] = other.guard_blobs[e.guards_sha]
                        added += 1
                # Dynamo skips a frame only while nothing compiled for it
                mine.skipped = not mine.entries and (mine.skipped or of.skipped)
            for backend_id, art in other.artifacts.items():
                cur = self.artifacts.get(backend_id)
                if cur is None or (art.has_backward and not cur.has_backward):
                    self.artifacts[backend_id] = art
            for k, r in other.sources.items():
                self.sources.setdefault(k, r)
            for rel, data in other.kernel_blobs.items():
                self.kernel_blobs.setdefault(rel, data)
            self.device_types |= other.device_types
            self.compile_seconds = max(self.compile_seconds, other.compile_seconds)
        return added


# ------------------------------------------------------------------ helpers


def _no_recorder() -> None:
    """What a pickled CompilePackage or RecorderHook unpickles as: nothing (see
    ``CompilePackage.__reduce__``)."""
    return None


class RecorderHook:
    """A recorder method handed to Dynamo as a callback (guard filter, guard failures).
    Copies share it, like the recorder; pickled, it is no callback at all, as the recorder
    is no recorder."""

    __slots__ = ("method",)

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method

    def __call__(self, *args: Any) -> Any:
        return self.method(*args)

    def __deepcopy__(self, memo: dict[int, Any]) -> RecorderHook:
        return self

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _no_recorder, ()


def _expect(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind):
        name = getattr(kind, "__name__", None) or " or ".join(k.__name__ for k in kind)
        raise TypeError(f"expected {name}, found {type(value).__name__}")
    return value


# The names ``OutputGraph.install_global_by_id`` gives: ``{prefix}_{id(value)}_c{compile_id}``.
_DYNAMO_BY_ID = re.compile(r"^___\w+_\d+_c\d+$")
# A guard source rooted at such a global, also with two underscores (``__optimizer_<id>``,
# ``__optimizer_state_tensor``): ``G['__optimizer_1_2_c0']()``.
_BY_ID_SOURCE = re.compile(r"^G\['__\w+_\d+_c\d+'\]")


def _without_by_id_aliases(checks: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """Drop identity checks on a global Dynamo named by ``id()`` whose object another check
    already pins down through a source that exists in every process.

    Dynamo keeps, for example, a weakref to a compiled optimizer in a global
    ``__optimizer_<id>_<id>_c<n>`` (variables/optimizer.py: to drop the code when the optimizer
    dies) and guards ``G['__optimizer_...']()`` *is* that optimizer, which is also
    ``L['self']``. Such a global means nothing in another process, but the object is still
    checked through ``L['self']``. A by-id source with no such alias is kept, so its entry is
    not installed elsewhere (never a guess).
    """
    kept = [c for c in checks if not _BY_ID_SOURCE.match(c[0])]
    pinned = {id(value) for _, _, value in kept}
    return kept + [c for c in checks if _BY_ID_SOURCE.match(c[0]) and id(c[2]) not in pinned]


def _namedtuple_scope_ref(scope: Any, mod: types.ModuleType) -> str | None:
    """A reference to ``scope`` if it is the globals of a namedtuple class's ``__new__``
    (``collections.namedtuple`` evaluates ``__new__`` in a namespace named
    ``namedtuple_<typename>``) and that class can be found from ``mod`` by name."""
    if not isinstance(scope, dict) or not str(scope.get("__name__", "")).startswith("namedtuple_"):
        return None
    typename = scope["__name__"][len("namedtuple_"):]
    candidates = [mod.__dict__.get(typename)] + [
        getattr(v, typename, None) for v in mod.__dict__.values() if isinstance(v, types.ModuleType)]
    for cls in candidates:
        new = getattr(cls, "__new__", None)
        if isinstance(cls, type) and getattr(new, "__globals__", None) is scope:
            ref = importable_name(cls)
            if ref is not None:
                return f"{ref}.__new__.__globals__"
    return None
