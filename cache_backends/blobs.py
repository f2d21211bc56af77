"""Shared blobs in a store: compiled kernels kept once, under ``blob-<sha256>``, and named by
digest from every package that uses them.

A blob is stored through the ordinary ``get``/``put``/``delete``/``list`` of any store, so
every store holds them without new methods. Its key cannot be mistaken for a package's:
package keys end in 32 hex digits (``keys.package_key``), blob keys in a full sha256.
What a blob holds and how it is verified is ``precompile/read/shared_blobs.py``; this module
only names them and plans what an eviction may delete (pure, so the policy can be tested
apart from files).
"""
from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence

from .base import Stat

BLOB_PREFIX = "blob-"
_DIGEST_LEN = 64


def blob_key(digest: str) -> str:
    return BLOB_PREFIX + digest


def is_blob_key(key: str) -> bool:
    digest = key[len(BLOB_PREFIX):]
    return (key.startswith(BLOB_PREFIX) and len(digest) == _DIGEST_LEN
            and all(c in string.hexdigits[:16] for c in digest))


def plan_shared_eviction(stats: Sequence[Stat], refs: Mapping[str, Collection[str]],
                         max_bytes: int, keep: Collection[str] = ()) -> list[Stat]:
    """Which keys to delete so the rest total at most ``max_bytes``.

    ``stats`` holds packages and blobs; ``refs`` maps each package key to the blob keys it
    names. Packages go least recently used first (never one in ``keep``); a blob goes only
    once no package left names it, so a kernel another package needs is never evicted. Blobs
    no package names at all go first."""
    by_key = {s.key: s for s in stats}
    users: dict[str, int] = {s.key: 0 for s in stats if is_blob_key(s.key)}
    for pkg, blobs in refs.items():
        if pkg in by_key:
            for b in set(blobs):
                if b in users:
                    users[b] += 1
    total = sum(s.size for s in stats)
    doomed = [by_key[b] for b, n in users.items() if n == 0 and b not in keep]
    total -= sum(s.size for s in doomed)
    packages = [s for s in stats if s.key not in users]
    for s in sorted(packages, key=lambda s: s.last_used or 0):
        if total <= max_bytes:
            break
        if s.key in keep:
            continue
        doomed.append(s)
        total -= s.size
        for b in set(refs.get(s.key, ())):
            if b in users:
                users[b] -= 1
                if users[b] == 0 and b not in keep:
                    doomed.append(by_key[b])
                    total -= by_key[b].size
    return doomed
