"""Packages written by hand, without compiling: a package for ``umod:f`` whose guard blob
records a call if it is ever unpickled (``CALLS``), so a test can prove a package was only
read, never run. The ``env`` fixture (tests/conftest.py) makes the project around it."""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

from precompile.format import envelope as fmt
from precompile.identity import checks as identity
from precompile.package.keys import package_key

UMOD = "def helper(x):\n    return x\n\ndef f(x):\n    return helper(x)\n"
CALLS: list[str] = []


def record_call(*args: object) -> int:
    CALLS.append(repr(args))
    return 0


class _Tripwire:
    """Unpickling this records a call: proof that a pickle was loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (record_call, ("unpickled",))


def make_package(identity_sources: list[str] | None = None, *,
                 signing_key: bytes | None = None, flags: int | None = None) -> bytes:
    """A package for ``umod:f`` whose guard blob, if ever unpickled, records a call."""
    guards = pickle.dumps(_Tripwire())
    art = b"artifact bytes"
    fp = identity.object_fingerprint(len)
    manifest = {
        "key": "f-0", "function": "umod:f", "devices": [], "bypasses": [], "sources": [],
        "frames": [{"role": "main", "module": "umod", "qualname": "f", "fingerprint": "ab",
                    "code": None, "global_name": None, "skipped": False,
                    "entries": [{"guards": fmt.sha256_hex(guards), "code": make_package.__code__,
                                 "backends": ["__compiled_fn_1_x"], "imports": {},
                                 "identity": [{"source": s, "guard_type": "ID_MATCH",
                                               "fingerprint": fp}
                                              for s in identity_sources or []]}]}],
        "artifacts": {"__compiled_fn_1_x": {"kind": "fx_graph", "blob": fmt.sha256_hex(art),
                                            "has_backward": False}},
    }
    meta = {"function": "umod:f", "factors": {"function": "umod:f"}, "entries": 1}
    data = fmt.encode(meta, manifest, {fmt.sha256_hex(guards): guards,
                                       fmt.sha256_hex(art): art}, signing_key=signing_key)
    if flags is not None:
        head = bytearray(data[:fmt._HEADER.size])
        head[10:12] = flags.to_bytes(2, "big")
        data = bytes(head) + data[fmt._HEADER.size:]
    return data


KEY = package_key({"function": "umod:f"})  # the key make_package's packages are bound to


class Zeros(io.RawIOBase):
    """``size`` zero bytes, never held whole."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def write_tar(path: Path, members: list[tuple[str, bytes | int]], mode: str = "w:gz",
              **kwargs: object) -> Path:
    """A tar archive of ``members`` (name, bytes or a size of zeros) at ``path``."""
    with tarfile.open(path, mode, **kwargs) as tar:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, io.BufferedReader(Zeros(data)))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path
