"""A package's envelope checked while it streams out of an archive, never held whole.

``format.decode`` checks length, checksum and signature on bytes in memory. An archive
member can be a gigabyte, so ``precompile import`` checks the same three things chunk by
chunk as it copies the member to its staging file: the header's declared length must be the
member's size, the sha256 over header and body must match the trailing digest, and with a
signing key the HMAC over everything before it must match. Only a member that passes is
ever decoded (by ``format.decode``, which checks it all again).
"""
from __future__ import annotations

import hashlib
import hmac

from . import envelope as fmt
from ..errors import FormatError, IntegrityError

# The envelope's layout (format.py's module docstring): header | body | sha256 | [hmac].
_HEADER_SIZE = fmt._HEADER.size
_DIGEST = fmt._DIGEST_LEN


class PackageStream:
    """Feed a package's bytes in order, then ``finish``; raises FormatError or
    IntegrityError as soon as the bytes cannot be a good package."""

    def __init__(self, size: int, signing_key: bytes | None) -> None:
        self.size = size
        self.signing_key = signing_key
        self._head = bytearray()
        self._pos = 0
        self._end: int | None = None  # where the body ends and the digest starts
        self._sha = hashlib.sha256()
        self._mac = hmac.new(signing_key, digestmod=hashlib.sha256) if signing_key else None
        self._trailer = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self._end is None:
            self._head += chunk
            if len(self._head) < _HEADER_SIZE + _DIGEST:
                return
            self._start(bytes(self._head))
            chunk, self._head = bytes(self._head), bytearray()
        self._take(chunk)

    def _start(self, head: bytes) -> None:
        _, flags, body_len = fmt.read_header(head)
        self._end = _HEADER_SIZE + body_len
        signed = bool(flags & fmt.FLAG_SIGNED)
        expected = fmt.package_size(flags, body_len)
        if expected != self.size:
            raise FormatError(f"package is {self.size} bytes but its header says {expected}: "
                              "truncated or padded")
        if self.signing_key and not signed:
            raise IntegrityError("package is not signed but a signing key is set; refusing it")

    def _take(self, chunk: bytes) -> None:
        assert self._end is not None
        covered = max(0, min(len(chunk), self._end - self._pos))
        self._sha.update(chunk[:covered])
        signed_part = max(0, min(len(chunk), self._end + _DIGEST - self._pos))
        if self._mac is not None:
            self._mac.update(chunk[:signed_part])
        self._trailer += chunk[covered:]
        self._pos += len(chunk)

    def finish(self) -> None:
        """Every byte the archive entry declared came, and the trailer vouches for them."""
        if self._end is None:
            self._start(bytes(self._head))  # too short: read_header says so
        if self._pos != self.size:
            raise FormatError(f"package is {self._pos} bytes, not the {self.size} its archive "
                              "entry declares: truncated")
        self._check_trailer()

    def _check_trailer(self) -> None:
        """The digest (and, with a key, the signature) after the body matches the bytes fed."""
        if self._sha.digest() != bytes(self._trailer[:_DIGEST]):
            raise IntegrityError("package checksum mismatch: the file was changed or corrupted "
                                 "after it was written")
        if self._mac is not None and not hmac.compare_digest(
                self._mac.digest(), bytes(self._trailer[_DIGEST:_DIGEST * 2])):
            raise IntegrityError("package signature does not match the signing key; "
                                 "refusing it")
