"""Typed errors. Each message says what went wrong *and* what to do about it.

Every error precompile raises on purpose derives from :class:`PackageError`, so callers
(and the fuzzer) can tell "this package is unusable" apart from a bug.
"""
from __future__ import annotations

# The store's errors live with the stores (which import nothing from precompile).
from cache_backends.errors import LockTimeout, PackageError, ReadOnlyStoreError, StoreError

__all__ = ["PackageError", "FormatError", "IntegrityError", "IncompatibleError",
           "SourceChangedError", "StoreError", "ReadOnlyStoreError", "LockTimeout",
           "NotCapturableError", "SettingError", "SpecError", "WarmupError"]


class FormatError(PackageError):
    """The bytes are not a package this version can read (corrupt, truncated, foreign,
    or written by an unknown format version)."""


class IntegrityError(PackageError):
    """A checksum did not match: the package was changed after it was written."""


class IncompatibleError(PackageError):
    """The package was written for another python, torch, device or backend."""


class SourceChangedError(PackageError):
    """Code the package was compiled from has changed since; names the file and lines."""

    def __init__(self, message: str, changes: list[str] | None = None) -> None:
        super().__init__(message)
        self.changes = list(changes or [])


class NotCapturableError(PackageError):
    """Something the package would need cannot be recorded (e.g. a custom backend whose
    output cannot be serialized); the affected entry is left out and compiles normally."""


class SettingError(PackageError, ValueError):
    """A ``PRECOMPILE_*`` environment variable or an argument holds a value precompile cannot
    use (e.g. an empty signing key, which would silently turn signing off); the message
    names the setting and the values it takes."""


class SpecError(PackageError, ValueError):
    """A signature spec (``warmup``/``coverage``) is malformed; the message names the field
    and the values it takes."""


class WarmupError(PackageError):
    """``warmup``/``coverage`` cannot work on what it was given (a factory that fails, a
    callable precompile cannot wrap); the message says what to pass instead."""
