"""Contract: an identity check's source (a Dynamo guard path such as ``L['self'].act``) is
parsed into steps and resolved one step at a time, never evaluated: every source Dynamo
writes parses, anything else (a call, an operator, an import of a module not loaded) is
refused without running, and a call-time check holds, refuses and remembers what it
verified."""
from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from _packages import CALLS
from precompile.identity import checks as identity
from precompile.identity.guard_path import GuardPathError, Roots, parse

DYNAMO_SOURCES = [
    "G['helper']", "L['self'].act", "L['fn'].__closure__[0].cell_contents",
    "type(L['self'].cfg).__mro__[1]", "L['f'].__defaults__[0]", "L['f'].__kwdefaults__['k']",
    "___odict_getitem(L['self']._modules, 'lin')", "getattr(L['x'], 'not-an-identifier')",
    "object.__getattribute__(L['x'], 'y')", "dict(type(L['x']).__dict__)['m']",
    "L['d'][list(dict.keys(L['d']))[0]]", "list(L['s'])[0]", "dict.__getitem__(L['d'], 'k')",
    "list.__getitem__(L['l'], 1)", "__import__('torch').nn", "G['__builtins_dict___2']['len']",
    "L['x'][slice(1, 4, None)]", "L['x'][(1, 'a')]", "L['x'][-1]",
]
MALICIOUS = [
    "__import__('os').system('echo pwned')", "L['x']()", "G['f'](1)", "L['x'] + 1",
    "(lambda: 1)()", "G['x'].__class__.__subclasses__()", "eval('1')", "exec('1')", "x",
    "getattr(L['x'], L['y'])", "L['x'][1:2]", "[1][0]", "G['a'] if 1 else 2", "L[0]",
    "__import__('o s')", "type(L['x'], (), {})", "L['x'][9**9]", "G['a'].b(1)",
    "L['x'] or G['y']", "f'{G}'", "G['a'][G['b']()]", "", "L['x'];1", "import os",
]


@pytest.mark.parametrize("source", DYNAMO_SOURCES)
def test_dynamo_guard_sources_parse(source: str) -> None:
    path = parse(source)
    assert path.reads_locals == ("L[" in source)


@pytest.mark.parametrize("source", MALICIOUS)
def test_anything_else_is_refused_without_running_it(source: str, env: Path) -> None:
    with pytest.raises(GuardPathError):
        parse(source)
    ok, why = identity.check_before_call(source, "function:x", {"__builtins__": __builtins__})
    assert ok is False and why, why
    assert CALLS == []


def test_paths_resolve_step_by_step() -> None:
    ns = types.SimpleNamespace(act=len, cfg=types.SimpleNamespace())

    def outer() -> object:
        return ns

    fn = (lambda: outer)  # noqa: E731 - a closure over ``outer``
    roots = Roots({"helper": len}, {"self": ns, "fn": fn, "d": {"k": 5}})
    assert parse("G['helper']").resolve(roots) is len
    assert parse("L['self'].act").resolve(roots) is len
    assert parse("type(L['self'].cfg).__mro__[0]").resolve(roots) is types.SimpleNamespace
    assert parse("L['fn'].__closure__[0].cell_contents").resolve(roots) is outer
    assert parse("L['d'][list(dict.keys(L['d']))[0]]").resolve(roots) == 5
    assert parse("__import__('os').path").resolve(roots) is os.path
    with pytest.raises(KeyError):  # never imports: only modules already loaded
        parse("__import__('antigravity')").resolve(roots)


def test_call_time_check_holds_refuses_and_memoizes() -> None:
    a, b = types.SimpleNamespace(act=len), types.SimpleNamespace(act=abs)
    check = identity.CallTimeCheck([("L['self'].act", identity.object_fingerprint(len))], {})
    assert check({"self": a}) and check({"self": a})
    assert len(check._verified) == 1
    assert not check({"self": b}) and not check({})
    with pytest.raises(GuardPathError):
        identity.CallTimeCheck([("__import__('os').system('x')", "f")], {})
