#!/usr/bin/env python3
"""Long fuzz run of the package reader (the test suite runs a short one: tests/format/test_fuzz.py).

    python bench/fuzz_format.py [--seconds 300] [--seed 0] [--modes cli,guard_path]

Mutates a real package (written by a real compile in a subprocess) three ways: random byte
flips/truncations/insertions (must fail the checksum), mutated msgpack bodies fed past the
checksum, and structurally mutated manifests re-encoded with a valid checksum. Every outcome
must be a precompile.errors.PackageError (or a clean accept for harmless manifest changes);
anything else is a finding. Unpickling is forbidden during reads: any attempt is a finding.

Two more modes attack what reads packages outside the loader:

* ``cli``: the CLI's read commands (ls, verify, inspect, explain) on mutated packages under a
  signing key the packages lack: each must exit 0/1/2 without a traceback, and never unpickle
  guards or resolve identity checks of an untrusted package;
* ``cli_trusted``: the same without a key (the package is trusted), with random identity
  check sources injected: explain resolves them, which must never run code;
* ``guard_path``: random and mutated identity-check sources through the guard-path parser
  and resolver: only GuardPathError or a lookup error, and nothing may be called that runs
  a command or evaluates code (os.system, eval, exec... are tripwires).

Three more craft inputs by hand (no real package needed, so ``--modes nested,keys,code``
starts at once; tests/format/test_fuzz.py runs them for a few seconds):

* ``nested``: ext values (tuples, frozensets, code, unknown types...) nested up to
  thousands deep, branching, truncated: decoding must stay within its bounds;
* ``keys``: maps with keys of every msgpack type, including big ints that all hash alike:
  accepted exactly when every key is a string or a 64-bit integer;
* ``code``: real code objects with mutated bytecode, line and exception tables and counts:
  a FormatError or a code object whose tables CPython can read, never a crash.

Prints iterations and findings per mode; exit status 1 if anything was found.
"""
from __future__ import annotations

import argparse
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
import traceback

FMOD = """
import torch, precompile
@precompile.cached(backend="eager")
def f(x):
    y = x.sin() * 2
    print("graph break")
    return y.cos() + x.sum()
"""
WRITER = """
import torch, precompile, fmod
fmod.f(torch.randn(4))
fmod.f(torch.randn(4, dtype=torch.float64))
precompile.flush()
"""


def real_package(d: str) -> bytes:
    """Compile ``fmod.f`` (written into ``d``, importable from there) in a subprocess."""
    with open(os.path.join(d, "fmod.py"), "w") as fh:
        fh.write(FMOD)
    script = os.path.join(d, "writer.py")
    with open(script, "w") as fh:
        fh.write(WRITER)
    path = os.pathsep.join(p for p in (d, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PRECOMPILE_CACHE_DIR=os.path.join(d, "written"), PYTHONPATH=path)
    env.pop("PRECOMPILE_SIGNING_KEY", None)
    subprocess.run([sys.executable, script], env=env, check=True, capture_output=True, cwd=d)
    [name] = [n for n in os.listdir(os.path.join(d, "written")) if n.endswith(".pcpkg")]
    with open(os.path.join(d, "written", name), "rb") as fh:
        return fh.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="", help="comma-separated modes to run (default: all): "
                    "bytes, body, structure, cli, cli_trusted, guard_path, nested, keys, code")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    crafted = {"nested": _nested_mode(rng), "keys": _keys_mode(rng), "code": _code_mode(rng)}
    wanted = args.modes.split(",") if args.modes else None
    modes = crafted if wanted and set(wanted) <= set(crafted) else {**_package_modes(rng),
                                                                     **crafted}
    if wanted:
        modes = {m: modes[m] for m in wanted}
    return _run(modes, args.seconds)


def _package_modes(rng: random.Random) -> dict:
    """The modes that mutate a real package (written by a compile in a subprocess)."""
    from precompile.format import envelope as fmt
    from precompile.errors import PackageError
    from precompile.package.manifest import from_manifest

    workdir = tempfile.mkdtemp(prefix="precompile-fuzz-")
    data = real_package(workdir)
    env0 = fmt.decode(data)
    main_code = (lambda x: x).__code__

    def forbid(*a, **k):
        raise AssertionError("unpickling during a read")

    pickle.loads = forbid  # type: ignore[assignment]
    pickle.load = forbid  # type: ignore[assignment]

    def read(blob: bytes) -> None:
        env = fmt.decode(blob)
        from_manifest(main_code, "m", {}, env.manifest, env.blobs)

    def bytes_mode() -> None:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(b))
            if op < 0.6:
                b[pos] ^= rng.randrange(1, 256)
            elif op < 0.8:
                del b[pos:pos + rng.randint(1, 64)]
            else:
                b[pos:pos] = os.urandom(rng.randint(1, 16))
        if bytes(b) == data:
            return
        try:
            read(bytes(b))
        except PackageError:
            return
        raise AssertionError("a mutated package was accepted")

    body = data[fmt._HEADER.size:-32]

    def body_mode() -> None:
        b = bytearray(body)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            fmt._unpack(bytes(b))
        except PackageError:
            pass

    def structure_mode() -> None:
        manifest = dict(env0.manifest)
        field = rng.choice(list(manifest))
        manifest[field] = _mutate(manifest[field], rng, main_code)
        try:
            blob = fmt.encode(env0.meta, manifest, env0.blobs)
        except (PackageError, ValueError):
            return
        try:
            read(blob)
        except PackageError:
            pass

    cli_modes = _cli_modes(workdir, data, env0, rng)
    return {"bytes": bytes_mode, "body": body_mode, "structure": structure_mode,
            **cli_modes, "guard_path": _guard_path_mode(rng)}


def _run(modes: dict, seconds: float) -> int:
    """Round-robin over ``modes`` for ``seconds``; print iterations and findings."""
    counts = {m: 0 for m in modes}
    findings: dict[str, list[str]] = {m: [] for m in modes}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, fn in modes.items():
            counts[name] += 1
            try:
                fn()
            except Exception:  # noqa: BLE001 - anything but PackageError is a finding
                text = traceback.format_exc(limit=-4)
                if len(findings[name]) < 20 and text not in findings[name]:
                    findings[name].append(text)
    total = sum(len(v) for v in findings.values())
    for name in modes:
        print(f"{name:>10}: {counts[name]:>8} iterations, {len(findings[name])} findings")
        for text in findings[name]:
            print("    " + text.replace("\n", "\n    "))
    return 1 if total else 0


# ------------------------------------------------------------ crafted bodies

_LEAVES = [None, 0, -1, 2 ** 63, 2 ** 64 - 1, "s", b"b", 1.5, True, [], {}]


def _body(meta: bytes) -> bytes:
    """A package (valid checksum) whose meta is raw msgpack ``meta``."""
    import hashlib

    import msgpack

    from precompile.format import envelope as fmt

    body = (b"\x83" + msgpack.packb("meta") + meta + msgpack.packb("manifest") + b"\x80"
            + msgpack.packb("blobs") + b"\x80")
    head = fmt._HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(body)) + body
    return head + hashlib.sha256(head).digest()


def _array(items: list[bytes]) -> bytes:
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def _raw_value(rng: random.Random, depth: int) -> bytes:
    """Random raw msgpack: ext values (known and unknown types, cut payloads), arrays and
    maps, nested ``depth`` deep, branching near the leaves."""
    import msgpack

    value = msgpack.packb(rng.choice(_LEAVES), use_bin_type=True)
    for level in range(depth):
        items = [value] + [msgpack.packb(rng.choice(_LEAVES), use_bin_type=True)
                           for _ in range(rng.randint(0, 2 if level < 4 else 0))]
        rng.shuffle(items)
        payload = _array(items)
        r = rng.random()
        if r < 0.1:
            value = payload
        elif r < 0.15:
            value = b"\xdf\x00\x00\x00\x01" + msgpack.packb("k") + value
        else:
            if rng.random() < 0.02:
                payload = payload[:rng.randrange(len(payload) + 1)]
            code = rng.choice([2, 2, 2, 3, 4, 7, 9, 1, 6, 8, 99])
            value = msgpack.packb(msgpack.ExtType(code, payload))
    return value


def _nested_mode(rng: random.Random):
    from precompile.format import envelope as fmt
    from precompile.errors import PackageError

    def mode() -> None:
        depth = rng.choice([1, 3, 8, 20, 31, 33, 64, 300, 3000])
        meta = b"\x81" + b"\xa1x" + _raw_value(rng, depth)
        try:
            fmt.decode(_body(meta))
        except PackageError:
            pass

    return mode


def _raw_key(rng: random.Random) -> tuple[bytes, bool]:
    """(packed key, whether the decoder must accept it)."""
    import msgpack

    modulus = (1 << 61) - 1
    kind = rng.randrange(9)
    if kind == 0:
        return msgpack.packb(rng.choice(["a", "", "k" * 40, "é"])), True
    if kind == 1:
        return msgpack.packb(rng.choice([0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1])), True
    if kind == 2:  # big ints that all hash to 0: a quadratic map if accepted
        big = str(modulus * rng.randint(1, 1 << 20) << 64).encode()
        return msgpack.packb(msgpack.ExtType(6, big)), False
    if kind == 3:
        return msgpack.packb(msgpack.ExtType(2, b"\x91\x01")), False
    others = [1.5, b"b", None, True, [1], {}]
    return msgpack.packb(rng.choice(others), use_bin_type=True), False


def _keys_mode(rng: random.Random):
    from precompile.format import envelope as fmt
    from precompile.errors import PackageError

    def mode() -> None:
        keys = [_raw_key(rng) for _ in range(rng.choice([1, 2, 10, 3000]))]
        if rng.random() < 0.5:  # mostly valid, so acceptance is exercised too
            keys = [k for k in keys if k[1]] or keys
        meta = b"\xdf" + len(keys).to_bytes(4, "big") + b"".join(k + b"\xc0" for k, _ in keys)
        try:
            fmt.decode(_body(meta))
            accepted = True
        except PackageError:
            accepted = False
        if accepted != all(ok for _, ok in keys):
            raise AssertionError(f"map keys {'accepted' if accepted else 'refused'} wrongly")

    return mode


def _code_pool() -> list:
    """Code objects to mutate: every function of a few stdlib modules (loops, try/except,
    comprehensions, closures, async)."""
    import argparse as a
    import asyncio.tasks as t
    import json.decoder as j
    import types

    todo = []
    for module in (a, t, j):
        with open(module.__file__, encoding="utf-8") as fh:
            todo.append(compile(fh.read(), module.__file__, "exec"))
    out = []
    while todo:
        code = todo.pop()
        out.append(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return out


def _mutate_code_fields(fields: dict, rng: random.Random) -> dict:
    """One to four random changes to a code object's stored fields."""
    table_ops = list(range(256))
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(["co_code"] * 4 + ["co_linetable", "co_exceptiontable"] * 2
                          + ["co_stacksize", "co_nlocals", "co_argcount", "co_consts",
                             "co_names"])
        value = fields[name]
        if isinstance(value, bytes):
            b = bytearray(value)
            pos = rng.randrange(len(b) + 1)
            r = rng.random()
            if r < 0.5 and b:
                b[min(pos, len(b) - 1)] = rng.choice(table_ops)
            elif r < 0.7:
                del b[pos:pos + rng.randint(1, 6)]
            else:
                b[pos:pos] = bytes(rng.choice(table_ops) for _ in range(rng.choice([1, 2, 4])))
            fields[name] = bytes(b)
        elif isinstance(value, int):
            fields[name] = rng.choice([0, 1, value + 1, max(value - 1, 0), -1, 2 ** 31, 2 ** 70])
        else:
            fields[name] = value[:rng.randrange(len(value) + 1)]
    return fields


def _code_mode(rng: random.Random):
    import msgpack

    from precompile.format import envelope as fmt
    from precompile.errors import PackageError

    pool = _code_pool()

    def mode() -> None:
        code = rng.choice(pool)
        fields = _mutate_code_fields({n: getattr(code, n) for n in fmt.CODE_FIELDS}, rng)
        ext = msgpack.ExtType(fmt.EXT_CODE, fmt._pack([fields[n] for n in fmt.CODE_FIELDS]))
        try:
            built = fmt.decode(fmt.encode({}, {"code": ext}, {})).manifest["code"]
        except PackageError:
            return
        list(built.co_lines())  # CPython's own table readers on what was accepted
        list(built.co_positions())

    return mode


# --------------------------------------------------------------------- tripwires

TRIPPED: list[str] = []


def _tripwire(name: str):
    def trip(*a, **k):
        TRIPPED.append(name)
        raise AssertionError(f"{name} was called while reading a package")

    return trip


def _arm_tripwires() -> None:
    """Nothing reading a package may run a command: make the ways to do so findings."""
    import subprocess as sp

    for name in ("system", "popen", "execv", "execve", "spawnv", "posix_spawn"):
        if hasattr(os, name):
            setattr(os, name, _tripwire(f"os.{name}"))
    sp.Popen.__init__ = _tripwire("subprocess.Popen")  # type: ignore[method-assign]


def _check_tripwires() -> None:
    if TRIPPED:
        names = sorted(set(TRIPPED))
        TRIPPED.clear()
        raise AssertionError(f"tripwire(s) {names} fired")


# --------------------------------------------------------------- identity sources

VALID_SOURCES = [
    "G['helper']", "L['self'].act", "L['f'].__closure__[0].cell_contents",
    "type(L['self']).__mro__[1]", "L['f'].__defaults__[0]", "L['f'].__kwdefaults__['k']",
    "___odict_getitem(L['od'], 'a')", "getattr(L['self'], 'act')",
    "object.__getattribute__(L['self'], 'act')", "dict(type(L['self']).__dict__)['m']",
    "L['d'][list(dict.keys(L['d']))[0]]", "list(L['s'])[0]", "dict.__getitem__(L['d'], 'k')",
    "list.__getitem__(L['l'], 1)", "__import__('os').path", "G['__builtins_dict___1']['len']",
    "L['l'][slice(0, 1, None)]", "L['d'][('a', 1)]", "L['l'][-1]",
]
TOKENS = ["L", "G", "['x']", "['f']", "['self']", ".", "__closure__", "[0]", ".cell_contents",
          "(", ")", "__import__", "'os'", ".system", "('true')", "getattr", ", ", "type",
          "eval", "exec", "lambda", ":", "+", "[", "]", "list", "dict", ".keys",
          "___odict_getitem", "slice", "1", "-", "'", '"', " ", "__class__",
          "__subclasses__", "__globals__", "__builtins__", "*", "**", " if ", " else ", "not ",
          "f'", "{", "}", ";", "\n", "object.__getattribute__", "9" * 50, "__reduce__",
          "compile", "open", "breakpoint", "__loader__", "G['os']", "L['f']()"]


def random_source(rng: random.Random) -> str:
    if rng.random() < 0.5:
        s = rng.choice(VALID_SOURCES)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(s) + 1)
            op = rng.random()
            if op < 0.5:
                s = s[:i] + rng.choice(TOKENS) + s[i:]
            elif op < 0.8:
                s = s[:i] + s[i + rng.randint(1, 6):]
            else:
                s = s + rng.choice(VALID_SOURCES)[rng.randrange(5):]
        return s
    return "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 14)))


def _guard_path_mode(rng: random.Random):
    """Parse and resolve random sources: only GuardPathError or a lookup error."""
    import ast
    import builtins
    import collections
    import types

    from precompile.identity.guard_path import GuardPathError, Roots, parse

    def inner(x, *, k=2):
        return helper

    def helper():
        return inner

    obj = types.SimpleNamespace(act=len)
    roots = Roots({"helper": helper, "os": os},
                  {"self": obj, "f": inner, "d": {"k": 1, ("a", 1): 2}, "s": {1, 2},
                   "l": [1, 2, 3], "od": collections.OrderedDict(a=1), "x": obj})
    lookup_errors = (AttributeError, KeyError, IndexError, TypeError, LookupError, ValueError)

    def mode() -> None:
        source = random_source(rng)
        saved = builtins.eval, builtins.exec, builtins.compile
        builtins.eval, builtins.exec = _tripwire("eval"), _tripwire("exec")
        real_compile = saved[2]
        trip = _tripwire("compile (to code)")

        def ast_only(src, filename, mode, flags=0, *a, **k):  # ast.parse is fine, code is not
            if not flags & ast.PyCF_ONLY_AST:
                return trip()
            return real_compile(src, filename, mode, flags, *a, **k)

        builtins.compile = ast_only
        try:
            try:
                path = parse(source)
            except GuardPathError:
                return
            try:
                path.resolve(roots)
            except lookup_errors:
                pass
        finally:
            builtins.eval, builtins.exec, builtins.compile = saved
            _check_tripwires()

    return mode


# --------------------------------------------------------------------------- cli


def _cli_modes(workdir: str, data: bytes, env0, rng: random.Random) -> dict:
    """The CLI's read commands on mutated packages, untrusted (a key they lack) and
    trusted (no key, random identity sources injected)."""
    import contextlib
    import io

    from precompile import cli
    from precompile.identity import checks as identity
    from precompile.cli import listing as cli_listing
    from precompile.format import envelope as fmt

    sys.path.insert(0, workdir)
    cache = os.path.join(workdir, "cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    path = os.path.join(cache, "fmod.f-fuzz.pcpkg")
    real_check = identity.check_before_call
    real_guards = cli_listing.readable_guards
    _arm_tripwires()

    def mutated() -> bytes:
        manifest = dict(env0.manifest)
        if rng.random() < 0.3:
            b = bytearray(data)
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
            return bytes(b)
        if rng.random() < 0.5:
            field = rng.choice(list(manifest))
            manifest[field] = _mutate(manifest[field], rng, None)
        frames = manifest.get("frames")
        if isinstance(frames, list) and frames and rng.random() < 0.8:
            frames = [dict(f) if isinstance(f, dict) else f for f in frames]
            for fr in frames:
                if isinstance(fr, dict) and isinstance(fr.get("entries"), list):
                    fr["entries"] = [dict(e, identity=[
                        {"source": random_source(rng), "guard_type": "ID_MATCH",
                         "fingerprint": "function:x"}]) if isinstance(e, dict) else e
                        for e in fr["entries"]]
            manifest["frames"] = frames
        try:
            return fmt.encode(env0.meta, manifest, env0.blobs)
        except Exception:  # noqa: BLE001 - an unencodable mutation: use the original
            return data

    def run(argv: list[str]) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = cli.main(argv)
        if rc not in (0, 1, 2):
            raise AssertionError(f"{argv}: exit status {rc}")

    def untrusted() -> None:
        with open(path, "wb") as fh:
            fh.write(mutated())
        os.environ["PRECOMPILE_SIGNING_KEY"] = "fuzz-key"
        identity.check_before_call = _tripwire("identity check of an untrusted package")
        cli_listing.readable_guards = _tripwire("unpickling guards of an untrusted package")
        try:
            for argv in (["ls", cache, "--json"], ["verify", cache, "--json"],
                         ["inspect", path, "--json"], ["explain", "fmod:f", cache, "--json"]):
                run(argv)
        finally:
            identity.check_before_call, cli_listing.readable_guards = real_check, real_guards
            del os.environ["PRECOMPILE_SIGNING_KEY"]
            _check_tripwires()

    def trusted() -> None:
        with open(path, "wb") as fh:
            fh.write(mutated())
        try:
            for argv in (["verify", cache], ["inspect", path, "--no-guards"],
                         ["explain", "fmod:f", cache]):
                run(argv)
        finally:
            _check_tripwires()

    return {"cli": untrusted, "cli_trusted": trusted}


def _mutate(value, rng, code):
    choices = [None, 0, -1, 2 ** 70, "", "x", b"\x00", [], {}, code, 1.5, True]
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        i = rng.randrange(len(value))
        value[i] = _mutate(value[i], rng, code)
        return value
    if isinstance(value, dict) and value and rng.random() < 0.7:
        value = dict(value)
        k = rng.choice(list(value))
        if rng.random() < 0.2:
            del value[k]
        else:
            value[k] = _mutate(value[k], rng, code)
        return value
    return rng.choice(choices)


if __name__ == "__main__":
    sys.exit(main())
