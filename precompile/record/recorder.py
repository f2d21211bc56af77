"""The recorder: Dynamo's package protocol, filling a :class:`~precompile.package.model.Package`.

Dynamo drives a recording object while it compiles (``torch._dynamo.optimize(...,
package=obj)``): ``code_context`` around each frame, then ``add_import_source``,
``add_resume_function``, ``add_backend_id``, ``add_guarded_code``, ``add_inlined_source``,
``bypass_current_entry``, and ``guard_filter`` / ``on_guard_fail`` as callbacks.
:class:`CompilePackage` implements that protocol and decides what can be stored: an entry
whose artifacts, globals or constants another process could not rebuild is a *bypass*,
with its reason, never a guess. Every step runs inside the user's call, so none raises:
``pending_entry.py`` holds what one frame's compile told the recorder so far and reports
the entries that end up bypasses; ``guard_filter.py`` says which guards are stored as
fingerprint checks. The package the protocol fills, its lock and version and what a save
gathers, is ``live_package.py``: record -> save (``saving.py``) -> install.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import time
import types
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .. import _torch
from ..counters import STATS
from ..identity.bytecode import code_with_refs, rename_globals
from ..identity.names import code_fingerprint
from ..package import keys
from ..package.model import ROLE_RESUME, ROLE_USER, FrameRecord, GuardedEntry
from . import constant_calls, first_step, guard_filter, storable
from .live_package import LivePackage
from .pending_entry import PendingEntry, never_raises, report_bypass, runs_eagerly_after

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


class CompilePackage(LivePackage):
    """The package of one function, filled in while Dynamo compiles it (Dynamo's package
    protocol); what it holds, and how a save takes it, is ``live_package.py``."""

    def __init__(self, main_code: types.CodeType, module: str, key: str,
                 factors: dict[str, str], *, eager_backward: bool = True,
                 capture_kernels: bool = False, skip_on_soft_failure: bool = True) -> None:
        super().__init__(main_code, module, key, factors)
        self.eager_backward = eager_backward
        self.capture_kernels = capture_kernels
        # Without fullgraph, Dynamo answers a frame it cannot compile by running it eagerly
        # for good (convert_frame.ConvertFrame); with fullgraph the error reaches the caller.
        self.skip_on_soft_failure = skip_on_soft_failure
        if not eager_backward:
            _torch.bundle_lazy_backwards()
        self._resume_names: dict[str, str] = {}  # dynamo's global name -> stored name
        self._pending: list[PendingEntry] = []

    # ------------------------------------------------- Dynamo's package protocol

    def is_initialized(self) -> bool:  # asked by torch only under caching_precompile
        return True

    @contextlib.contextmanager
    def code_context(self, code: types.CodeType) -> Iterator[None]:
        """Around Dynamo's compile of one frame: a pending entry collects what the protocol
        steps say, under the patches that make the compile storable (``_recording``)."""
        pending = self._open_entry(code)
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

    def _open_entry(self, code: types.CodeType) -> PendingEntry:
        """The pending entry of the frame Dynamo starts compiling, on top of the stack. A
        frame that has entries compiles again because their guards failed: say why first."""
        frame = self._by_code.get(code) or self._new_user_frame(code)
        STATS.frames_traced += 1
        self._note_failed_guards(frame, code)
        scope = self._frame_globals(frame)
        pending = PendingEntry(frame, frozenset(scope) if scope is not None else frozenset())
        self._pending.append(pending)
        return pending

    def _note_failed_guards(self, frame: FrameRecord, code: types.CodeType) -> None:
        """A frame that has entries compiles again because the guards of every one failed:
        report each failing guard (``on_guard_fail``), as the reason it recompiles."""
        if frame.entries:
            for reason in _torch.failed_precompiled_guards(code):
                self.on_guard_fail(reason, code)

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
        if not runs_eagerly_after(pending, error, self.skip_on_soft_failure):
            return
        _DYNAMO_SKIPS.add(frame.code)
        with self.lock:
            if frame.entries or frame.skipped:
                return
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
            val = getattr(node, "meta", {}).get("example_value")
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
        entry = self._storable_entry(pending, guards_state, dynamo_code)
        if entry is None:
            report_bypass(self, pending)
            return
        with self.lock:
            self._take_artifacts(entry.backend_ids)
            self.guard_blobs[entry.guards_sha] = guards_state
            pending.frame.entries.append(entry)
            pending.frame.skipped = False
            pending.added.append(entry)
            self.touch()

    def _storable_entry(self, pending: PendingEntry, guards_state: bytes,
                        dynamo_code: types.CodeType) -> GuardedEntry | None:
        """The entry as it is stored, or None with ``pending.bypass_reason`` saying why it
        cannot be."""
        if pending.bypass_reason is None:
            pending.bypass_reason = self._unstorable_reason(pending, dynamo_code)
        if pending.bypass_reason is not None:
            return None
        stored_code = self._stored_code(dynamo_code)
        if isinstance(stored_code, str):
            pending.bypass_reason = stored_code
            return None
        return GuardedEntry(hashlib.sha256(guards_state).hexdigest(), stored_code,
                            list(pending.backend_ids), dict(pending.import_sources),
                            list(pending.identity_checks), _torch.take_guard_tree(),
                            inference_mode=torch.is_inference_mode_enabled(),
                            state_inits=first_step.state_inits(pending.optimizer_calls),
                            constant_calls=storable.constant_globals(stored_code, pending))

    def _stored_code(self, dynamo_code: types.CodeType) -> types.CodeType | str:
        """The bytecode as stored, or why it cannot be. Dynamo numbers resume functions per
        process; they get unique stored names so a later process's own resume functions can
        never shadow ours."""
        with self.lock:
            dynamo_code = rename_globals(dynamo_code, self._resume_names)
        return code_with_refs(dynamo_code)

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
        torch.compile) but are stored as fingerprint checks instead (guard_filter.py)."""
        pending = self.current_entry
        if pending is not None:
            guard_filter.note_identity_guards(pending, entries)
        return [True] * len(entries)
