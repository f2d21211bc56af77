"""Fuzzing the reader: whatever the bytes, loading raises only precompile.errors types and
never executes package content. (A longer run: bench/fuzz_format.py.)"""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precompile.format import envelope as fmt
from precompile.errors import PackageError
from precompile.package.manifest import from_manifest


def _real_package() -> bytes:
    def f(x):
        return x * 2

    guards = pickle.dumps({"pretend": "guard state"})
    art = b"artifact bytes"
    manifest = {
        "key": "f-0", "function": "m:f", "devices": ["cpu"], "bypasses": [],
        "sources": [{"module": "m", "qualname": "f", "first_line": 1, "last_line": 3,
                     "sha256": "0" * 64, "text": "def f(x):\n    return x * 2\n"}],
        "frames": [{"role": "main", "module": "m", "qualname": "f", "fingerprint": "ab",
                    "code": None, "global_name": None, "skipped": False,
                    "entries": [{"guards": fmt.sha256_hex(guards), "code": f.__code__,
                                 "backends": ["__compiled_fn_1_x"], "imports": {},
                                 "identity": []}]}],
        "artifacts": {"__compiled_fn_1_x": {"kind": "fx_graph", "blob": fmt.sha256_hex(art),
                                            "has_backward": True}},
    }
    return fmt.encode({"factors": {"function": "m:f"}}, manifest,
                      {fmt.sha256_hex(guards): guards, fmt.sha256_hex(art): art})


REAL = _real_package()
_MAIN = (lambda x: x).__code__


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch):
    """Reading a package must never unpickle: make any attempt fail the test."""
    def boom(*a, **k):
        raise AssertionError("package content was unpickled while reading")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)


def _read(data: bytes) -> None:
    env = fmt.decode(data)
    from_manifest(_MAIN, "m", {}, env.manifest, env.blobs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(1, 255)), min_size=1,
                max_size=8),
       st.integers(0, len(REAL)))
def test_mutated_bytes_raise_only_package_errors(flips, cut) -> None:
    data = bytearray(REAL)
    for pos, xor in flips:
        data[pos] ^= xor
    mutated = bytes(data[:cut] if cut < len(REAL) // 2 else data)
    if mutated == REAL:
        return  # the flips cancelled out
    try:
        _read(mutated)
    except PackageError:
        return
    raise AssertionError("a mutated package was accepted")


def _structural_mutations():
    leaf = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=5),
                     st.booleans(), st.just(_MAIN))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=4), c, max_size=3)),
                        max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["key", "frames", "artifacts", "sources", "devices"]),
       _structural_mutations())
def test_well_checksummed_but_malformed_manifests_are_format_errors(field, value) -> None:
    """A tampered package whose checksum was recomputed still only raises PackageError."""
    env = fmt.decode(REAL)
    manifest = dict(env.manifest)
    manifest[field] = value
    try:
        data = fmt.encode(env.meta, manifest, env.blobs)
    except (PackageError, ValueError):
        return
    try:
        _read(data)
    except PackageError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data) -> None:
    with pytest.raises(PackageError):
        fmt.decode(data)


def test_body_level_fuzz_of_msgpack_decoding() -> None:
    """Bypass the checksum and feed mutated bodies to the msgpack layer directly."""
    import random

    rng = random.Random(1234)
    body = REAL[fmt._HEADER.size:-32]
    for _ in range(2000):
        b = bytearray(body)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            fmt._unpack(bytes(b))
        except PackageError:
            pass


def test_crafted_nesting_keys_and_code_objects() -> None:
    """The long fuzzer's hand-crafted modes, briefly: ext values nested thousands deep,
    colliding and odd map keys, mutated code objects. In a child process, so a crash
    (the C stack, ``CodeType.replace``) fails this test instead of killing pytest."""
    fuzzer = Path(__file__).resolve().parents[2] / "bench" / "fuzz_format.py"
    proc = subprocess.run([sys.executable, str(fuzzer), "--modes", "nested,keys,code",
                           "--seconds", "3", "--seed", "1"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (f"exit {proc.returncode}\n{proc.stdout[-3000:]}"
                                  f"\n{proc.stderr[-3000:]}")
    assert "0 findings" in proc.stdout
