"""Identity checks: what replaces Dynamo's identity guards in a stored package.

Dynamo guards some objects by identity (``ID_MATCH``, ``CLOSURE_MATCH``, ``CLASS_MATCH``...:
"this global is *that* function object"). An ``id()`` means nothing in another process, so
the recorder drops those guards and keeps, for each, the guarded object's *fingerprint*
(module, qualified name and bytecode hash for a function; name for a class or module).

Checking them again in the loading process:

* a source that reads only globals (``G['helper']``, ``G['mod'].fn``) is evaluated once,
  when the entry is installed; a mismatch means the entry is not installed (a clean miss
  with a reason);
* a source that reads the call's locals (``func`` - a closure cell of a decorator's wrapper,
  ``self.act``, ``type(self.cfg).__mro__[1]...``) can only be evaluated during the call.
  Those become one extra guard on the entry (``CallTimeCheck``), so the entry only runs when
  the objects the call reaches are the ones it was compiled for. Without it, two functions
  wrapped by the same decorator share one code object and would run each other's graphs.

Sources are Dynamo's guard names (``L['self'].act``, ``G['mod'].fn``). They come from a file,
so they are never evaluated as Python: ``guard_path.parse`` accepts only the guard-source
grammar (attribute and item steps from ``L``/``G``) and a source outside it makes the entry
uninstallable, a clean miss with a reason.
"""
from __future__ import annotations

import builtins
import json
import types
from collections.abc import Mapping
from typing import Any

from .guard_path import GuardPath, GuardPathError, Roots, parse
from .fingerprints import WRAPS, object_fingerprint
from .names import layers

# How many distinct tuples of objects one call-time check remembers as verified. Objects
# are kept alive while remembered, so their ids cannot be reused by other objects.
_MEMO_SIZE = 16


class GlobalsView:
    """``G[name]`` over a live module dict (not a copy: globals placed later are seen)."""

    __slots__ = ("scope",)

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    def __getitem__(self, name: str) -> Any:
        try:
            return self.scope[name]
        except KeyError:
            if name.startswith("__builtins_dict__"):
                # Dynamo reads builtins through a dict it places in the globals as
                # ``__builtins_dict___N`` when the entry's guards load, i.e. after the
                # before-call checks; until then the real builtins stand in for it.
                return vars(builtins)
            raise


def fingerprint_summary(fingerprint: str) -> str:
    """What a fingerprint names, for messages: ``function torch.nn.functional.gelu``,
    ``instance functools._lru_cache_wrapper around function mod.f``, ``hooks [function
    m.<lambda>]``."""
    if fingerprint.startswith(HOOKS):
        return "hooks [" + ", ".join(map(fingerprint_summary, hook_list(fingerprint))) + "]"
    kind, _, rest = fingerprint.partition(":")
    if kind == "value":
        return f"value {rest}"
    outer, *inner = fingerprint.split(WRAPS)
    words = " ".join(outer.split(":")[:2])
    return f"{words} around {fingerprint_summary(inner[-1])}" if inner else words


def fingerprint_difference(was: str, now: str, value: Any = None) -> str:
    """What differs between two fingerprints of one source, in words. When both name the
    same thing (a function redefined, another decorator around it), the differing layer's
    bytecode hashes and, for ``value`` (the object found now), where it is defined."""
    head = f"was {fingerprint_summary(was)}, now {fingerprint_summary(now)}"
    if was.startswith(HOOKS) or now.startswith(HOOKS):
        return head
    was_layers, now_layers = _wrapper_layers(was), _wrapper_layers(now)
    if len(was_layers) != len(now_layers):
        return head + _wrapping_difference(was_layers, now_layers)
    for depth, (a, b) in enumerate(zip(was_layers, now_layers)):
        if a != b:
            return head + _layer_difference(a, b, depth, value)
    return head


def _wrapper_layers(fingerprint: str) -> list[str]:
    """The layers of a wrapper chain, outermost first (a plain value's ``repr`` may hold
    ``WRAPS`` itself, so it is one layer)."""
    return [fingerprint] if fingerprint.startswith("value:") else fingerprint.split(WRAPS)


def _wrapping_difference(was: list[str], now: list[str]) -> str:
    """Another number of decorators around the function: both chains, outermost first."""
    return (f": wrapped {len(was) - 1} times then, {len(now) - 1} now "
            f"({' > '.join(map(fingerprint_summary, was))} -> "
            f"{' > '.join(map(fingerprint_summary, now))})")


def _layer_difference(was: str, now: str, depth: int, value: Any) -> str:
    """How the first differing layer, ``depth`` down the chain, changed: another object, or
    the same name with other bytecode."""
    where = "" if depth == 0 else f" in the function wrapped {depth} layer(s) down"
    if fingerprint_summary(was) != fingerprint_summary(now):
        return f"{where}: {fingerprint_summary(was)} -> {fingerprint_summary(now)}"
    return (f": same name, other bytecode{where} (code {was.rpartition(':')[2][:12]} -> "
            f"{now.rpartition(':')[2][:12]}{_defined_at(value, depth)})")


def _defined_at(value: Any, depth: int) -> str:
    """``, now defined at file:line`` for the ``depth``-th layer of ``value``'s chain."""
    try:
        layer = list(layers(value, wrapped_only=True))[depth]
    except (ValueError, IndexError):
        return ""
    code = getattr(getattr(layer, "__func__", layer), "__code__", None)
    if not isinstance(code, types.CodeType):
        return ""
    return f", now defined at {code.co_filename}:{code.co_firstlineno}"


# An IdentityCheck fingerprint that is not an object's: ``DICT_KEYS + json([source, ...])``
# says the dict at the check's source has exactly the objects at those sources as keys, in
# order (guard_filter.dict_keys_check; checked by DictKeysCheck on every call).
DICT_KEYS = "dict-keys:"


def dict_keys_fingerprint(aliases: list[str]) -> str:
    return DICT_KEYS + json.dumps(aliases)


# An IdentityCheck fingerprint of a module's hook dict: ``HOOKS + json([fingerprint of each
# hook, in order])`` (module_hooks.py): the dict holds exactly these hooks.
HOOKS = "hooks:"


def hooks_fingerprint(hooks: Any) -> str:
    """The fingerprint of a hook dict as it is now (anything but a dict never matches)."""
    if not isinstance(hooks, dict):
        return HOOKS + json.dumps(f"not a dict: {type(hooks).__qualname__}")
    return HOOKS + json.dumps([object_fingerprint(hook) for hook in hooks.values()])


def hook_list(fingerprint: str) -> list[str]:
    """The hooks a hooks fingerprint names (a malformed one names none)."""
    try:
        hooks = json.loads(fingerprint[len(HOOKS):])
    except ValueError:
        return []
    return [h for h in hooks if isinstance(h, str)] if isinstance(hooks, list) else []


def fingerprint_now(value: Any, expected: str) -> str:
    """``value``'s fingerprint of the kind ``expected`` is."""
    return hooks_fingerprint(value) if expected.startswith(HOOKS) else object_fingerprint(value)


def check_before_call(source: str, fingerprint: str,
                      scope: dict[str, Any]) -> tuple[bool | None, str]:
    """Resolve a check against a module's globals alone.

    Returns (True, "") when it holds, (False, why) when the source now names another object,
    no longer resolves or is not a guard path, and (None, why) when it reads the call's
    locals (``L[...]``) and must be checked at call time instead.
    """
    try:
        path = parse(source)
    except GuardPathError as e:
        return False, str(e)
    if path.reads_locals or fingerprint.startswith(DICT_KEYS):
        return None, "checked at every call"
    return _check_in_globals(path, fingerprint, scope)


def _check_in_globals(path: GuardPath, fingerprint: str,
                      scope: dict[str, Any]) -> tuple[bool, str]:
    """Resolve a path that reads globals only, and compare what it finds now."""
    try:
        value = path.resolve(Roots(GlobalsView(scope)))  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - the path no longer exists
        return False, f"{path.source} no longer resolves ({type(e).__name__})"
    now = fingerprint_now(value, fingerprint)
    if now != fingerprint:
        return False, fingerprint_difference(fingerprint, now, value)
    return True, ""


def reads_locals(source: str) -> bool:
    """Whether a source reads ``L`` (Dynamo's name for the frame's locals). Raises
    GuardPathError for a source that is not a guard path."""
    return parse(source).reads_locals


class CallTimeCheck:
    """A guard that resolves identity checks over the call's locals, on every call.

    Cheap after the first call: the paths are parsed once, here; the objects found are
    compared by ``id`` against tuples already verified (kept alive, at most ``_MEMO_SIZE``),
    and fingerprinted only when new. Raises GuardPathError for a source that is not a guard
    path (``check_before_call`` has refused such an entry before it gets here).
    """

    def __init__(self, checks: list[tuple[str, str]], scope: dict[str, Any]) -> None:
        self.sources = [s for s, _ in checks]
        self.expected = [fp for _, fp in checks]
        self.paths: list[GuardPath] = [parse(s) for s in self.sources]
        self.globals = GlobalsView(scope)
        self._verified: dict[tuple[int, ...], tuple[Any, ...]] = {}

    def description(self) -> list[str]:
        return [f"precompile identity: {s} is {fingerprint_summary(fp)}"
                for s, fp in zip(self.sources, self.expected)]

    def __call__(self, f_locals: Mapping[str, Any]) -> bool:
        # A failure needs no message here: Dynamo reports this guard's ``description()``
        # as the recompile reason.
        g = self.globals
        try:
            values = tuple([p.lookup(g, f_locals) for p in self.paths])  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a missing attribute means "not this entry"
            return False
        ids = tuple(map(id, values))
        if ids in self._verified:
            return True
        if not self._fingerprints_match(values):
            return False
        if len(self._verified) < _MEMO_SIZE:
            self._verified[ids] = values
        return True

    def _fingerprints_match(self, values: tuple[Any, ...]) -> bool:
        """Each object found now has the fingerprint recorded (the slow path: new objects)."""
        return all(fingerprint_now(v, want) == want for v, want in zip(values, self.expected))


class DictKeysCheck:
    """A dict's keys are, in order, the objects at other sources of the same call: what
    Dynamo's DICT_KEYS_MATCH checks by ``id()`` on a dict keyed by tensors or modules
    (``guard_filter.dict_keys_check``). Runs after the entry's other guards (an epilogue), so
    its lookups are paid only by the entry that runs. Raises GuardPathError or ValueError
    for a fingerprint that is not a list of guard paths."""

    def __init__(self, source: str, fingerprint: str, scope: dict[str, Any]) -> None:
        aliases = _alias_sources(fingerprint)
        self.source = source
        self.path = parse(source)
        self.alias_sources = aliases
        self.aliases = [parse(a) for a in aliases]
        self.globals = GlobalsView(scope)

    def description(self) -> list[str]:
        return [f"precompile identity: the keys of {self.source} are "
                f"{', '.join(self.alias_sources)}"]

    def __call__(self, f_locals: Mapping[str, Any]) -> bool:
        g = self.globals
        try:
            value = self.path.lookup(g, f_locals)  # type: ignore[arg-type]
            if not isinstance(value, dict) or len(value) != len(self.aliases):
                return False
            return all(key is alias.lookup(g, f_locals)  # type: ignore[arg-type]
                       for key, alias in zip(dict.keys(value), self.aliases))
        except Exception:  # noqa: BLE001 - a missing attribute means "not this entry"
            return False


def _alias_sources(fingerprint: str) -> list[str]:
    """The key sources a ``DICT_KEYS`` fingerprint lists; ValueError unless it is a JSON
    list of strings (it comes from a file)."""
    aliases = json.loads(fingerprint[len(DICT_KEYS):])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ValueError(f"malformed dict keys check {fingerprint[:80]!r}")
    return aliases
