"""Crafted packages against the decoder and the CLI: whatever a package holds, decoding it
is bounded (nesting, total size, containers, key types), a code object is checked before
``CodeType.replace`` builds it, metadata has its types, and the CLI prints nothing raw from
a package, never changes ``sys.path`` and refuses an empty signing key.

Packages are built by hand (raw msgpack where ``format.encode`` would refuse the value).
Anything that crashed the interpreter before is decoded in a child process, so a segfault
fails the test instead of killing pytest.
"""
from __future__ import annotations

import dis
import hashlib
import io
import json
import logging
import opcode
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import msgpack
import pytest

from precompile import cli
from precompile.format import envelope as fmt
from precompile.format.code_check import VALID_OPCODES, cache_entries, check_code_fields
from precompile.errors import FormatError, SettingError
from precompile.policy import Policy

# ------------------------------------------------------------------ building packages


def _envelope(body: bytes) -> bytes:
    """A well-checksummed, unsigned package around raw body bytes."""
    head = fmt._HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(body)) + body
    return head + hashlib.sha256(head).digest()


def _body(meta: bytes = b"\x80", manifest: bytes = b"\x80") -> bytes:
    """A body map whose meta and manifest are given as raw msgpack."""
    return (b"\x83" + msgpack.packb("meta") + meta + msgpack.packb("manifest") + manifest
            + msgpack.packb("blobs") + b"\x80")


def _nested_tuples(depth: int, leaf: bytes = msgpack.packb(1)) -> bytes:
    """``((...(leaf,)...),)``: one ext value per level, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = msgpack.packb(msgpack.ExtType(fmt.EXT_TUPLE, b"\x91" + value))
    return value


def _map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A raw msgpack map of already-packed keys and values."""
    return (b"\xdf" + len(pairs).to_bytes(4, "big")
            + b"".join(k + v for k, v in pairs))


CHILD = """
import json, sys
from precompile.format import envelope as fmt
for path in sys.argv[1:]:
    try:
        fmt.decode(open(path, "rb").read())
        out = "ok"
    except fmt.FormatError as e:
        out = f"FormatError: {e}"
    except BaseException as e:
        out = f"OTHER {type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
"""


def decode_in_child(tmp_path: Path, packages: dict[str, bytes]) -> dict[str, str]:
    """Decode each package in one child process; the outcome by name. A crash of the
    child (a segfault) fails the calling test."""
    paths = []
    for i, data in enumerate(packages.values()):
        path = tmp_path / f"p{i}.pcpkg"
        path.write_bytes(data)
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 0, (f"decoding crashed the interpreter (exit {proc.returncode})"
                                  f"\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dict(zip(packages, (json.loads(line) for line in proc.stdout.splitlines())))


# ------------------------------------------------- finding 1: nested ext values


def test_deeply_nested_values_are_refused_without_crashing(tmp_path: Path) -> None:
    """300 nested tuples (1.5 KB) overflowed the C stack: each level called msgpack again."""
    packages = {depth: _envelope(_body(meta=_map([(msgpack.packb("x"),
                                                   _nested_tuples(depth))])))
                for depth in (10, 300, 5000)}
    out = decode_in_child(tmp_path, packages)
    assert out[10] == "ok"
    for depth in (300, 5000):
        assert out[depth].startswith("FormatError") and "nested" in out[depth], out[depth]


def test_nesting_cannot_multiply_memory() -> None:
    """Every level held a copy of the rest: 30 levels around 512 KiB decoded 15 MiB."""
    leaf = msgpack.packb(b"\x00" * (512 << 10), use_bin_type=True)
    data = _envelope(_body(meta=_map([(msgpack.packb("x"), _nested_tuples(30, leaf))])))
    with pytest.raises(FormatError, match="total size"):
        fmt.decode(data)


def test_values_a_real_package_nests_still_decode() -> None:
    def outer(x):
        def middle(y):
            def inner(z):
                return (x, y, z, ((1, 2), (3, (4, 5))), frozenset({1}), 1 + 2j, ..., 2 ** 80)
            return inner
        return middle

    env = fmt.decode(fmt.encode({}, {"code": outer.__code__, "v": ((((1,),),),)}, {}))
    assert env.manifest["code"].co_consts == outer.__code__.co_consts
    assert env.manifest["v"] == ((((1,),),),)


# ------------------------------------------------------ finding 6: map keys

BAD_KEYS = {
    "big int": msgpack.packb(msgpack.ExtType(fmt.EXT_BIGINT, str(2 ** 70).encode())),
    "tuple": _nested_tuples(1),
    "float": msgpack.packb(1.5),
    "bytes": msgpack.packb(b"k", use_bin_type=True),
    "nil": msgpack.packb(None),
}


@pytest.mark.parametrize("kind", BAD_KEYS)
def test_map_keys_are_strings_or_small_ints(kind: str) -> None:
    data = _envelope(_body(meta=_map([(BAD_KEYS[kind], b"\xc0")])))
    with pytest.raises(FormatError, match="map key"):
        fmt.decode(data)


def test_colliding_keys_are_refused_before_a_map_is_built() -> None:
    """Big ints that all hash to 0: building the map was quadratic (683 KiB -> 6.4 s)."""
    modulus = (1 << 61) - 1
    keys = [msgpack.packb(msgpack.ExtType(fmt.EXT_BIGINT, str(modulus * (i + 1) << 70)
                                          .encode())) for i in range(20000)]
    with pytest.raises(FormatError, match="map key"):
        fmt.decode(_envelope(_body(meta=_map([(k, b"\xc0") for k in keys]))))


def test_string_and_integer_keys_decode() -> None:
    meta = _map([(msgpack.packb("a"), b"\x01"), (msgpack.packb(-5), b"\x02"),
                 (msgpack.packb(2 ** 64 - 1), b"\x03")])
    assert fmt.decode(_envelope(_body(meta=meta))).meta == {"a": 1, -5: 2, 2 ** 64 - 1: 3}


# ------------------------------------------------ finding 3: code objects


def _ins(name: str, arg: int = 0) -> bytes:
    """One instruction of this interpreter, with its inline cache entries."""
    op = opcode.opmap[name]
    return bytes([op, arg]) + b"\x00\x00" * cache_entries(op)


RETURN_NONE = _ins("RESUME") + _ins("LOAD_CONST") + _ins("RETURN_VALUE")


def _invalid_opcode() -> int:
    """An instrumented opcode where this Python has them (on 3.12 and 3.13,
    ``INSTRUMENTED_LINE`` in ``co_code`` made ``CodeType.replace`` segfault), else the
    highest opcode number it does not define."""
    instrumented = opcode.opmap.get("INSTRUMENTED_LINE",
                                    getattr(opcode, "MIN_INSTRUMENTED_OPCODE", None))
    if instrumented is not None:
        return int(instrumented)
    return max(op for op in range(256) if opcode.opname[op].startswith("<"))


def _specialized_opcode() -> int | None:
    """A specialized (quickened) form such as ``LOAD_ATTR_INSTANCE_VALUE``: never in stored
    bytecode (3.13 maps them by name, 3.11/3.12 list their names)."""
    by_name = dict(getattr(dis, "_all_opmap", {}))
    by_name.update(getattr(opcode, "_specialized_opmap", {}))
    names = list(getattr(opcode, "_specialized_opmap", {})) or list(
        getattr(opcode, "_specialized_instructions", []))
    return next((by_name[n] for n in names if n in by_name and by_name[n] < 256), None)


def _op_with_caches() -> str:
    return next(opcode.opname[op] for op in sorted(VALID_OPCODES) if cache_entries(op))


def _code_package(**changes: object) -> bytes:
    """A package whose manifest holds one code object: ``RETURN_NONE``'s fields with
    ``changes`` applied, packed as the format packs code (never through ``replace``)."""
    fields = {name: getattr(_template.__code__, name) for name in fmt.CODE_FIELDS}
    fields.update(co_code=RETURN_NONE, co_linetable=b"", co_exceptiontable=b"",
                  co_consts=(None,))
    fields.update(changes)
    ext = msgpack.ExtType(fmt.EXT_CODE, fmt._pack([fields[n] for n in fmt.CODE_FIELDS]))
    return fmt.encode({}, {"code": ext}, {})


def _template(a, b):
    return None


SPECIALIZED = _specialized_opcode()
BAD_CODE = {
    "instrumented or unknown opcode": (
        {"co_code": _ins("RESUME") + bytes([_invalid_opcode(), 0]) + RETURN_NONE[2:]},
        "not an instruction"),
    "specialized opcode": (
        {"co_code": _ins("RESUME") + bytes([SPECIALIZED or 0, 0]) + RETURN_NONE[2:]},
        "not an instruction"),
    "cache slot as an instruction": ({"co_code": b"\x00\x00" + RETURN_NONE},
                                     "not an instruction"),
    "inline caches cut off": ({"co_code": RETURN_NONE + bytes([opcode.opmap[_op_with_caches()],
                                                               0])}, "inline caches"),
    "constant index": ({"co_code": _ins("RESUME") + _ins("LOAD_CONST", 200)
                        + _ins("RETURN_VALUE")}, "constant 200 out of range"),
    "local index": ({"co_code": _ins("RESUME") + _ins("LOAD_FAST", 50)
                     + _ins("RETURN_VALUE")}, "local 50 out of range"),
    "name index": ({"co_code": _ins("RESUME") + _ins("LOAD_GLOBAL", 100)
                    + _ins("RETURN_VALUE")}, "out of range"),
    "jump out of the code": ({"co_code": _ins("RESUME") + _ins("JUMP_FORWARD", 100)
                              + RETURN_NONE[2:]}, "jumps outside"),
    "EXTENDED_ARG at the end": ({"co_code": RETURN_NONE + _ins("EXTENDED_ARG", 1)},
                                "EXTENDED_ARG"),
    "odd co_code length": ({"co_code": RETURN_NONE + b"\x53"}, "impossible length"),
    "empty co_code": ({"co_code": b""}, "impossible length"),
    "line table truncated": ({"co_linetable": b"\xf0\x41"}, "co_linetable"),
    "line table garbage": ({"co_linetable": b"\x01\x02"}, "co_linetable"),
    "line table too short": ({"co_linetable": b"\xf8"}, "does not cover"),
    "exception table truncated": ({"co_exceptiontable": b"\x80\x41"}, "co_exceptiontable"),
    "exception handler outside": ({"co_exceptiontable": b"\x80\x32\x00\x00"}, "outside"),
    "exception entry marker mid-entry": ({"co_exceptiontable": b"\x80\x01\x80\x00"},
                                         "co_exceptiontable"),
    "exception depth": ({"co_exceptiontable": b"\x80\x01\x00\x3e"}, "deeper"),
    "co_nlocals mismatch": ({"co_nlocals": 7}, "co_nlocals"),
    "negative count": ({"co_stacksize": -1}, "co_stacksize"),
    "huge count": ({"co_argcount": 2 ** 40}, "co_argcount"),
    "names not strings": ({"co_names": (1,)}, "co_names"),
    "unstorable constant": ({"co_consts": (None, [1, 2])}, "constant"),
}


def test_malformed_code_objects_are_format_errors_not_crashes(tmp_path: Path) -> None:
    cases = {name: _code_package(**changes) for name, (changes, _) in BAD_CODE.items()
             if name != "specialized opcode" or SPECIALIZED is not None}
    out = decode_in_child(tmp_path, {"valid": _code_package(), **cases})
    assert out.pop("valid") == "ok"
    wrong = {name: got for name, got in out.items()
             if not (got.startswith("FormatError") and BAD_CODE[name][1] in got)}
    assert not wrong, wrong


def _stdlib_code_objects() -> list:
    import argparse
    import asyncio.tasks
    import dataclasses
    import json.decoder
    import typing

    out, todo = [], []
    for mod in (argparse, asyncio.tasks, dataclasses, json.decoder, typing):
        with open(mod.__file__, encoding="utf-8") as fh:
            todo.append(compile(fh.read(), mod.__file__, "exec"))
    while todo:
        code = todo.pop()
        out.append(code)
        todo.extend(c for c in code.co_consts if isinstance(c, type(code)))
    return out


def test_real_code_objects_pass_the_check_and_round_trip() -> None:
    """No false refusals: every code object of a few stdlib modules (loops, try/except,
    comprehensions, async, closures, long jumps) is accepted and rebuilt identical."""
    codes = _stdlib_code_objects()
    assert len(codes) > 500
    for code in codes:
        check_code_fields({name: getattr(code, name) for name in fmt.CODE_FIELDS})
    top = [c for c in codes if c.co_name == "<module>"]
    env = fmt.decode(fmt.encode({}, {"codes": top}, {}))
    assert [c.co_code for c in env.manifest["codes"]] == [c.co_code for c in top]


# -------------------------------------------------- finding 17: metadata fields

BAD_META = {
    "created": 10 ** 400, "saved": 1e308, "entries": -1,
    "function": 3, "factors": [1], "backend_name": 5,
}


@pytest.mark.parametrize("field", BAD_META)
def test_metadata_fields_have_their_types_and_ranges(field: str) -> None:
    with pytest.raises(FormatError, match=field):
        fmt.decode(fmt.encode({field: BAD_META[field]}, {}, {}))


def _manifest(function: str) -> tuple[dict[str, object], dict[str, bytes]]:
    """A manifest the library would install (one frame, one entry), and its blobs."""
    guards, art = b"guard state", b"artifact bytes"
    manifest = {
        "key": "f-0", "function": function, "devices": [], "bypasses": [], "sources": [],
        "frames": [{"role": "main", "module": "umod", "qualname": function, "fingerprint": "ab",
                    "code": None, "global_name": None, "skipped": False,
                    "entries": [{"guards": fmt.sha256_hex(guards), "code": _template.__code__,
                                 "backends": ["__compiled_fn_1_x"], "imports": {},
                                 "identity": []}]}],
        "artifacts": {"__compiled_fn_1_x": {"kind": "fx_graph", "blob": fmt.sha256_hex(art),
                                            "has_backward": False}},
    }
    return manifest, {fmt.sha256_hex(guards): guards, fmt.sha256_hex(art): art}


def _cache_with(tmp_path: Path, meta: dict[str, object], key: str = "umod.f-0") -> Path:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    path = cache / f"{key}.pcpkg"
    path.write_bytes(fmt.encode(meta, *_manifest(str(meta.get("function", "f")))))
    path.chmod(0o600)
    return cache


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PRECOMPILE_* variables, cwd a fresh directory that is not on sys.path."""
    for name in list(os.environ):
        if name.startswith("PRECOMPILE_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("field", ["created", "saved"])
def test_ls_survives_a_huge_time(clean_env: Path, field: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cache = _cache_with(clean_env, {field: 10 ** 400, "function": "umod:f"})
    assert cli.main(["ls", str(cache)]) == 0
    assert "umod.f-0" in capsys.readouterr().out


def test_import_refuses_a_huge_time_without_a_traceback(
        clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = clean_env / "cache.tar.gz"
    data = fmt.encode({"saved": 10 ** 400, "function": "umod:f"}, *_manifest("umod:f"))
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("umod.f-0.pcpkg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert cli.main(["import", str(archive), "--cache", str(clean_env / "dest")]) == 2
    assert "saved is not a time" in capsys.readouterr().err


# ------------------------------------------- finding 18: nothing printed raw

HOSTILE = "umod:f\x1b]0;owned\x07\x1b[2J\u202eevil\nFAKE LINE"


def test_cli_escapes_what_packages_say(clean_env: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cache = _cache_with(clean_env, {"function": HOSTILE, "factors": {"function": HOSTILE}},
                        key="umod.f-0")
    for argv in (["ls", str(cache)], ["verify", str(cache), "-v"],
                 ["inspect", "umod.f-0", "--cache", str(cache)]):
        cli.main(argv)
        out = capsys.readouterr()
        text = out.out + out.err
        assert not any(ch in text for ch in "\x1b\x07\u202e"), (argv, text)
        assert "FAKE LINE" not in text.replace("\\nFAKE LINE", ""), (argv, text)
    cli.main(["ls", str(cache)])
    assert "\\x1b]0;owned\\x07" in capsys.readouterr().out


# ---------------------------------------- finding 16: an empty signing key


def test_empty_signing_key_variable_is_a_setting_error(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "")
    with caplog.at_level(logging.WARNING, logger="precompile"):
        policy = Policy.resolve(cache_dir=clean_env / "cache")
    assert policy.store is None and policy.signing_key is None  # nothing read or written
    assert "PRECOMPILE_SIGNING_KEY is set but empty" in caplog.text
    with pytest.raises(SettingError, match="set but empty"):
        Policy.resolve(cache_dir=clean_env / "cache", strict=True)


def test_verify_refuses_an_empty_signing_key(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cache = _cache_with(clean_env, {"function": "umod:f"})
    monkeypatch.setenv("PRECOMPILE_SIGNING_KEY", "")
    assert cli.main(["verify", str(cache)]) == 2
    assert "PRECOMPILE_SIGNING_KEY is set but empty" in capsys.readouterr().err


# ----------------------------------------------- finding 9: sys.path untouched


def test_cli_never_changes_sys_path(clean_env: Path) -> None:
    cache = _cache_with(clean_env, {"function": "umod:f"})
    before = list(sys.path)
    cli.main(["verify", str(cache)])
    assert sys.path == before


def test_verify_runs_nothing_from_the_current_directory(clean_env: Path) -> None:
    """A ``msgpack.py`` where the user runs ``precompile verify`` must not run (the
    installed script, like ``python -P``, does not put the directory on sys.path itself)."""
    cache = _cache_with(clean_env, {"function": "umod:f"})
    marker = clean_env / "ran"
    for name in ("msgpack", "torch", "filelock"):
        (Path.cwd() / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name}')\n"
                                               "raise SystemExit(9)\n")
    proc = subprocess.run([sys.executable, "-P", "-m", "precompile.cli", "verify", str(cache)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert not marker.exists(), marker.read_text()
    assert proc.returncode in (0, 1), proc.stderr


def test_explain_still_finds_a_module_in_the_current_directory(
        clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (Path.cwd() / "hostile_umod.py").write_text("def f(x):\n    return x\n")
    before = list(sys.path)
    try:
        rc = cli.main(["explain", "hostile_umod:f", str(clean_env / "cache")])
    finally:
        sys.modules.pop("hostile_umod", None)
    assert sys.path == before
    assert rc == 1 and "would MISS" in capsys.readouterr().out


def test_python_dash_m_precompile_runs_the_cli(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "precompile", "ls", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("PRECOMPILE_")})
    assert proc.returncode == 0, proc.stderr
    assert "no packages" in proc.stdout

