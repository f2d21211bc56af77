"""A package as data: everything Dynamo compiled for one function.

* frames: every code object Dynamo compiled (the function itself, user functions that ran as
  their own frames, resume functions made at graph breaks), each with all its guarded entries
  (serialized guards + transformed bytecode + the backend ids and import aliases it uses);
* the source ranges Dynamo inlined, to detect edits before installing;
* identity checks: guards that hold an ``id()`` (function/module/class identity) cannot be
  stored, so a stable fingerprint of the guarded object is stored and checked at install;
* the backend artifacts and C++ kernel libraries the entries run.

Nothing here does I/O or touches torch: the recorder (``recorder.py``) fills a package,
``manifest.py`` maps it to and from the stored form, ``install.py`` puts it to work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Any

from .artifacts import BackendArtifact
from .keys import SourceRange
from ..identity.names import code_fingerprint

ROLE_MAIN = "main"  # the decorated function (or the module's forward)
ROLE_USER = "user"  # a user function Dynamo could not inline and compiled as its own frame
ROLE_RESUME = "resume"  # a function Dynamo generated to continue after a graph break
ROLES = (ROLE_MAIN, ROLE_USER, ROLE_RESUME)


@dataclasses.dataclass
class IdentityCheck:
    """A guard on an object's identity, replaced by a fingerprint check at install time."""

    source: str  # Dynamo's source name, e.g. "G['helper']" or "L['self'].act"
    guard_type: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StateInit:
    """Optimizer state Dynamo created while it traced the entry (``_init_group`` on the live
    optimizer), to create again before the entry's guards look at it (first_step.py)."""

    source: str  # the optimizer, as Dynamo's guards name it: "L['self']", "G['opt']"
    kind: str  # fingerprints.object_fingerprint of its class: the calls are made on that kind only
    calls: list[list[list[Any]]]  # per call, its arguments: ["group", i] | ["list"] | ["const", v]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ConstantCall:
    """A global Dynamo placed for the bytecode that holds what a function marked
    ``assume_constant_result`` returned (constant_calls.py): repeated, and compared, in
    the loading process before the value is placed there again."""

    global_name: str
    function: str  # names.importable_name of the function (or of the wrapper found by name)
    args: list[Any]  # plain constants only
    kwargs: dict[str, Any]
    value: Any  # None, bool, int, float or str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConstantCall:
        """A stored call read back from a manifest (ValueError/TypeError when malformed)."""
        call = cls(d["global_name"], d["function"], list(d["args"]), dict(d["kwargs"]),
                   d["value"])
        if not call._well_formed():
            raise ValueError(f"malformed constant call {d!r}")
        return call

    def _well_formed(self) -> bool:
        """Names are strings, the function an importable ``module:qualname``, and every
        argument and the answer a plain value (``is_plain``)."""
        return (isinstance(self.global_name, str) and isinstance(self.function, str)
                and ":" in self.function and all(isinstance(k, str) for k in self.kwargs)
                and all(is_plain(v) for v in [*self.args, *self.kwargs.values(), self.value]))


_PLAIN = (type(None), bool, int, float, str)
_MAX_TEXT = 200  # a longer str argument or answer is not a probe's: not stored


def is_plain(value: Any) -> bool:
    """A value a constant call may take or answer: a short scalar, the same in every process."""
    return type(value) in _PLAIN and not (isinstance(value, str) and len(value) > _MAX_TEXT)


@dataclasses.dataclass
class GuardedEntry:
    """One compiled version of a frame: guards -> transformed bytecode."""

    guards_sha: str  # blob holding Dynamo's pickled GuardsState
    dynamo_code: types.CodeType
    backend_ids: list[str]
    import_sources: dict[str, str]  # global name -> importable_name() of its value
    identity_checks: list[IdentityCheck]
    # Every leaf guard the entry checks, as Dynamo built them when compiling (digest + text)
    # (_torch/guard_parity.py): a later process installs the entry only if its rebuilt
    # guards have exactly these, i.e. compare against the values it was compiled for.
    guard_tree: list[str] = dataclasses.field(default_factory=list)
    # Compiled under torch.inference_mode(): Dynamo's tensor guards expect dispatch keys
    # as seen under the thread's dispatch state then, so they are rebuilt under it too.
    inference_mode: bool = False
    state_inits: list[StateInit] = dataclasses.field(default_factory=list)
    constant_calls: list[ConstantCall] = dataclasses.field(default_factory=list)

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
    fingerprint: str  # names.code_fingerprint of the original code
    code: types.CodeType  # the original code (resume functions: the code to install)
    global_name: str | None = None  # resume functions: the global the bytecode calls
    entries: list[GuardedEntry] = dataclasses.field(default_factory=list)
    skipped: bool = False  # Dynamo found nothing to compile here: skip it next time too

    @property
    def identity(self) -> tuple[str, ...]:
        if self.role == ROLE_RESUME:
            return (self.role, self.module, self.global_name or "")
        return (self.role, self.module, self.qualname, self.fingerprint)


@dataclasses.dataclass(eq=False)
class Package:
    """Everything compiled for one function under one key. Compared by identity: a package
    is a thing that grows (recording, merging), not a value."""

    main_code: types.CodeType
    module: str
    key: str
    factors: dict[str, str]
    frames: list[FrameRecord] = dataclasses.field(default_factory=list)
    sources: dict[tuple[str, str, int], SourceRange] = dataclasses.field(default_factory=dict)
    guard_blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, BackendArtifact] = dataclasses.field(default_factory=dict)
    # C++ kernel libraries the compiled code loads: path relative to the Inductor cache dir
    kernel_blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # kernels stored once in the store (shared_blobs), by path: their sha256, until fetched
    kernel_refs: dict[str, str] = dataclasses.field(default_factory=dict)
    unbundled: set[str] = dataclasses.field(default_factory=set)  # kernels that must be rebuilt
    device_types: set[str] = dataclasses.field(default_factory=set)
    bypasses: list[str] = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0  # time Dynamo spent compiling what this package holds
    created: float = 0.0
    cpu_isa: Any = None  # Inductor's CPU ISA probe, as the writing process answered it
    # The main function's globals when no module owns them (FX's generated ``forward``
    # runs in a dict of its own): where its entries are installed. Never stored.
    main_globals: dict[str, Any] | None = None
    # The main frame's ``self`` when the target is a module (never stored): what a stored
    # reference into ``L['self']`` finds at install (``names.GLOBALS_OF``).
    main_locals: dict[str, Any] | None = None

    def backend_ids(self) -> set[str]:
        return {b for f in self.frames for e in f.entries for b in e.backend_ids}

    def resume_names(self) -> set[str]:
        """The global names of the stored resume functions."""
        return {f.global_name for f in self.frames if f.role == ROLE_RESUME and f.global_name}


def merge(into: Package, other: Package) -> int:
    """Add ``other``'s frames, entries, artifacts, sources and kernels that ``into`` lacks
    (what another process stored under the same key). Returns the number of entries added."""
    added = sum(_merge_frame(into, of, other.guard_blobs) for of in other.frames)
    for backend_id, art in other.artifacts.items():
        if _better_artifact(into.artifacts.get(backend_id), art):
            into.artifacts[backend_id] = art
    for k, r in other.sources.items():
        into.sources.setdefault(k, r)
    _merge_kernels(into, other)
    into.device_types |= other.device_types
    into.compile_seconds = max(into.compile_seconds, other.compile_seconds)
    return added


def _better_artifact(cur: BackendArtifact | None, art: BackendArtifact) -> bool:
    """``art`` replaces ``cur`` when there is none, or when only ``art`` holds the backward
    graph too (a training step can use it)."""
    return cur is None or (art.has_backward and not cur.has_backward)


def _merge_kernels(into: Package, other: Package) -> None:
    """Kernels ``into`` lacks; one bundled on either side stays bundled, not a reference."""
    for rel, data in other.kernel_blobs.items():
        into.kernel_blobs.setdefault(rel, data)
    for rel, digest in other.kernel_refs.items():
        if rel not in into.kernel_blobs:
            into.kernel_refs.setdefault(rel, digest)


def _merge_frame(into: Package, of: FrameRecord, guard_blobs: dict[str, bytes]) -> int:
    mine = _same_frame(into, of)
    have = {e.entry_id for e in mine.entries}
    added = [e for e in of.entries if e.entry_id not in have]
    for e in added:
        mine.entries.append(e)
        into.guard_blobs[e.guards_sha] = guard_blobs[e.guards_sha]
    # Dynamo skips a frame only while nothing compiled for it
    mine.skipped = not mine.entries and (mine.skipped or of.skipped)
    return len(added)


def _same_frame(into: Package, of: FrameRecord) -> FrameRecord:
    """``into``'s frame of ``of``'s identity, added (without entries) if it has none."""
    mine = next((f for f in into.frames if f.identity == of.identity), None)
    if mine is None:
        mine = dataclasses.replace(of, entries=[])
        into.frames.append(mine)
    return mine
