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

import re
from collections.abc import Collection, Mapping, Sequence

from .base import Stat

BLOB_PREFIX = "blob-"
_BLOB_KEY = re.compile(re.escape(BLOB_PREFIX) + "[0-9a-f]{64}")  # a full lowercase sha256
YOUNG_BLOB_SECONDS = 60.0  # a kernel this new may belong to a package being written now


def blob_key(digest: str) -> str:
    return BLOB_PREFIX + digest


def is_blob_key(key: str) -> bool:
    return _BLOB_KEY.fullmatch(key) is not None


def digest_of(key: str) -> str:
    """The sha256 a shared kernel's key names (``key`` must pass ``is_blob_key``)."""
    return key[len(BLOB_PREFIX):]


def is_young(written: float | None, now: float) -> bool:
    """Whether a shared kernel written at ``written`` may belong to a package being written
    right now (an unknown write time counts as old)."""
    return written is not None and now - written < YOUNG_BLOB_SECONDS


def kernel_may_go(key: str, named: Collection[str], written: float | None, now: float) -> bool:
    """The one kernel-retention rule: a shared kernel may be deleted once no package names
    it and it is not young (``is_young``). Eviction and ``precompile prune`` both apply it."""
    return key not in named and not is_young(written, now)


def plan_shared_eviction(stats: Sequence[Stat], refs: Mapping[str, Collection[str]],
                         max_bytes: int, keep: Collection[str] = ()) -> list[Stat]:
    """Which keys to delete so the rest total at most ``max_bytes``.

    ``stats`` holds packages and blobs; ``refs`` maps each package key to the blob keys it
    names. Packages go least recently used first (never one in ``keep``); a blob goes only
    once no package left names it, so a kernel another package needs is never evicted. Blobs
    no package names at all go first."""
    plan = _EvictionPlan(stats, refs, keep)
    for blob in [b for b, n in plan.users.items() if n == 0]:
        plan.drop_blob(blob)
    packages = [s for s in stats if s.key not in plan.users]
    for s in sorted(packages, key=lambda s: s.last_used or 0):
        if plan.total <= max_bytes:
            break
        if s.key not in plan.keep:
            plan.drop(s)
            plan.release(refs.get(s.key, ()))
    return plan.doomed


class _EvictionPlan:
    """What ``plan_shared_eviction`` has doomed so far, the bytes left, and how many
    packages left name each blob."""

    def __init__(self, stats: Sequence[Stat], refs: Mapping[str, Collection[str]],
                 keep: Collection[str]) -> None:
        self.by_key = {s.key: s for s in stats}
        self.keep = set(keep)
        self.total = sum(s.size for s in stats)
        self.doomed: list[Stat] = []
        self.users = {s.key: 0 for s in stats if is_blob_key(s.key)}
        for pkg, blobs in refs.items():
            if pkg in self.by_key:
                for b in self._blobs(blobs):
                    self.users[b] += 1

    def _blobs(self, names: Collection[str]) -> list[str]:
        """The stored blobs among ``names``, each once."""
        return [b for b in set(names) if b in self.users]

    def drop(self, stat: Stat) -> None:
        self.doomed.append(stat)
        self.total -= stat.size

    def drop_blob(self, key: str) -> None:
        if key not in self.keep:
            self.drop(self.by_key[key])

    def release(self, names: Collection[str]) -> None:
        """A package named ``names`` goes: each blob no package names any more goes too."""
        for b in self._blobs(names):
            self.users[b] -= 1
            if self.users[b] == 0:
                self.drop_blob(b)
