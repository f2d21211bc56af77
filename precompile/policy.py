"""How one cached function uses its store: arguments resolved against the environment once,
so the rest of the code reads plain values."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from cache_backends import CacheBackend, open_store

from . import settings
from .errors import SettingError, StoreError
from .read.read_path import verifier

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "precompile")


def default_store(cache_dir: Any = None, store: Any = None, *,
                  signing_key: bytes | None = None) -> CacheBackend:
    """Precedence: explicit argument, then $PRECOMPILE_CACHE_URL / $PRECOMPILE_CACHE_DIR,
    then ~/.cache/precompile. A store the environment names that cannot be opened is a
    SettingError naming the variable (an explicit argument's ValueError is the caller's).

    The stores get their trust settings here: ``PRECOMPILE_TRUST_SHARED_CACHE``, and for
    tiers a write-back that first verifies the package (``read_path.verifier``: checksum,
    ``signing_key``'s signature when set, key binding), and for Redis stores leases signed
    with ``signing_key`` (only those are waited for)."""
    trust = {"trust_shared": settings.trust_shared(), "accept": verifier(signing_key),
             "lease_key": signing_key}
    if store is not None:
        return open_store(store, **trust)
    if cache_dir is not None:
        return open_store(os.fspath(cache_dir), **trust)
    named = settings.cache_spec()
    if named is None:
        return open_store(os.path.expanduser(DEFAULT_CACHE_DIR), **trust)
    try:
        return open_store(named[1], **trust)
    except (ValueError, TypeError, StoreError) as e:
        raise SettingError(f"{named[0]} does not name a usable cache store: {e}") from e


def resolve_signing_key(explicit: str | bytes | None = None) -> bytes | None:
    """The HMAC key: an explicit argument, else $PRECOMPILE_SIGNING_KEY, else None.

    An explicit empty key is an error, not "no signing": a package written or accepted
    unsigned by mistake is exactly what signing is there to prevent. So is an empty
    $PRECOMPILE_SIGNING_KEY (``settings.signing_key``).
    """
    if explicit is None:
        return settings.signing_key()
    if not explicit:
        raise SettingError("signing_key is empty, which would disable PRECOMPILE_SIGNING_KEY; "
                           "pass the key, or leave signing_key out (None) to use the "
                           "environment's. To run without signing, unset "
                           "PRECOMPILE_SIGNING_KEY")
    return explicit.encode() if isinstance(explicit, str) else bytes(explicit)


_UNUSABLE_KEY: Any = object()  # $PRECOMPILE_SIGNING_KEY set but empty, outside strict mode


@dataclasses.dataclass(frozen=True)
class Policy:
    """A cached function's store and options, resolved once."""

    store: CacheBackend | None
    strict: bool = False
    eager_backward: bool = True
    single_flight: bool = True
    wait_timeout: float = 600.0
    signing_key: bytes | None = None

    @classmethod
    def resolve(cls, *, cache_dir: Any = None, store: Any = None, env_store: bool = True,
                strict: bool | None = None, eager_backward: bool = True,
                single_flight: bool = True, wait_timeout: float | None = None,
                signing_key: str | bytes | None = None) -> Policy:
        """``env_store=False``: no store unless ``cache_dir``/``store`` names one. A bad
        environment setting is one warning and its default (strict mode: SettingError), so
        a typo in a fleet-wide variable never stops a program at import."""
        if strict is None:
            strict = settings.or_default(lambda: settings.flag(settings.STRICT), False,
                                         strict=False)
        key = resolve_signing_key(signing_key) if signing_key is not None else (
            settings.or_default(settings.signing_key, _UNUSABLE_KEY, strict=strict,
                                instead="running without a cache"))
        if key is _UNUSABLE_KEY:  # neither signed nor unsigned packages may be trusted
            key, the_store = None, None
        else:
            the_store = _resolve_store(cache_dir, store, env_store, key, strict)
        if wait_timeout is None:
            wait_timeout = settings.or_default(
                lambda: settings.seconds(settings.WAIT_TIMEOUT, 600.0), 600.0, strict=strict)
        return cls(store=the_store, strict=strict, eager_backward=eager_backward,
                   single_flight=single_flight, wait_timeout=wait_timeout, signing_key=key)


def _resolve_store(cache_dir: Any, store: Any, env_store: bool, key: bytes | None,
                   strict: bool) -> CacheBackend | None:
    """The store a cached function uses: none unless one is named or the environment may
    name it; one that cannot be opened is a warning and no cache (strict: SettingError)."""
    if not (env_store or cache_dir is not None or store is not None):
        return None
    return settings.or_default(lambda: default_store(cache_dir, store, signing_key=key), None,
                               strict=strict, instead="running without a cache")
