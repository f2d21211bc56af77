"""Bytes on disk: the versioned, checksummed envelope that holds one package.

Layout of a package file (all integers big-endian)::

    MAGIC (8) | FORMAT_VERSION u16 | flags u16 | body length u64 | body | sha256 (32)

``body`` is one msgpack map ``{"meta": ..., "manifest": ..., "blobs": {sha256hex: bytes}}``.
The trailing sha256 covers every byte before it, so a flipped bit anywhere (header, code,
metadata) is caught before anything is decoded. Each blob is *also* addressed by its own
sha256 and re-checked after decoding, so a blob can never be swapped for another.

Torch's own pickled pieces (guard state, compiled graphs) live only inside blobs and are
unpickled by the installer after these checks. Code objects are stored field by field as a
msgpack ext type (never pickled), so decoding a manifest cannot execute anything; each is
checked (``code_check``) before ``CodeType.replace`` builds it, and what a decode may cost
(nesting, size, containers, map keys) is bounded by ``decode_limits``, because ``precompile
ls``/``verify`` decode packages nobody trusts.

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
from collections.abc import Callable
from typing import Any

import msgpack

from .code_check import check_code_fields
from .decode_limits import BoundedUnpacker, ExtDecoder, decimal_int, distinct_hashes
from ..errors import FormatError, IntegrityError

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


def _encode_code(code: types.CodeType) -> bytes:
    """Field by field, never pickled: decoding a code object then only calls
    ``CodeType.replace`` and runs nothing."""
    return _pack([getattr(code, name) for name in CODE_FIELDS])


def _encode_frozenset(value: frozenset[Any]) -> bytes:
    """Sorted by ``repr``: the same set always gives the same bytes, hence the same digest."""
    return _pack(sorted(value, key=repr))


# Exact type -> (ext code, payload). Exact: with ``strict_types`` a subclass (an IntEnum, a
# namedtuple) reaches ``_default`` too and must be refused, not stored as its base type.
# ``int`` only gets here when it does not fit in 64 bits.
_ENCODERS: dict[type, tuple[int, Callable[[Any], bytes]]] = {
    types.CodeType: (EXT_CODE, _encode_code),
    tuple: (EXT_TUPLE, lambda value: _pack(list(value))),
    frozenset: (EXT_FROZENSET, _encode_frozenset),
    complex: (EXT_COMPLEX, lambda value: _pack([value.real, value.imag])),
    type(Ellipsis): (EXT_ELLIPSIS, lambda value: b""),
    int: (EXT_BIGINT, lambda value: str(value).encode()),
    slice: (EXT_SLICE, lambda value: _pack([value.start, value.stop, value.step])),
    ObjectRef: (EXT_REF, lambda value: value.name.encode()),
    ValueRef: (EXT_VALUE, lambda value: _pack([value.kind, list(value.args)])),
}


def _default(obj: Any) -> msgpack.ExtType:
    """msgpack's hook for a value it has no type of its own for: an explicit ext tag, so a
    reader knows exactly what it may build (see the module docstring)."""
    try:
        code, payload = _ENCODERS[type(obj)]
    except KeyError:
        raise TypeError(f"precompile cannot store a value of type {type(obj).__name__}: "
                        f"{obj!r}") from None
    return msgpack.ExtType(code, payload(obj))


def _malformed(what: str) -> FormatError:
    """A value that passed the checksum but has the wrong shape: written by a broken
    precompile, or tampered with and re-checksummed. Nothing to repair, only to rewrite."""
    return FormatError(f"malformed {what} in package; delete it and let precompile "
                       "rewrite it")


def _decode_code(fields: Any) -> types.CodeType:
    """Rebuilt from the template with ``replace`` once ``code_check`` has checked every
    field (``replace`` itself trusts the bytecode and can crash on crafted bytes): a bad
    one is a FormatError, never a crash or a half-built code object."""
    if not isinstance(fields, list) or len(fields) != len(CODE_FIELDS):
        raise _malformed("code object")
    named = dict(zip(CODE_FIELDS, fields))
    try:
        check_code_fields(named)  # co_consts is a tuple from here on
        if not _plain_constant(named["co_consts"]):
            raise ValueError("a constant of a type this format never writes")
        return _CODE_TEMPLATE.replace(**named)
    except (TypeError, ValueError, OverflowError, SystemError) as e:
        raise _malformed(f"code object ({e})") from None


def _plain_constant(value: Any) -> bool:
    """A constant the encoder could have written (nested code objects were checked when
    they were built): never a list or a map, which only msgpack itself produces."""
    if type(value) in (tuple, frozenset):
        return all(_plain_constant(v) for v in value)
    return type(value) in _SCALARS or type(value) is types.CodeType


def _decode_bigint(data: bytes) -> int:
    """Decimal text, at most ``decode_limits.MAX_INT_DIGITS`` digits."""
    try:
        return decimal_int(data)
    except (UnicodeDecodeError, ValueError):
        raise _malformed("integer") from None


def _decode_ref(data: bytes) -> ObjectRef:
    """Only the name: the format never imports; the installer resolves it."""
    try:
        return ObjectRef(data.decode())
    except UnicodeDecodeError:
        raise _malformed("object reference") from None


def _decode_value(payload: Any) -> ValueRef:
    """Only the kind and plain arguments: the installer decides whether it rebuilds them."""
    kind, args = _pair(payload, 2)
    if not isinstance(kind, str):
        raise _malformed("value")
    return ValueRef(kind, tuple(_as_list(args)))


# Ext code -> what builds the value (from its decoded payload, or its raw bytes).
# Codes are never renumbered (see EXT_CODE).
_DECODERS: dict[int, ExtDecoder] = {
    EXT_CODE: ExtDecoder(_decode_code),
    EXT_TUPLE: ExtDecoder(lambda payload: tuple(_as_list(payload))),
    EXT_FROZENSET: ExtDecoder(lambda payload: distinct_hashes(_as_list(payload))),
    EXT_COMPLEX: ExtDecoder(lambda payload: complex(*_numbers(_pair(payload, 2)))),
    EXT_ELLIPSIS: ExtDecoder(lambda data: Ellipsis, nested=False),
    EXT_BIGINT: ExtDecoder(_decode_bigint, nested=False),
    EXT_SLICE: ExtDecoder(lambda payload: slice(*_pair(payload, 3))),
    EXT_REF: ExtDecoder(_decode_ref, nested=False),
    EXT_VALUE: ExtDecoder(_decode_value),
}


def _unknown_ext(code: int) -> FormatError:
    """Only the tags above build anything; an unknown one is refused rather than guessed at."""
    return FormatError(f"unknown value type {code} in package (written by a newer "
                       "precompile?); upgrade precompile or delete the package")


def _pair(value: Any, n: int) -> list[Any]:
    items = _as_list(value)
    if len(items) != n:
        raise _malformed("value")
    return items


def _numbers(items: list[Any]) -> list[float]:
    if not all(type(x) in (int, float) for x in items):
        raise _malformed("complex number")
    return items


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _malformed("container")
    return value


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    """One body, with every decoding bound of ``decode_limits`` applied."""
    return BoundedUnpacker(_DECODERS, len(data), _unknown_ext).decode(data)


# -------------------------------------------------------------------------- envelope


def encode(meta: dict[str, Any], manifest: dict[str, Any], blobs: dict[str, bytes],
           signing_key: bytes | None = None) -> bytes:
    """Serialize one package. ``blobs`` must be keyed by their own sha256 hex digest."""
    _check_blob_keys(blobs)
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


def _check_blob_keys(blobs: dict[str, bytes]) -> None:
    """A caller's mistake caught before writing: a reader refuses a blob whose key is not
    its digest (``_check_blobs``), so the package would never load."""
    for digest, data in blobs.items():
        if sha256_hex(data) != digest:
            raise ValueError(f"blob key {digest[:12]}... is not the sha256 of its content")


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
    """Verify and decode a package. Raises FormatError / IntegrityError, nothing else.

    Length, checksum and signature are all checked before a single byte of the body is
    decoded; each blob is checked against its own digest after."""
    data = bytes(data)
    _, flags, body_len = read_header(data)
    end = _HEADER.size + body_len
    _check_length(data, package_size(flags, body_len))
    _check_digest(data, end)
    _check_signature(data, flags, end + _DIGEST_LEN, signing_key)
    meta, manifest, blobs = _split_body(_unpack(data[_HEADER.size:end]))
    _check_blobs(blobs)
    return Envelope(meta=meta, manifest=manifest, blobs=blobs)


def package_size(flags: int, body_len: int) -> int:
    """The size of a package whose header declares ``flags`` and ``body_len``: header,
    body, sha256 digest, and the HMAC when it is signed."""
    return _HEADER.size + body_len + _DIGEST_LEN * (2 if flags & FLAG_SIGNED else 1)


def _check_length(data: bytes, expected: int) -> None:
    """The file is exactly the size its header declares: a cut or padded file is refused
    before its digest is even looked for in the wrong place."""
    if len(data) != expected:
        raise FormatError(f"package is {len(data)} bytes but its header says {expected}: "
                          "truncated or padded; delete it and let precompile rewrite it")


def _check_digest(data: bytes, end: int) -> None:
    """The trailing sha256 covers header and body: any flipped bit is caught here."""
    if hashlib.sha256(memoryview(data)[:end]).digest() != data[end:end + _DIGEST_LEN]:
        raise IntegrityError("package checksum mismatch: the file was changed or corrupted "
                             "after it was written; delete it and let precompile rewrite it")


def _split_body(body: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """``meta``, ``manifest`` and ``blobs`` of a decoded body, each checked to be a map: the
    readers after this index into them without checking again."""
    if not isinstance(body, dict) or not {"meta", "manifest", "blobs"} <= body.keys():
        raise _malformed("body (no meta/manifest/blobs)")
    parts = body["meta"], body["manifest"], body["blobs"]
    if not all(isinstance(part, dict) for part in parts):
        raise _malformed("body (meta/manifest/blobs of the wrong shape)")
    _check_meta(parts[0])
    return parts


_TIME_FIELDS = ("created", "saved")
_MAX_TIME = 253402300799  # 9999-12-31: any later "time" would overflow date formatting
_META_TYPES: dict[str, tuple[type, ...]] = {
    "factors": (dict,), "system": (dict,), "gpus": (dict,), "function": (str,),
    "backend_name": (str, type(None)), "entries": (int,),
}


def _check_meta(meta: dict[str, Any]) -> None:
    """Fields a reader formats or compares (times, counts, names) have their written type
    and a sane range, so ``precompile ls`` or ``import`` never trips over a crafted value
    (a 400-digit ``saved`` overflows float conversion)."""
    _check_times(meta)
    for name, types_ in _META_TYPES.items():
        if name in meta and type(meta[name]) not in types_:
            raise _malformed(f"metadata ({name} is not a {types_[0].__name__})")
    if not 0 <= meta.get("entries", 0) < 1 << 31:
        raise _malformed("metadata (entries is out of range)")


def _check_times(meta: dict[str, Any]) -> None:
    for name in _TIME_FIELDS:
        if not _is_time(meta.get(name)):
            raise _malformed(f"metadata ({name} is not a time)")


def _is_time(value: Any) -> bool:
    """Absent, or seconds since the epoch that date formatting can still print."""
    return value is None or (type(value) in (int, float) and 0 <= value <= _MAX_TIME)


def _check_blobs(blobs: dict[Any, Any]) -> None:
    """Each blob is addressed by its own sha256, so one can never be swapped for another."""
    for digest, blob in blobs.items():
        if not isinstance(blob, bytes) or sha256_hex(blob) != digest:
            raise IntegrityError(f"blob {str(digest)[:12]}... does not match its sha256; "
                                 "delete the package and let precompile rewrite it")


def _check_signature(data: bytes, flags: int, signed_end: int, key: bytes | None) -> None:
    signed = bool(flags & FLAG_SIGNED)
    if key is None:
        return
    if not signed:
        raise IntegrityError("package is not signed but a signing key is set; refusing it. "
                             "Rewrite it with the key set, or unset PRECOMPILE_SIGNING_KEY")
    mac = hmac.new(key, memoryview(data)[:signed_end], hashlib.sha256).digest()
    if not hmac.compare_digest(mac, data[signed_end:]):
        raise IntegrityError("package signature does not match the signing key; refusing it")
