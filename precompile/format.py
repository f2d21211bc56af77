"""Bytes on disk: the versioned, checksummed envelope that holds one package.

Layout of a package file (all integers big-endian)::

    MAGIC (8) | FORMAT_VERSION u16 | flags u16 | body length u64 | body | sha256 (32)

``body`` is one msgpack map ``{"meta": ..., "manifest": ..., "blobs": {sha256hex: bytes}}``.
The trailing sha256 covers every byte before it, so a flipped bit anywhere (header, code,
metadata) is caught before anything is decoded. Each blob is *also* addressed by its own
sha256 and re-checked after decoding, so a blob can never be swapped for another.

Torch's own pickled pieces (guard state, compiled graphs) live only inside blobs and are
unpickled by the installer after these checks. Code objects are stored field by field as a
msgpack ext type (never pickled), so decoding a manifest cannot execute anything.

Why msgpack ext types: they give every non-JSON value (code, tuple, frozenset, complex,
Ellipsis, big int, a reference by name to an importable object) an explicit type tag, so a reader knows exactly what it may build, and an
unknown tag is a :class:`FormatError` instead of a guess.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
import types
from typing import Any

import msgpack

from .errors import FormatError, IntegrityError

MAGIC = b"PCPKG\x00\r\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sHHQ")
_DIGEST_LEN = 32
FLAG_SIGNED = 0x1  # an HMAC-SHA256 over everything before it follows the digest
KNOWN_FLAGS = FLAG_SIGNED  # any other bit: written by a newer precompile, or tampered with

# msgpack ext type codes. Never renumber: add new codes instead.
EXT_CODE = 1
EXT_TUPLE = 2
EXT_FROZENSET = 3
EXT_COMPLEX = 4
EXT_ELLIPSIS = 5
EXT_BIGINT = 6
EXT_SLICE = 7
EXT_REF = 8
EXT_VALUE = 9

# Fields of a code object, as accepted by ``CodeType.replace`` on Python >= 3.11.
CODE_FIELDS = (
    "co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
    "co_stacksize", "co_flags", "co_code", "co_consts", "co_names", "co_varnames",
    "co_filename", "co_name", "co_qualname", "co_firstlineno", "co_linetable",
    "co_exceptiontable", "co_freevars", "co_cellvars",
)
_CODE_TEMPLATE = (lambda: None).__code__
_MAX_BODY = 1 << 34  # 16 GiB: anything larger is a corrupt length field


@dataclasses.dataclass
class Envelope:
    """A decoded, verified package file."""

    meta: dict[str, Any]
    manifest: dict[str, Any]
    blobs: dict[str, bytes]


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """A constant stored by name: an importable object (``"pkg.mod:Qual.name"``) that Dynamo's
    bytecode loads as a constant, such as a namedtuple's ``_make``. The format never imports
    anything; the installer resolves refs (``names.resolve_importable``)."""

    name: str


@dataclasses.dataclass(frozen=True)
class ValueRef:
    """A constant stored as plain data plus the name of a value type the installer knows how
    to rebuild (``("torch.device", ("cpu", None))``): Dynamo bakes devices, dtypes and sizes
    into bytecode. Only names on the installer's allow-list are ever rebuilt
    (``_torch.rebuild_value``); the format itself constructs nothing."""

    kind: str
    args: tuple[Any, ...]


_SCALARS = (type(None), bool, int, float, str, bytes, complex, slice, type(Ellipsis), ObjectRef,
            ValueRef)


def storable(value: Any) -> bool:
    """Whether ``value`` (a code constant) can be written by this format."""
    if isinstance(value, types.CodeType):
        return all(storable(c) for c in value.co_consts)
    if type(value) in (tuple, frozenset):
        return all(storable(v) for v in value)
    return type(value) in _SCALARS


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- values


def _default(obj: Any) -> msgpack.ExtType:
    if isinstance(obj, types.CodeType):
        fields = [getattr(obj, name) for name in CODE_FIELDS]
        return msgpack.ExtType(EXT_CODE, _pack(fields))
    if type(obj) is tuple:
        return msgpack.ExtType(EXT_TUPLE, _pack(list(obj)))
    if type(obj) is frozenset:
        return msgpack.ExtType(EXT_FROZENSET, _pack(sorted(obj, key=repr)))
    if type(obj) is complex:
        return msgpack.ExtType(EXT_COMPLEX, _pack([obj.real, obj.imag]))
    if obj is Ellipsis:
        return msgpack.ExtType(EXT_ELLIPSIS, b"")
    if type(obj) is int:  # only reached when it does not fit in 64 bits
        return msgpack.ExtType(EXT_BIGINT, str(obj).encode())
    if type(obj) is slice:
        return msgpack.ExtType(EXT_SLICE, _pack([obj.start, obj.stop, obj.step]))
    if type(obj) is ObjectRef:
        return msgpack.ExtType(EXT_REF, obj.name.encode())
    if type(obj) is ValueRef:
        return msgpack.ExtType(EXT_VALUE, _pack([obj.kind, list(obj.args)]))
    raise TypeError(f"precompile cannot store a value of type {type(obj).__name__}: {obj!r}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_CODE:
        fields = _unpack(data)
        if not isinstance(fields, list) or len(fields) != len(CODE_FIELDS):
            raise FormatError("malformed code object in package")
        try:
            return _CODE_TEMPLATE.replace(**dict(zip(CODE_FIELDS, fields)))
        except (TypeError, ValueError, OverflowError, SystemError) as e:
            raise FormatError(f"malformed code object in package: {e}") from None
    if code == EXT_TUPLE:
        return tuple(_as_list(_unpack(data)))
    if code == EXT_FROZENSET:
        return frozenset(_as_list(_unpack(data)))
    if code == EXT_COMPLEX:
        real, imag = _pair(_unpack(data), 2)
        return complex(real, imag)
    if code == EXT_ELLIPSIS:
        return Ellipsis
    if code == EXT_BIGINT:
        try:
            return int(data.decode())
        except (UnicodeDecodeError, ValueError):
            raise FormatError("malformed integer in package") from None
    if code == EXT_SLICE:
        start, stop, step = _pair(_unpack(data), 3)
        return slice(start, stop, step)
    if code == EXT_REF:
        try:
            return ObjectRef(data.decode())
        except UnicodeDecodeError:
            raise FormatError("malformed object reference in package") from None
    if code == EXT_VALUE:
        kind, args = _pair(_unpack(data), 2)
        if not isinstance(kind, str):
            raise FormatError("malformed value in package")
        return ValueRef(kind, tuple(_as_list(args)))
    raise FormatError(f"unknown value type {code} in package (written by a newer precompile?)")


def _pair(value: Any, n: int) -> list[Any]:
    items = _as_list(value)
    if len(items) != n:
        raise FormatError("malformed value in package")
    return items


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError("malformed container in package")
    return value


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError,
            MemoryError,
            msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise FormatError(f"package body is not valid msgpack: {type(e).__name__}: {e}") from None


# -------------------------------------------------------------------------- envelope


def encode(meta: dict[str, Any], manifest: dict[str, Any], blobs: dict[str, bytes],
           signing_key: bytes | None = None) -> bytes:
    """Serialize one package. ``blobs`` must be keyed by their own sha256 hex digest."""
    for digest, data in blobs.items():
        if sha256_hex(data) != digest:
            raise ValueError(f"blob key {digest[:12]}... is not the sha256 of its content")
    try:
        body = _pack({"meta": meta, "manifest": manifest, "blobs": blobs})
    except TypeError as e:
        raise FormatError(str(e)) from None
    flags = FLAG_SIGNED if signing_key else 0
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(body)) + body
    out = head + hashlib.sha256(head).digest()
    if signing_key:
        out += hmac.new(signing_key, out, hashlib.sha256).digest()
    return out


def read_header(data: bytes) -> tuple[int, int, int]:
    """Return (format version, flags, body length) or raise FormatError."""
    if len(data) < _HEADER.size + _DIGEST_LEN:
        raise FormatError(f"file is too short to be a precompile package ({len(data)} bytes); "
                          "it was truncated or is not a package")
    magic, version, flags, body_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FormatError("not a precompile package (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise FormatError(f"package format version {version} is not supported (this precompile "
                          f"reads version {FORMAT_VERSION}); delete it or upgrade precompile")
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"package header has unknown flags {flags:#06x} (this precompile "
                          f"knows {KNOWN_FLAGS:#06x}): written by a newer precompile or "
                          "tampered with; delete it or upgrade precompile")
    if body_len > _MAX_BODY:
        raise FormatError("package header declares an impossible body length")
    return version, flags, body_len


def decode(data: bytes, signing_key: bytes | None = None) -> Envelope:
    """Verify and decode a package. Raises FormatError / IntegrityError, nothing else."""
    data = bytes(data)
    _, flags, body_len = read_header(data)
    end = _HEADER.size + body_len
    expected = end + _DIGEST_LEN + (_DIGEST_LEN if flags & FLAG_SIGNED else 0)
    if len(data) != expected:
        raise FormatError(f"package is {len(data)} bytes but its header says {expected}: "
                          "truncated or padded")
    if hashlib.sha256(data[:end]).digest() != data[end:end + _DIGEST_LEN]:
        raise IntegrityError("package checksum mismatch: the file was changed or corrupted "
                             "after it was written; delete it and let precompile rewrite it")
    _check_signature(data, flags, end + _DIGEST_LEN, signing_key)
    body = _unpack(data[_HEADER.size:end])
    if not isinstance(body, dict) or not {"meta", "manifest", "blobs"} <= body.keys():
        raise FormatError("package body lacks meta/manifest/blobs")
    meta, manifest, blobs = body["meta"], body["manifest"], body["blobs"]
    if not isinstance(meta, dict) or not isinstance(manifest, dict) or not isinstance(blobs, dict):
        raise FormatError("package body has the wrong shape")
    for digest, blob in blobs.items():
        if not isinstance(blob, bytes) or sha256_hex(blob) != digest:
            raise IntegrityError(f"blob {str(digest)[:12]}... does not match its sha256")
    return Envelope(meta=meta, manifest=manifest, blobs=blobs)


def _check_signature(data: bytes, flags: int, signed_end: int, key: bytes | None) -> None:
    signed = bool(flags & FLAG_SIGNED)
    if key is None:
        return
    if not signed:
        raise IntegrityError("package is not signed but a signing key is set; refusing it. "
                             "Rewrite it with the key set, or unset PRECOMPILE_SIGNING_KEY")
    mac = hmac.new(key, data[:signed_end], hashlib.sha256).digest()
    if not hmac.compare_digest(mac, data[signed_end:]):
        raise IntegrityError("package signature does not match the signing key; refusing it")
