"""Compiled kernels stored once per store and shared by every package that uses them.

A package written to a store names each C++ kernel library by its sha256 (manifest
``kernels``: path and digest) instead of carrying the bytes; the bytes live once in the
store under ``blob-<sha256>`` (``cache_backends.blobs``), however many functions or models
load the same kernel. A package saved to a file or exported on its own still embeds them
(``manifest.to_manifest(share_kernels=False)``), and packages written before kept theirs
inside: both are read as before.

A blob is stored as a package envelope (``format.encode``) holding just that one blob, so
reading one goes through exactly the checks a package gets before anything uses it: the
envelope checksum, the signature when a signing key is set, and the blob's own sha256,
which must also be the digest the (verified) package asked for. A missing, damaged or
unsigned blob makes the package a clean miss with its reason: the call compiles and the
next save writes the blob again.
"""
from __future__ import annotations

from typing import Any

from cache_backends import CacheBackend
from cache_backends.blobs import blob_key, is_blob_key

from ..format import envelope as format
from ..errors import FormatError, IntegrityError, PackageError, StoreError
from ..package.model import Package

_BLOB_META = {"blob": "kernel"}


def encode_blob(data: bytes, signing_key: bytes | None) -> tuple[str, bytes]:
    """(store key, stored bytes) of one blob."""
    digest = format.sha256_hex(data)
    return blob_key(digest), format.encode(dict(_BLOB_META), {}, {digest: data},
                                           signing_key=signing_key)


def decode_blob(stored: bytes, digest: str, signing_key: bytes | None) -> bytes:
    """The blob ``digest`` names, from its stored bytes. Raises FormatError/IntegrityError."""
    env = format.decode(stored, signing_key=signing_key)
    if env.meta != _BLOB_META or set(env.blobs) != {digest}:
        raise IntegrityError(f"stored blob {digest[:12]}... does not hold the kernel its key "
                             "names; delete it and let precompile write it again")
    return env.blobs[digest]


def stored_blob_key(env: format.Envelope) -> str | None:
    """The store key of a decoded envelope that holds one shared kernel (the sha256 of the
    kernel's bytes, checked), or None for a package. Raises IntegrityError for an envelope
    that claims to be a blob but does not hold what its digest names."""
    if env.meta != _BLOB_META:
        return None
    [(digest, data)] = env.blobs.items() if len(env.blobs) == 1 else [("", b"")]
    if not digest or format.sha256_hex(data) != digest:
        raise IntegrityError("a stored kernel does not hold the bytes its digest names")
    return blob_key(digest)


def read_blob(store: CacheBackend, digest: str, signing_key: bytes | None) -> bytes:
    """One verified blob. Raises PackageError (saying what is wrong) if it is missing,
    damaged, unsigned or unreadable."""
    try:
        stored = store.get(blob_key(digest))
    except StoreError as e:
        raise PackageError(f"cannot read shared kernel {digest[:12]}... ({e})") from None
    if stored is None:
        raise PackageError(f"shared kernel {digest[:12]}... is missing from {store.url} "
                           "(pruned or evicted?)")
    try:
        return decode_blob(stored, digest, signing_key)
    except (FormatError, IntegrityError) as e:
        raise type(e)(f"shared kernel {digest[:12]}... is unusable: {e}") from None


def fetch_kernels(pkg: Package, store: CacheBackend | None, signing_key: bytes | None) -> None:
    """Fill ``pkg.kernel_blobs`` with the shared kernels it names, each verified before
    anything uses it. Raises PackageError (the package is then a miss)."""
    if not pkg.kernel_refs:
        return
    if store is None:
        raise PackageError(f"package {pkg.key} names {len(pkg.kernel_refs)} shared kernels "
                           "but was not read from a store")
    for rel, digest in sorted(pkg.kernel_refs.items()):
        pkg.kernel_blobs[rel] = read_blob(store, digest, signing_key)


def put_blobs(store: CacheBackend, blobs: dict[str, bytes], signing_key: bytes | None) -> int:
    """Store each blob that the store lacks or holds damaged (or signed otherwise); a good
    copy is left alone. Returns how many were written. Raises StoreError."""
    written = 0
    for digest, data in blobs.items():
        key, stored = encode_blob(data, signing_key)
        current = store.get(key)
        if current is not None and _usable(current, digest, signing_key):
            continue
        store.put(key, stored)
        written += 1
    return written


def _usable(stored: bytes, digest: str, signing_key: bytes | None) -> bool:
    try:
        decode_blob(stored, digest, signing_key)
    except PackageError:
        return False
    return True


def references(stored_package: bytes) -> set[str]:
    """The blob keys a stored package names (checksum verified; an unreadable package names
    none: it is a miss for every reader and keeps nothing alive)."""
    try:
        env = format.decode(stored_package)
    except PackageError:
        return set()
    kernels = env.manifest.get("kernels", [])
    if not isinstance(kernels, list):
        return set()
    return {blob_key(k["blob"]) for k in kernels if _names_shared_blob(k, env.blobs)}


def _names_shared_blob(record: Any, bundled: dict[str, bytes]) -> bool:
    """A kernel record whose bytes are not in the package itself: the store holds them."""
    return (isinstance(record, dict) and isinstance(record.get("blob"), str)
            and record["blob"] not in bundled)


def blob_keys(store: CacheBackend) -> list[str]:
    return [k for k in store.list() if is_blob_key(k)]


__all__ = ["blob_keys", "decode_blob", "encode_blob", "fetch_kernels",
           "put_blobs", "read_blob", "references", "stored_blob_key"]
