#!/usr/bin/env python3
"""Time-boxed fuzz/soak of everything that reads untrusted bytes (issue 30, item 8).

    python bench/soak.py [--seconds 120] [--seed N] [--targets decode,archive] [--keep DIR]

Each *target* generates hostile inputs (random, mutated, and scaled-up shapes of tiny
tokens, compressed bombs, cut archives) and feeds them to one reader. For every input:

* the reader returns or raises one of the target's typed errors; anything else (a
  traceback) is a finding;
* its peak memory (tracemalloc) stays within the target's bound for the input's size (the
  bounds the README states), and its time within a generous linear bound;
* the worker runs in a child process, so a signal (a segfault, an OOM kill) or a hang is a
  finding too, not a dead CI job.

Prints iterations and findings per target with the seed to replay them; exit status 1 if
anything was found. Adding a reader (say, a store's reply parser) is adding a
:class:`Target` to ``TARGETS``: a generator of inputs, a function that reads one, the
errors it may raise, and its memory bound.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import traceback
from collections.abc import Callable
from typing import Any

MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Target:
    """One reader of untrusted bytes, and what it may cost."""

    generate: Callable[[random.Random], bytes]
    read: Callable[[bytes], Any]
    errors: tuple[type[BaseException], ...]
    max_memory: Callable[[int], int]  # bytes allowed for an input of this size
    seconds_per_mib: float = 20.0  # under tracemalloc, on a loaded machine
    base_seconds: float = 10.0


# ------------------------------------------------------------------ the decoder

def _envelope(body: bytes) -> bytes:
    from precompile.format import envelope as fmt

    head = fmt._HEADER.pack(fmt.MAGIC, fmt.FORMAT_VERSION, 0, len(body)) + body
    return head + hashlib.sha256(head).digest()


def _packb(value: Any) -> bytes:
    import msgpack

    return msgpack.packb(value, use_bin_type=True)


def _leaf(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return _packb(rng.choice([None, True, False, 0, 127, -1, -32, -33]))
    if kind == 1:
        return _packb(rng.choice([255, 65535, 2 ** 32, 2 ** 63, 2 ** 64 - 1, -(2 ** 63)]))
    if kind == 2:
        return _packb(rng.random())
    if kind == 3:
        return _packb("".join(rng.choice("ab\u00e9\u4e2d\U0001f600")
                              for _ in range(rng.choice([0, 1, 3, 40]))))
    if kind == 4:
        return _packb(os.urandom(rng.choice([0, 1, 3, 300])))
    if kind == 5:  # big ints, some sharing a hash
        p61 = (1 << 61) - 1
        return _ext(6, str(rng.choice([7 + rng.randrange(1 << 16) * p61, 10 ** 30,
                                       -(2 ** 70)])).encode())
    if kind == 6:
        if rng.random() < 0.2:  # msgpack's own timestamp type (-1)
            return b"\xd6\xff" + os.urandom(4)
        return _ext(rng.choice([5, 8, 0, 99]), os.urandom(rng.randrange(4)))
    return rng.choice([b"\x90", b"\x80", b"\xc1", b"\xdd\xff\xff\xff\xff", b"\xa5ab"])


def _ext(code: int, payload: bytes) -> bytes:
    import msgpack

    return msgpack.packb(msgpack.ExtType(code, payload))


def _array(items: list[bytes]) -> bytes:
    return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)


def _value(rng: random.Random, depth: int) -> bytes:
    """Random raw msgpack: arrays, maps (odd keys included) and ext values (tuples,
    frozensets, code objects, unknown types), nested up to ``depth``."""
    if depth <= 0 or rng.random() < 0.4:
        return _leaf(rng)
    width = rng.choice([0, 1, 2, 3, 18]) if depth <= 4 else rng.choice([0, 1, 1, 2])
    items = [_value(rng, depth - 1) for _ in range(width)]
    kind = rng.randrange(5)
    if kind == 0:
        return _array(items)
    if kind == 1:
        keys = [rng.choice([_packb("k%d" % i), _packb(i), _leaf(rng)]) for i in range(len(items))]
        return (b"\xdf" + len(items).to_bytes(4, "big")
                + b"".join(k + v for k, v in zip(keys, items)))
    return _ext(rng.choice([1, 2, 2, 3, 3, 4, 7, 9]), _array(items))


def _scaled(rng: random.Random) -> bytes:
    """A small value repeated to ~0.25-1 MiB (often one of the tokens that cost most
    memory per byte): a per-token blow-up shows as a multiple of the size, not hidden
    under the fixed slack."""
    tiny = [b"\x90", b"\x80", b"\xa3abc", b"\xfa", b"\xcb" + bytes(8), b"\x81\x00\xc0",
            _ext(8, b"a"), _ext(2, b"\x90"), _ext(3, b"\x91\x01")]
    one = rng.choice([_value(rng, 2), _leaf(rng), *tiny])
    n = max(1, rng.randint(MiB // 4, MiB) // max(1, len(one)))
    return _array([one] * n)


def _mutated(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        pos = rng.randrange(len(data))
        op = rng.random()
        if op < 0.6:
            data[pos] = rng.randrange(256)
        elif op < 0.8:
            del data[pos:pos + rng.randint(1, 16)]
        else:
            data[pos:pos] = os.urandom(rng.randint(1, 8))
    return bytes(data)


def _real_body(rng: random.Random) -> bytes:
    """A genuine body (code objects, tuples, frozensets, blobs), encoded by the library."""
    from precompile.format import envelope as fmt

    def f(x, y=2):
        return (x, y, (1, 2.5, "s"), frozenset({1, "a"}), 1 + 2j, ..., 2 ** 80, slice(1, 2))

    blob = os.urandom(rng.randrange(2048))
    data = fmt.encode({"factors": {"function": "m:f"}, "saved": 1.0},
                      {"code": f.__code__, "v": [((1,),)] * 3}, {fmt.sha256_hex(blob): blob})
    return data[fmt._HEADER.size:-32]


def _decode_input(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind < 2:
        return _envelope(_mutated(rng, _real_body(rng)))
    value = _scaled(rng) if kind == 2 else _value(rng, rng.choice([2, 4, 8, 40]))
    body = (b"\x83" + _packb("meta") + b"\x81" + _packb("x") + value + _packb("manifest")
            + b"\x80" + _packb("blobs") + b"\x80")
    return _envelope(_mutated(rng, body) if kind >= 6 else body)


def _decode_target() -> Target:
    from precompile.format import decode_limits as dl
    from precompile.format import envelope as fmt
    from precompile.errors import PackageError

    def bound(size: int) -> int:  # README: (MEMORY_MULTIPLE + 2) x the package + slack
        return (dl.MEMORY_MULTIPLE + 2) * size + dl.MEMORY_SLACK + 4 * MiB

    return Target(_decode_input, fmt.decode, (PackageError,), bound)


# ------------------------------------------------------------ archive import

_ARCHIVE_LIMITS = dict(max_package_bytes=1 * MiB, max_total_bytes=16 * MiB, max_members=200,
                       max_seconds=60.0)


def _member(rng: random.Random) -> tuple[tarfile.TarInfo, bytes | int | None]:
    """A tar member: a package (good, cut or flipped), junk, zeros (a bomb), a directory,
    a link, a long or odd name."""
    from precompile.format import envelope as fmt

    fn = "f%d" % rng.randrange(5)
    name = rng.choice([f"{fn}.pcpkg", "junk.bin", "d/" * 60 + "x.pcpkg", ".hidden.pcpkg",
                       "../up.pcpkg", "blob-" + "a" * 64 + ".pcpkg", "\x1b[31m.pcpkg"])
    info = tarfile.TarInfo(name)
    kind = rng.randrange(6)
    if kind == 0:
        info.type = rng.choice([tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.FIFOTYPE])
        info.linkname = "/etc/passwd"
        return info, None
    if kind == 1:
        return info, rng.choice([0, 1 << 20, 4 << 20, 24 << 20])
    meta = {"saved": rng.random(), "function": f"m:{fn}", "factors": {"function": f"m:{fn}"}}
    data = fmt.encode(meta, {"v": [1, 2]}, {})
    if kind == 2:
        data = _mutated(rng, data)
    elif kind == 3:
        data = os.urandom(rng.randrange(4096))
    return info, data


def _archive_input(rng: random.Random) -> bytes:
    out = io.BytesIO()
    mode = rng.choice(["w", "w:gz", "w:bz2", "w:xz"])
    fmt_ = rng.choice([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    headers = {"comment": "x" * rng.choice([0, 10, 2 * MiB])} if fmt_ == tarfile.PAX_FORMAT else {}
    with tarfile.open(fileobj=out, mode=mode, format=fmt_,  # type: ignore[call-overload]
                      pax_headers=headers) as tar:
        for _ in range(rng.choice([0, 1, 2, 5])):
            info, data = _member(rng)
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, io.BufferedReader(_Zeros(data)))
            elif data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    data = out.getvalue()
    if rng.random() < 0.3:
        data = data[:rng.randrange(len(data) + 1)] if rng.random() < 0.5 else _mutated(rng, data)
    return data


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _archive_target() -> Target:
    from precompile.read import archive
    from precompile.format import decode_limits as dl

    def read(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.tar")
            with open(path, "wb") as fh:
                fh.write(data)
            staging = os.path.join(d, "staging")
            os.mkdir(staging, 0o700)
            archive.stage(path, staging, signing_key=b"k" if data[-1:] == b"\x00" else None,
                          limits=archive.Limits(**_ARCHIVE_LIMITS))

    def bound(size: int) -> int:  # one package decoded at a time, plus tar's buffers
        return (dl.MEMORY_MULTIPLE + 2) * _ARCHIVE_LIMITS["max_package_bytes"] + (
            dl.MEMORY_SLACK + 8 * MiB)

    return Target(_archive_input, read, (archive.ArchiveError,), bound,
                  seconds_per_mib=200.0, base_seconds=60.0)


TARGETS: dict[str, Callable[[], Target]] = {"decode": _decode_target,
                                            "archive": _archive_target}


# ------------------------------------------------------------------ running

def _check(name: str, target: Target, data: bytes) -> str | None:
    """None, or what is wrong with reading ``data``."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.monotonic()
    try:
        target.read(data)
    except target.errors:
        pass
    except Exception:  # noqa: BLE001 - anything untyped is a finding
        return traceback.format_exc(limit=-6)
    seconds = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    if peak > target.max_memory(len(data)):
        return f"peak memory {peak} bytes for a {len(data)}-byte input (bound " \
               f"{target.max_memory(len(data))})"
    limit = target.base_seconds + target.seconds_per_mib * len(data) / MiB
    if seconds > limit:
        return f"{seconds:.1f} s for a {len(data)}-byte input (bound {limit:.1f} s)"
    return None


def worker(names: list[str], seconds: float, seed: int, keep: str | None) -> int:
    targets = {name: TARGETS[name]() for name in names}
    counts = dict.fromkeys(targets, 0)
    findings: dict[str, list[str]] = {name: [] for name in targets}
    tracemalloc.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, target in targets.items():
            rng = random.Random(f"{seed}-{name}-{counts[name]}")
            data = target.generate(rng)
            problem = _check(name, target, data)
            if problem and len(findings[name]) < 20:
                findings[name].append(f"[seed {seed} {name} #{counts[name]}] {problem}")
                if keep:
                    with open(os.path.join(keep, f"{name}-{counts[name]}.bin"), "wb") as fh:
                        fh.write(data)
            counts[name] += 1
    for name in targets:
        print(f"{name:>10}: {counts[name]:>6} inputs, {len(findings[name])} findings")
        for text in findings[name]:
            print("    " + text.replace("\n", "\n    "))
    return 1 if any(findings.values()) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--keep", default=None, help="write inputs with findings here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    names = args.targets.split(",")
    if args.worker:
        return worker(names, args.seconds, seed, args.keep)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seconds",
           str(args.seconds), "--seed", str(seed), "--targets", args.targets]
    if args.keep:
        cmd += ["--keep", args.keep]
    print(f"soak: {args.seconds:.0f} s over {', '.join(names)}, seed {seed}", flush=True)
    try:
        proc = subprocess.run(cmd, timeout=args.seconds + 300, check=False)
    except subprocess.TimeoutExpired:
        print(f"soak: FINDING: the worker hung (seed {seed})")
        return 1
    if proc.returncode < 0:
        print(f"soak: FINDING: the worker died of signal {-proc.returncode} (seed {seed})")
        return 1
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
