"""Why there is no package for a key: what a miss says, shared with ``precompile explain``."""
from __future__ import annotations

from cache_backends import CacheBackend
from cache_backends.blobs import is_blob_key

from ..package import keys
from . import read_path
from ..errors import PackageError, StoreError


def explain_absent(store: CacheBackend | None, key: str, factors: dict[str, str],
                   signing_key: bytes | None = None) -> str:
    """Compare with the packages stored for the same function: which key factor changed, or
    that they belong to other functions made by the same code. Reads the store only where
    listing it is cheap, and only through ``read_path`` (a neighbour that fails the signing
    policy or is not bound to its own key says nothing)."""
    head = f"{factors['function']}: no package under key {key}"
    if store is None or not store.cheap_listing:
        return head
    try:
        why = _first_difference(store, key, factors, signing_key)
    except StoreError:
        why = None
    return f"{head}; {why}" if why is not None else head + " (first compile)"


def _first_difference(store: CacheBackend, key: str, factors: dict[str, str],
                      signing_key: bytes | None) -> str | None:
    """What the first package stored for the same function says about this call's key."""
    for other in _neighbours(store, key):
        why = _difference(store, other, factors, signing_key)
        if why is not None:
            return why
    return None


def _neighbours(store: CacheBackend, key: str) -> list[str]:
    """Keys of packages for a function of the same name (keys share the name prefix)."""
    prefix = key.rsplit("-", 1)[0] + "-"
    return [k for k in store.list()
            if k.startswith(prefix) and k != key and not is_blob_key(k)]


def _difference(store: CacheBackend, other: str, factors: dict[str, str],
                signing_key: bytes | None) -> str | None:
    """Why the package under ``other`` is not this call's, when it is for the same function;
    None when it is another function's or says nothing."""
    old = _stored_factors(store, other, signing_key)
    if old is None or old.get("function") != factors["function"]:
        return None
    reasons = keys.explain_factor_change(old, factors)
    if not reasons:
        return None
    if set(keys.changed_factor_names(old, factors)) <= {"closure"}:
        return ("packages under this name belong to other functions made by the same code "
                "(what it closes over differs)")
    return f"a package for it exists but {'; '.join(reasons)}"


def _stored_factors(store: CacheBackend, key: str,
                    signing_key: bytes | None) -> dict[str, str] | None:
    """The key factors of the package under ``key``, read as a load reads it; None when it
    is gone or refused."""
    data = store.get(key)
    if data is None:
        return None
    try:
        return read_path.open_package(data, signing_key=signing_key, key=key).meta["factors"]
    except PackageError:
        return None
