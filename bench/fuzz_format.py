#!/usr/bin/env python3
"""Long fuzz run of the package reader (the test suite runs a short one: tests/test_fuzz.py).

    python bench/fuzz_format.py [--seconds 300] [--seed 0]

Mutates a real package (written by a real compile in a subprocess) three ways: random byte
flips/truncations/insertions (must fail the checksum), mutated msgpack bodies fed past the
checksum, and structurally mutated manifests re-encoded with a valid checksum. Every outcome
must be a precompile.errors.PackageError (or a clean accept for harmless manifest changes);
anything else is a finding. Unpickling is forbidden during reads: any attempt is a finding.
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

WRITER = """
import torch, precompile
@precompile.cached(backend="eager")
def f(x):
    y = x.sin() * 2
    print("graph break")
    return y.cos() + x.sum()
f(torch.randn(4))
f(torch.randn(4, dtype=torch.float64))
precompile.flush()
"""


def real_package() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "writer.py")
        with open(script, "w") as fh:
            fh.write(WRITER)
        env = dict(os.environ, PRECOMPILE_CACHE_DIR=os.path.join(d, "cache"))
        subprocess.run([sys.executable, script], env=env, check=True, capture_output=True)
        [name] = [n for n in os.listdir(os.path.join(d, "cache")) if n.endswith(".pcpkg")]
        with open(os.path.join(d, "cache", name), "rb") as fh:
            return fh.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from precompile import format as fmt
    from precompile.errors import PackageError
    from precompile.package import CompilePackage

    data = real_package()
    env0 = fmt.decode(data)
    main_code = (lambda x: x).__code__

    def forbid(*a, **k):
        raise AssertionError("unpickling during a read")

    pickle.loads = forbid  # type: ignore[assignment]
    pickle.load = forbid  # type: ignore[assignment]
    rng = random.Random(args.seed)

    def read(blob: bytes) -> None:
        env = fmt.decode(blob)
        CompilePackage.from_manifest(main_code, "m", {}, env.manifest, env.blobs)

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

    modes = {"bytes": bytes_mode, "body": body_mode, "structure": structure_mode}
    counts = {m: 0 for m in modes}
    findings: dict[str, list[str]] = {m: [] for m in modes}
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for name, fn in modes.items():
            counts[name] += 1
            try:
                fn()
            except Exception:  # noqa: BLE001 - anything but PackageError is a finding
                text = traceback.format_exc(limit=3)
                if len(findings[name]) < 20 and text not in findings[name]:
                    findings[name].append(text)
    total = sum(len(v) for v in findings.values())
    for name in modes:
        print(f"{name:>10}: {counts[name]:>8} iterations, {len(findings[name])} findings")
        for text in findings[name]:
            print("    " + text.replace("\n", "\n    "))
    return 1 if total else 0


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
