"""Decoding a package costs at most a stated multiple of its size: small tokens that become
large objects (3-byte strings, empty lists and maps, map pairs, ext references) are charged
what CPython allocates for them before msgpack builds anything, and set members chosen to
share one hash are refused.

Peak memory is measured in a child process (its peak RSS around the decode: the real
memory, allocator included), so one shape's high-water mark never hides another's.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import msgpack
import pytest

from precompile.format import decode_limits as dl
from precompile.format import envelope as fmt
from precompile.errors import FormatError

# What the README promises: peak memory <= GUARANTEE x the package + GUARANTEE_SLACK.
GUARANTEE = dl.MEMORY_MULTIPLE + 2  # the budget, plus the body's copy and msgpack's buffer
GUARANTEE_SLACK = dl.MEMORY_SLACK + (8 << 20)  # interpreter noise in ru_maxrss
P61 = (1 << 61) - 1


def _envelope(body: bytes) -> bytes:
    head = fmt._HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(body)) + body
    return head + hashlib.sha256(head).digest()


def _package(value: bytes) -> bytes:
    """A well-checksummed package whose meta is ``{"x": value}`` (raw msgpack)."""
    return _envelope(b"\x83" + msgpack.packb("meta") + b"\x81" + msgpack.packb("x") + value
                     + msgpack.packb("manifest") + b"\x80" + msgpack.packb("blobs") + b"\x80")


def _array(item: bytes, n: int) -> bytes:
    return b"\xdd" + n.to_bytes(4, "big") + item * n


def _ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def _colliding_frozenset(n: int) -> bytes:
    """The issue's proof of concept: big ints ``7 + k*(2**61-1)`` all hash to 7."""
    members = b"".join(_ext(fmt.EXT_BIGINT, str(7 + k * P61).encode()) for k in range(n))
    return _ext(fmt.EXT_FROZENSET, b"\xdd" + n.to_bytes(4, "big") + members)


def _shapes(n: int) -> dict[str, bytes]:
    return {
        "3-byte strings": _array(b"\xa3abc", n),
        "empty lists": _array(b"\x90", n),
        "empty maps": _array(b"\x80", n),
        "negative ints": _array(b"\xfa", n),
        "map pairs": b"\xdf" + n.to_bytes(4, "big") + b"\x00\xc0" * n,
        "references": _array(_ext(fmt.EXT_REF, b"a"), n),
        "empty tuples": _array(_ext(fmt.EXT_TUPLE, b"\x90"), n),
        "floats": _array(msgpack.packb(1.5), n),
    }


CHILD = """
import json, sys, time
from precompile.format import envelope as fmt

def peak_rss():  # this process image's own high-water mark (ru_maxrss keeps the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

data = open(sys.argv[1], "rb").read()
before = peak_rss()
start = time.perf_counter()
try:
    fmt.decode(data)
    out = "ok"
except fmt.FormatError as e:
    out = "FormatError: " + str(e)
seconds = time.perf_counter() - start
print(json.dumps({"out": out, "grew": peak_rss() - before, "seconds": seconds}))
"""


def _decode_in_child(tmp_path: Path, data: bytes) -> dict:
    path = tmp_path / "p.pcpkg"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_memory_is_a_bounded_multiple_of_the_package(tmp_path: Path, shape: str) -> None:
    """3 MiB of tiny tokens: on main a list of 3-byte strings took ~16x its size, empty
    lists and maps ~70x, references ~33x; now at most GUARANTEE x + slack, decoded or
    refused, in time linear in the size."""
    data = _package(_shapes((3 << 20) // max(1, len(_shapes(1)[shape]) - 5))[shape])
    result = _decode_in_child(tmp_path, data)
    assert result["out"] == "ok" or "decoding bound" in result["out"], result["out"]
    assert result["grew"] <= GUARANTEE * len(data) + GUARANTEE_SLACK, (
        f"{shape}: {result['grew'] / len(data):.1f}x a {len(data)}-byte package")
    assert result["seconds"] < 10 + 10 * len(data) / (1 << 20), result


@pytest.mark.parametrize("shape", list(_shapes(1)))
def test_the_cost_model_is_an_upper_bound_of_what_decoding_allocates(shape: str) -> None:
    """With the budget lifted, what the decoder charged is at least what tracemalloc saw
    allocated (so the budget bounds real memory), and within 5x of it (so real packages
    are not refused for an estimate far above what they cost)."""
    body = _package(_shapes(20000)[shape])[fmt._HEADER.size:-32]
    unpacker = dl.BoundedUnpacker(fmt._DECODERS, 1 << 30, fmt._unknown_ext)
    budget = unpacker._memory_left
    tracemalloc.start()
    try:
        unpacker.decode(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    charged = budget - unpacker._memory_left
    assert peak <= charged <= 5 * peak, (peak, charged)


def test_colliding_frozenset_members_are_refused_quickly() -> None:
    """40k members sharing one hash (1.6 MB) took 9.7 s on main: the square of N."""
    data = _package(_colliding_frozenset(40000))
    start = time.perf_counter()
    with pytest.raises(FormatError, match="one hash"):
        fmt.decode(data)
    assert time.perf_counter() - start < 5


def test_members_with_distinct_hashes_sharing_low_bits_decode_in_linear_time() -> None:
    """Distinct hashes that agree in their low 40 bits (the slots a small table probes
    first): CPython's probing uses every bit, so the set still builds in linear time."""
    n = 40000
    members = b"".join(_ext(fmt.EXT_BIGINT, str(7 + (k << 40) + P61 * 3).encode())
                       for k in range(n))
    data = _package(_ext(fmt.EXT_FROZENSET, b"\xdd" + n.to_bytes(4, "big") + members))
    start = time.perf_counter()
    assert len(fmt.decode(data).meta["x"]) == n
    assert time.perf_counter() - start < 5


def test_genuine_sets_with_a_few_shared_hashes_decode() -> None:
    """-1 and -2 share a hash, as do a few 64-bit ints: sets a compiler writes stay fine."""
    value = frozenset({-1, -2, 7, 7 + P61, 7 + 2 * P61, "a", b"b", 1.5, (1, 2)})
    env = fmt.decode(fmt.encode({}, {"v": value}, {}))
    assert env.manifest["v"] == value


def test_a_big_int_has_at_most_the_default_digit_limit(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """``sys.set_int_max_str_digits(0)`` lifts Python's cap; ours stays (parsing is
    quadratic in the digits)."""
    monkeypatch.setattr(sys, "get_int_max_str_digits", lambda: 0, raising=False)
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(FormatError, match="digits"):
            fmt.decode(_package(_ext(fmt.EXT_BIGINT, b"9" * 200_000)))
    finally:
        sys.set_int_max_str_digits(4300)
    assert fmt.decode(_package(_ext(fmt.EXT_BIGINT, b"9" * 4300))).meta["x"] == 10 ** 4300 - 1


def test_a_code_dense_package_stays_inside_the_budget() -> None:
    """Code objects with many constants and little else (real packages also carry guard
    and graph blobs, charged about their size): still inside the budget."""
    def f(x):
        return (x, (1, 2.5, "s"), frozenset({1, 2}), 1 + 2j, ..., 2 ** 80)

    data = fmt.encode({"factors": {"function": "m:f"}},
                      {"code": [f.__code__] * 50, "names": ["n" * 20] * 200},
                      {fmt.sha256_hex(b"g" * 4096): b"g" * 4096})
    body = data[fmt._HEADER.size:-32]
    unpacker = dl.BoundedUnpacker(fmt._DECODERS, len(body), fmt._unknown_ext)
    budget = unpacker._memory_left
    unpacker.decode(body)
    assert budget - unpacker._memory_left <= 0.85 * dl.MEMORY_MULTIPLE * len(body)
