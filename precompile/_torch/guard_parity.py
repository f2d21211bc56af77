"""Guard parity: an installed entry checks the guards Dynamo built when it compiled, with the
expected values it compiled for.

Dynamo rebuilds a stored entry's guards by running its guard builders again over the scope
saved in the guard state (``CheckFunctionManager`` on ``GuardsState``). Values saved by value
come back as recorded, but objects pickled by reference (modules, classes, functions) come back
as the *live* objects of the loading process, so every guard read through one of them takes its
expected value from that process: ``EQUALS_MATCH: G['helper'].VALUE == 7`` is rebuilt as
``== 99`` once ``helper.py`` says 99, and the stale entry passes (ENGINE-FACTS, "Guards on values
read through another module"). The same holds for TYPE_MATCH, TENSOR_MATCH, LENGTH_CHECK and
every other guard whose builder reads the scope.

Two checks close that, both on the *leaf guards* of the C++ guard tree (each leaf's class and
verbose code parts, under the source of the manager that holds it), which is exactly what an
entry checks at every call:

* when an entry is recorded, the tree is rebuilt from the stored state in the recording process
  and compared with the tree Dynamo built: a guard that would be lost (other than the identity
  guards precompile checks by fingerprint instead), or rebuilt with another expected value,
  makes the entry a bypass (``recorded_tree``);
* the rebuilt tree's leaves are stored as short digests (with their text, which
  ``precompile inspect`` lists); when a later process rebuilds the entry, any leaf whose
  digest is not stored (a guard now comparing against another value, type or shape) means
  the entry is not installed (``tree_changes``).
"""
from __future__ import annotations

import collections
import hashlib
import re
import types
from collections.abc import Iterator
from typing import Any

# Leaf guards that an identity guard builds: an id(), a dict version, id()-keyed dict keys,
# and the type check that comes with some. precompile keeps the identity guards that make
# them alive only in the recording process (guard_recording.keep_guard_live_only) and checks
# the guarded objects by fingerprint instead (identity.py: a fingerprint names the type too;
# identity.DictKeysCheck the keys); they are never stored.
_IDENTITY_LEAVES = ("ID_MATCH", "DICT_VERSION", "WEAKREF_ALIVE", "NOT_NONE", "NN_MODULE",
                    "CLOSURE_MATCH", "FUNCTION_MATCH", "CLASS_MATCH", "MODULE_MATCH",
                    "TYPE_MATCH", "DICT_KEYS_MATCH")

# Numbers that mean something only in one process: the id() in ``___check_type_id(x, 94...)``
# / ``___check_obj_id(x, 94...)`` (TYPE_MATCH also names the type: ``type=<class 'm.C'>``)
# and object addresses in reprs (``<X object at 0x7f...>``).
_PROCESS_IDS = re.compile(r"(___check_(?:type|obj)_id\(.*?, )\d+\)|(?<= at )0x[0-9a-fA-F]+")
# A rebuilt tree's aliasing guard may relate more tensors than Dynamo's (parameters that the
# module's identity guard let Dynamo leave out): a stronger check, not a lost one.
_NO_ALIASING = "NO_TENSOR_ALIASING: check_no_aliasing("
_DIGEST_CHARS = 16
# How many changed guards a refusal names.
_SHOWN = 3


def _normalized(text: str) -> str:
    return _PROCESS_IDS.sub(lambda m: f"{m.group(1)}#)" if m.group(1) else "0x#", text)


def leaf_guards(guard_manager: Any) -> list[tuple[str, str]]:
    """(source of the holding manager, ``CLASS: verbose code part``) of every leaf guard of a
    ``GuardManagerWrapper``, process-specific ids normalized, in tree order."""
    from torch._C._dynamo.guards import RelationalGuard

    out: dict[tuple[str, str], None] = {}  # ordered, relational guards once
    root = guard_manager.root
    out.update(dict.fromkeys(_leaves_of(root, "<root>", RelationalGuard)))
    for guard in getattr(root, "get_epilogue_lambda_guards", lambda: [])():
        out.update(dict.fromkeys(("<epilogue>", line) for line in _lines(guard)))
    return list(out)


def _leaves_of(mgr: Any, source: str, relational: type) -> Iterator[tuple[str, str]]:
    for guard in mgr.get_leaf_guards():
        # A relational guard (NO_TENSOR_ALIASING...) hangs under each manager whose value it
        # relates and names all of them; how many managers carry it depends on how the tree
        # was reached, so it counts once.
        where = "<relational>" if isinstance(guard, relational) else source
        for line in _lines(guard):
            yield where, line
    if hasattr(mgr, "get_key_value_managers"):  # DictGuardManager
        for idx, (key_mgr, val_mgr) in sorted(mgr.get_key_value_managers().items()):
            for child in (key_mgr, val_mgr):
                if child is not None:
                    yield from _leaves_of(child, child.get_source(), relational)
    for child in mgr.get_child_managers():
        yield from _leaves_of(child, child.get_source(), relational)


def _lines(guard: Any) -> list[str]:
    name = type(guard).__name__
    return [f"{name}: {_normalized(part)}" for part in guard.verbose_code_parts()]


def stored_form(leaves: list[tuple[str, str]]) -> list[str]:
    """What a package stores of a tree: per leaf, its digest then its line as ``precompile
    inspect`` shows it; in tree order."""
    return [f"{_digest(leaf)} {without_user_stack(leaf[1])}" for leaf in leaves]


def _stored_digests(stored: list[str]) -> collections.Counter[str]:
    return collections.Counter(item[:_DIGEST_CHARS] for item in stored)


def _digest(leaf: tuple[str, str]) -> str:
    """Over the source and the line without its user-stack comment, which Dynamo renders
    from the user's file as it is now (an edit elsewhere in the file shifts it)."""
    return hashlib.sha256(f"{leaf[0]}\0{without_user_stack(leaf[1])}".encode()).hexdigest()[:_DIGEST_CHARS]


def without_user_stack(line: str) -> str:
    """A guard's code without Dynamo's trailing user-stack comment
    (``  # y = x * helper.VALUE  # work.py:4 in fn``): the one place that comment is
    stripped (guard parity compares guards without it; coverage reports them without it)."""
    return line.split("  # ", 1)[0].rstrip()


def recorded_tree(dynamo_manager: Any, rebuilt_manager: Any,
                  live_only_sources: set[str]) -> tuple[list[str], str | None]:
    """Compare the tree Dynamo built for an entry with the one rebuilt from its stored state
    in the same process. Returns (its stored form, None) or ([], why the stored state
    would check something else)."""
    rebuilt = leaf_guards(rebuilt_manager)
    missing = _compared(leaf_guards(dynamo_manager)) - _compared(rebuilt)
    aliasing = [_aliasing_set(text) for _, text in rebuilt if text.startswith(_NO_ALIASING)]
    lost = [leaf for leaf in missing.elements()
            if not _checked_elsewhere(leaf, live_only_sources, aliasing)]
    if lost:
        changed = "; ".join(text for _, text in lost[:_SHOWN])
        return [], (f"{len(lost)} guard(s) would not be checked as compiled after a reload "
                    f"(e.g. {changed})")
    return stored_form(rebuilt), None


def _compared(leaves: list[tuple[str, str]]) -> collections.Counter[tuple[str, str]]:
    """Leaves as ``recorded_tree`` compares the two trees: without Dynamo's user-stack
    comments, since a guard's stack is not always stored (the ambient guards are rebuilt
    with ``# <unknown>``)."""
    return collections.Counter((src, without_user_stack(line)) for src, line in leaves)


def _checked_elsewhere(leaf: tuple[str, str], live_only_sources: set[str],
                       aliasing: list[frozenset[str]]) -> bool:
    """Whether a guard missing from the rebuilt tree is still checked: an identity or
    dict-key guard under a source checked live instead, or a no-aliasing guard that a
    rebuilt one covers."""
    source, text = leaf
    if (text.startswith(_IDENTITY_LEAVES) or _DICT_KEY.match(source)) and any(
            _under_any(where, live_only_sources) for where in (source, _checked_source(text))
            if where is not None):
        return True
    return text.startswith(_NO_ALIASING) and any(_aliasing_set(text) <= other
                                                 for other in aliasing)


# The object an id()/type-id leaf checks, as its code names it: ``ID_MATCH:
# ___check_obj_id(dict.__getitem__(G['ACT2FN'], list(dict.keys(G['ACT2FN']))[0]), #)``.
_CHECKED = re.compile(r"^\w+: ___check_(?:obj|type)_id\((.*), #\)")


def _checked_source(text: str) -> str | None:
    """The source an id()/type-id leaf checks. It can differ from the source of the manager
    that holds it: a value of a dict subclass Dynamo reads with ``dict.__getitem__``
    (transformers' ``ACT2FN``) hangs under a manager named ``G['ACT2FN']['gelu']``, while
    its guard, and the fingerprint check stored for it, name the read itself."""
    found = _CHECKED.match(without_user_stack(text))
    return found.group(1) if found else None


def _aliasing_set(text: str) -> frozenset[str]:
    """The tensors a NO_TENSOR_ALIASING line checks, split at top-level commas."""
    inner = without_user_stack(text)[len(_NO_ALIASING):].removesuffix(")")
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return frozenset(parts)


# A key of a dict, as Dynamo names the manager that guards it: ``list(dict.keys(D))[0]``.
# The guards on the keys of a dict whose identity guard stays live-only (ID_MATCH on each
# key in torch 2.13, EQUALS_MATCH ``== <class 'tuple'>`` in 2.14+) belong to that guard.
_DICT_KEY = re.compile(r"^list\(dict\.keys\((.*)\)\)\[\d+\]$")


def _under_any(source: str, roots: set[str]) -> bool:
    """Whether ``source`` is one of ``roots`` or reached from one (FUNCTION_MATCH on
    ``G['m'].fn`` checks the id of ``G['m'].fn.__code__``; a dict's identity guard checks
    the ids of its keys, ``list(dict.keys(G['d']))[0]``)."""
    if source in roots:
        return True
    key_of = _DICT_KEY.match(source)
    if key_of is not None:
        return _under_any(key_of.group(1), roots)
    return any(source.startswith((root + ".", root + "[")) for root in roots)


def tree_changes(rebuilt_manager: Any, stored: list[str]) -> str | None:
    """Why a tree rebuilt in this process does not check what the entry was compiled for
    (leaves whose digests are not among the ``stored`` ones, or stored leaves now missing),
    or None when every leaf matches."""
    leaves = leaf_guards(rebuilt_manager)
    have = _stored_digests(stored)
    now = collections.Counter(_digest(leaf) for leaf in leaves)
    new = [leaf for leaf in leaves if now[_digest(leaf)] > have[_digest(leaf)]]
    gone = sum((have - now).values())
    if new:
        shown = "; ".join(without_user_stack(line) for _, line in new[:_SHOWN])
        return (f"{len(new)} guard(s) now compare against other values than when it was "
                f"compiled (now: {shown})")
    if gone:
        return f"{gone} guard(s) it was compiled with are no longer built"
    return None


def rebuild_for_parity(guards_state: bytes, code: types.CodeType,
                       f_globals: dict[str, Any]) -> Any:
    """The guard manager a later process would build from ``guards_state``, built here."""
    import torch

    from .guard_loading import load_guard_manager

    return load_guard_manager(guards_state, code, f_globals, lambda name, value: None,
                              inference_mode=torch.is_inference_mode_enabled())
