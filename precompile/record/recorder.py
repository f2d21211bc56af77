"""The recorder: Dynamo's package protocol, filling a :class:`~precompile.package.model.Package`.

Dynamo drives a recording object while it compiles (``torch._dynamo.optimize(...,
package=obj)``): ``code_context`` around each frame, then ``add_import_source``,
``add_resume_function``, ``add_backend_id``, ``add_guarded_code``, ``add_inlined_source``,
``bypass_current_entry``, and ``guard_filter`` / ``on_guard_fail`` as callbacks.
:class:`CompilePackage` implements that protocol and decides what can be stored: an entry
whose artifacts, globals or constants another process could not rebuild is a *bypass*,
with its reason, never a guess. Every step runs inside the user's call, so none raises:
``pending_entry.py`` holds what one frame's compile told the recorder so far and reports
the entries that end up bypasses.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from .. import _torch
from . import constant_calls, first_step, module_hooks
from ..package import keys
from . import storable
from ..identity.bytecode import code_with_refs, rename_globals
from ..package.artifacts import BackendArtifact, PrecompileContext
from ..counters import STATS
from ..package.model import (ROLE_MAIN, ROLE_RESUME, ROLE_USER, FrameRecord, GuardedEntry, Package,
                             merge)
from ..identity.names import code_fingerprint, module_globals
from .pending_entry import PendingEntry, never_raises, report_bypass
from .recorder_hook import KeptByDynamo

log = logging.getLogger("precompile")

__all__ = ["CompilePackage"]


def _keep_all(entries: Sequence[Any]) -> list[bool]:
    """The guard filter's answer when it fails: every guard kept, as plain torch.compile."""
    return [True] * len(entries)


# Code objects Dynamo decided to run eagerly, process-wide. Dynamo reuses a resume function's
# code for the same graph break in another compile (another package, e.g. every optimizer's
# ``step`` wrapper) and never traces a skipped code again, so a package that only meets it
# as a resume function learns from here that it is skipped.
_DYNAMO_SKIPS: set[types.CodeType] = set()


class CompilePackage(KeptByDynamo, Package):
    """The package of one function, filled in while Dynamo compiles it (Dynamo's package
    protocol). Dynamo, the background saver and the first call reach it from several
    threads: every change happens under ``lock`` and bumps ``version``. Copies of a compiled
    module share it, pickles drop it (see ``recorder_hook.py``)."""

    def __init__(self, main_code: types.CodeType, module: str, key: str,
                 factors: dict[str, str], *, eager_backward: bool = True,
                 capture_kernels: bool = False, skip_on_soft_failure: bool = True) -> None:
        super().__init__(main_code, module, key, dict(factors))
        self.eager_backward = eager_backward
        self.capture_kernels = capture_kernels
        # Without fullgraph, Dynamo answers a frame it cannot compile by running it eagerly
        # for good (convert_frame.ConvertFrame); with fullgraph the error reaches the caller.
        self.skip_on_soft_failure = skip_on_soft_failure
        # C++ kernel libraries recorded here: path relative to the Inductor cache dir ->
        # absolute path, read into ``kernel_blobs`` when a save gathers them
        self.kernel_paths: dict[str, str] = {}
        if not eager_backward:
            _torch.bundle_lazy_backwards()
        self.dirty = False
        self.version = 0  # bumps on every change; a save records the version it wrote
        self.lock = threading.RLock()
        self._by_code: dict[types.CodeType, FrameRecord] = {}
        self._resume_names: dict[str, str] = {}  # dynamo's global name -> stored name
        self._pending: list[PendingEntry] = []
        self._context = PrecompileContext.get()
        self._artifact_generation = -1  # the context's generation last compared with
        self.add_frame(FrameRecord(ROLE_MAIN, module, main_code.co_qualname,
                                   code_fingerprint(main_code), main_code))

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
        scope = self._frame_globals(frame)
        before = frozenset(scope) if scope is not None else frozenset()
        pending = PendingEntry(frame, before)
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
            stack.enter_context(_torch.recording_state_inits(self._note_state_init))
            stack.enter_context(_torch.recording_constant_calls(self._note_constant_call))
            if self.capture_kernels:
                stack.enter_context(_torch.no_precompiled_headers())
            stack.enter_context(_torch.recording_kernel_libraries(self.capture_kernels, libs))
            yield

    @never_raises(None)
    def _note_state_init(self, optimizer: Any, source: str, args: list[list[Any]]) -> None:
        """Dynamo is about to create ``optimizer``'s state while tracing (first_step.py)."""
        if self.current_entry is not None:
            self.current_entry.optimizer_calls.append(
                (optimizer, source, args, _torch.optimizer_state_size(optimizer)))

    @never_raises(None)
    def _note_constant_call(self, global_name: str, fn: Any, args: list[Any] | None,
                            kwargs: dict[str, Any] | None, value: Any) -> None:
        """Dynamo answered a marked-constant call into ``global_name`` (constant_calls.py)."""
        if self.current_entry is not None:
            self.current_entry.constant_calls.setdefault(global_name, []).append(
                constant_calls.record(fn, args, kwargs, value, global_name))

    def _note_outcome(self, pending: PendingEntry, error: BaseException | None) -> None:
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
    def current_entry(self) -> PendingEntry | None:
        """The entry of the innermost frame Dynamo is compiling for this package, if any."""
        return self._pending[-1] if self._pending else None

    @never_raises(None)
    def add_import_source(self, alias: str, module_name: str) -> None:
        if self.current_entry is not None:
            self.current_entry.import_sources[alias] = module_name

    @never_raises(None)
    def add_resume_function(self, python_code: types.CodeType, python_module: str,
                            function_name: str) -> None:
        stored = f"{function_name}_pc{uuid.uuid4().hex[:12]}"
        with self.lock:
            self._resume_names[function_name] = stored
        frame = FrameRecord(ROLE_RESUME, python_module, python_code.co_qualname,
                            code_fingerprint(python_code), python_code, global_name=stored,
                            skipped=python_code in _DYNAMO_SKIPS)
        self.add_frame(frame, python_code)

    @never_raises(None)
    def add_backend_id(self, backend_id: str, backend: Any | None = None) -> None:
        if self.current_entry is not None:
            self.current_entry.backend_ids.append(backend_id)
        if backend is not None:
            self._context.record_compiled_fn(backend_id, backend)
        refusal = _torch.take_cache_refusal()
        if refusal is not None:
            self._context.record_refusal(backend_id, f"AOTAutograd's cache refused it ({refusal})")

    @never_raises(None)
    def bypass_current_entry(self) -> None:
        """Dynamo will not let this compile be stored. Reported now: torch 2.15 drops the
        recorder from the compile right after (no ``add_guarded_code`` follows)."""
        reason = _torch.take_guard_failure()
        if self.current_entry is not None:
            self.current_entry.bypass_reason = (
                f"Dynamo could not serialize this frame's guards ({reason})" if reason else
                "Dynamo declined to package this compile (its log says why: "
                "'Detected a package bypass')")
            report_bypass(self, self.current_entry)

    bypass_current_compile = bypass_current_entry  # the protocol's name from torch 2.15 on

    @never_raises(None)
    def update_device_type(self, graph: Any) -> None:
        for node in getattr(graph, "nodes", ()):
            val = node.meta.get("example_value") if hasattr(node, "meta") else None
            device = getattr(val, "device", None)
            if device is not None:
                self.device_types.add(device.type)

    @never_raises(None)
    def add_inlined_source(self, sources: Sequence[types.CodeType]) -> None:
        resume_codes = {f.code for f in self.frames if f.role == ROLE_RESUME}
        for code in sources:
            if code in resume_codes:
                continue
            rng = keys.source_range_for(code)
            if rng is not None:
                with self.lock:
                    self.sources[(rng.module, rng.qualname, rng.first_line)] = rng

    @never_raises(None)
    def add_guarded_code(self, guards_state: bytes, dynamo_code: types.CodeType) -> None:
        pending = self.current_entry
        if pending is None:
            return
        if pending.bypass_reason is None:
            pending.bypass_reason = self._unstorable_reason(pending, dynamo_code)
        if pending.bypass_reason is not None:
            report_bypass(self, pending)
            return
        sha = hashlib.sha256(guards_state).hexdigest()
        with self.lock:
            # Dynamo numbers resume functions per process; give them unique stored names so a
            # later process's own resume functions can never shadow ours.
            dynamo_code = rename_globals(dynamo_code, self._resume_names)
        stored_code = code_with_refs(dynamo_code)
        if isinstance(stored_code, str):
            pending.bypass_reason = stored_code
            report_bypass(self, pending)
            return
        dynamo_code = stored_code
        entry = GuardedEntry(sha, dynamo_code, list(pending.backend_ids),
                             dict(pending.import_sources), list(pending.identity_checks),
                             _torch.take_guard_tree(),
                             inference_mode=torch.is_inference_mode_enabled(),
                             state_inits=first_step.state_inits(pending.optimizer_calls),
                             constant_calls=storable.constant_globals(dynamo_code, pending))
        with self.lock:
            self._take_artifacts(entry.backend_ids)
            self.guard_blobs[sha] = guards_state
            pending.frame.entries.append(entry)
            pending.frame.skipped = False
            pending.added.append(entry)
            self.touch()

    def _unstorable_reason(self, pending: PendingEntry, dynamo_code: types.CodeType) -> str | None:
        """Why this entry could not run in another process, or None if it can (adding the
        globals Dynamo placed for it to its import sources)."""
        why = storable.artifact_problem(self._context, pending.backend_ids,
                                        lazy_backward=not self.eager_backward)
        scope = self._frame_globals(pending.frame)
        if why is not None or scope is None:
            return why
        known = (set(pending.backend_ids) | set(pending.import_sources) | set(self._resume_names)
                 | self.resume_names() | pending.globals_before)
        return storable.placed_globals(dynamo_code, scope, known, pending.import_sources,
                                       pending.constant_calls, pending.globals_sources)

    def _frame_globals(self, frame: FrameRecord) -> dict[str, Any] | None:
        """The globals a frame runs in: its module's (``names.module_globals``: a spawned
        rank's ``__mp_main__`` functions read a copy), or the main function's own
        (``main_globals``, for generated code no module owns)."""
        if frame.role == ROLE_MAIN and self.main_globals is not None:
            return self.main_globals
        mod = sys.modules.get(frame.module)
        return module_globals(mod) if mod is not None else None

    @never_raises(None)
    def on_guard_fail(self, reason: str, code: types.CodeType) -> None:
        """An entry's guards failed, so Dynamo recompiles: keep the failing guard."""
        frame = self._by_code.get(code)
        name = frame.qualname if frame is not None else code.co_qualname
        STATS.note_recompile(f"{name}: {reason.strip()}")
        log.info("precompile: %s recompiles: %s", name, reason.strip())

    # -------------------------------------------------------- guard filtering

    @never_raises(_keep_all)
    def guard_filter(self, entries: Sequence[Any]) -> list[bool]:
        """Keep every guard. Identity guards stay in this process's entry (as under plain
        torch.compile) but are stored as fingerprint checks instead (see identity.py)."""
        pending = self.current_entry
        if pending is None:
            return [True] * len(entries)
        checks: list[tuple[str, str, Any]] = []  # (source, guard type, guarded object)
        for e in entries:
            types_ = {e.guard_type, *e.derived_guard_types}
            if types_ & _torch.IDENTITY_GUARD_TYPES:
                pending.live_only.append(_torch.keep_guard_live_only(e))
                if e.has_value:
                    # The unstripped name (``L['self'].act``, not ``self.act``) says
                    # unambiguously whether the object is reached from the call's locals.
                    checks.append((_torch.guard_source_name(e), e.guard_type, e.value))
                    scope = getattr(e.value, "__globals__", None)
                    if isinstance(scope, dict):
                        pending.globals_sources.setdefault(id(scope), _torch.guard_source_name(e))
            elif (e.guard_type == "TYPE_MATCH" and e.has_value
                  and _torch.refused_type_match(e.value)):
                # A class no other process finds by name: checked by fingerprint instead.
                pending.live_only.append(_torch.keep_guard_live_only(e))
                checks.append((f"type({_torch.guard_source_name(e)})", "TYPE_MATCH", type(e.value)))
        pending.identity_checks.extend(storable.identity_checks(checks))
        for e, check in storable.dict_keys_checks(entries):
            pending.live_only.append(_torch.keep_guard_live_only(e))
            pending.identity_checks.append(check)
        pending.identity_checks.extend(module_hooks.hook_checks(entries))
        return [True] * len(entries)

    # ------------------------------------------------------------------ saving

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
