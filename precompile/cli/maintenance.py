"""``prune``, ``export`` and ``import``: the commands that change a cache or copy it.

``prune`` is split in two so what it decides can be read (and tested) apart from what it
does: ``plan_prune`` says what goes and why from the inventory alone, ``apply_prune``
deletes under the store's lock, re-checking each reason against the package as it is then
(other processes keep using the cache meanwhile).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import tarfile
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from cache_backends.local import atomic_output

from . import _library as lib
from . import text
from .common import EXIT_OK, EXIT_PROBLEMS, CliError
from .inventory import (Unreadable, fetch_raw, iter_exportable, iter_store, load_from_store,
                        open_store, store_keys)

if TYPE_CHECKING:
    from precompile.read.verdict import StoredPackage as Pkg

RECENT_SECONDS = 60.0  # prune never deletes a package written this recently (unless --force)


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """What the user asked prune to remove."""

    max_size: int | None = None
    older_than: float | None = None
    stale: bool = False
    force: bool = False


# ------------------------------------------------------------------------ plan


def plan_prune(pkgs: Iterable[Pkg], opts: PruneOptions, now: float,
               recent: set[str]) -> dict[str, str]:
    """key -> why it goes, in the order the reasons were found. ``recent`` holds the keys
    written too recently to delete: without --force they stay, and still count towards
    --max-size."""
    pkgs = list(pkgs)
    plan: dict[str, str] = {}
    if opts.stale:
        plan.update(_stale(pkgs))
    if opts.older_than is not None:
        for key, why in _unused(pkgs, opts.older_than, now).items():
            plan.setdefault(key, why)  # the first reason found is the one given
    if opts.max_size is not None:
        plan.update(_over_size(pkgs, plan, opts, now, recent))
    return plan


def _stale(pkgs: list[Pkg]) -> dict[str, str]:
    return {p.key: f"stale: {why}" for p in pkgs if (why := lib.verdict.never_loads(p))}


def _last_use(pkg: Pkg) -> float | None:
    return pkg.last_used or pkg.modified


def _size(pkg: Pkg) -> int:
    return pkg.size or 0


def _unused(pkgs: list[Pkg], older_than: float, now: float) -> dict[str, str]:
    return {p.key: f"last used {text.fmt_age(t, now)}" for p in pkgs
            if (t := _last_use(p)) is not None and now - t > older_than}


def _over_size(pkgs: list[Pkg], planned: dict[str, str], opts: PruneOptions, now: float,
               recent: set[str]) -> dict[str, str]:
    """The least recently used packages to drop until the rest fit in --max-size."""
    left = [p for p in pkgs if p.key not in planned]
    total = sum(_size(p) for p in left)
    out = {}
    for p in sorted(left, key=lambda p: _last_use(p) or 0):
        if total <= opts.max_size:
            break
        out[p.key] = f"over --max-size (least recently used, {text.fmt_age(p.last_used, now)})"
        if opts.force or p.key not in recent:
            total -= _size(p)
    return out


# ----------------------------------------------------------------------- apply


def _mtime(pkg: Pkg) -> float | None:
    if pkg.path:
        with contextlib.suppress(OSError):
            return os.stat(pkg.path).st_mtime
        return None
    return pkg.modified


def is_recent(pkg: Pkg, now: float) -> bool:
    m = _mtime(pkg)
    return m is not None and now - m < RECENT_SECONDS


def apply_prune(store: Any, pkgs: dict[str, Pkg], plan: dict[str, str], *, force: bool,
                dry_run: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(removed, kept): carry out ``plan``, or with ``dry_run`` only say what would go."""
    removed, kept = [], []
    for key, why in plan.items():
        p = pkgs[key]
        item = {"key": key, "path": p.path, "size": p.size, "reason": why}
        kept_because = _remove(store, p, why, force=force, dry_run=dry_run)
        if kept_because is None:
            removed.append(item)
        else:
            kept.append({**item, "kept_because": kept_because})
    if not dry_run and hasattr(store, "clean_temp_files"):
        with contextlib.suppress(Exception):
            store.clean_temp_files()
    return removed, kept


def _remove(store: Any, pkg: Pkg, why: str, *, force: bool, dry_run: bool) -> str | None:
    """Delete one planned package (with ``dry_run``, only decide); why it stays, or None."""
    now = time.time()
    if not force and is_recent(pkg, now):
        return (f"written {text.fmt_age(_mtime(pkg), now)}: less than {int(RECENT_SECONDS)}s "
                "ago (use --force)")
    return None if dry_run else _delete(store, pkg, why, force)


def _delete(store: Any, pkg: Pkg, why: str, force: bool) -> str | None:
    try:
        return _delete_locked(store, pkg, stale=why.startswith("stale:"), force=force)
    except lib.errors.StoreError as e:
        return f"could not delete: {e}"


def _delete_locked(store: Any, pkg: Pkg, *, stale: bool, force: bool) -> str | None:
    """Delete under the store's lock, re-checking what justified it (another process may
    have rewritten the package since it was read). Returns why it was kept, or None."""
    with store.lock(pkg.key, timeout=10.0):
        fresh = load_from_store(store, pkg.key, read=stale)
        if fresh is None:
            return "already gone"
        why_not = _no_longer_goes(pkg, fresh, stale=stale, force=force)
        if why_not:
            return why_not
        store.delete(pkg.key)
    return None


def _no_longer_goes(old: Pkg, fresh: Pkg, *, stale: bool, force: bool) -> str | None:
    """Why the package as it is now (``fresh``) no longer goes for the reason ``old`` was
    planned: rewritten since it was read (unless --force), or, planned as stale, replaced
    by a package this machine would load. None when the reason still holds."""
    why_not = None if force else _rewritten(old, fresh, stale)
    if why_not is None and stale and lib.verdict.never_loads(fresh) is None:
        return "another process replaced it with a good package"
    return why_not


def _rewritten(old: Pkg, fresh: Pkg, stale: bool) -> str | None:
    now = time.time()
    if is_recent(fresh, now):
        return f"rewritten {text.fmt_age(_mtime(fresh), now)} by another process"
    changed = (fresh.data != old.data if stale else
               (fresh.size, fresh.modified) != (old.size, old.modified))
    return "rewritten by another process since it was read" if changed else None


def prune_kernels(store: Any, gone: set[str], *, force: bool,
                  dry_run: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(removed, kept, bytes of all kernels): the shared kernels (``shared_blobs``) that
    ``blobs.kernel_may_go`` lets go once ``gone`` is deleted. Without --force a young one
    stays (its package may be being written right now); with it, any no package names."""
    named = _named_kernels(store, gone)
    removed, kept, total = [], [], 0
    now = time.time()
    for blob in _kernels(store):
        total += _size(blob)
        if blob.key in named:
            continue
        item = {"key": blob.key, "path": blob.path, "size": blob.size,
                "reason": "shared kernel no package names"}
        if not (force or lib.blobs.kernel_may_go(blob.key, named, _mtime(blob), now)):
            kept.append({**item, "kept_because": f"written {text.fmt_age(_mtime(blob), now)}: "
                                                 "its package may be being written"})
        elif dry_run or _delete_blob(store, blob.key):
            removed.append(item)
    return removed, kept, total


def _named_kernels(store: Any, gone: set[str]) -> set[str]:
    """The shared kernels the packages left in ``store`` (all but ``gone``) need."""
    named: set[str] = set()
    for key in set(store_keys(store)) - gone:
        try:
            fetched = fetch_raw(store, key)
        except Unreadable:  # a FIFO, a planted name, a file over the cap: no package of ours
            continue
        if fetched is not None:
            named |= lib.shared_blobs.references(fetched[0])
    return named


def _kernels(store: Any) -> Iterator[Pkg]:
    """The shared kernels in ``store`` (their stats only)."""
    for key in store_keys(store, blobs=True):
        blob = load_from_store(store, key, read=False)
        if blob is not None:
            yield blob


def _delete_blob(store: Any, key: str) -> bool:
    try:
        return store.delete(key)
    except lib.errors.StoreError:
        return False


def _prune_doc(pkgs: Iterable[Pkg], removed: list[dict[str, Any]], kept: list[dict[str, Any]],
               *, dry_run: bool, kernel_bytes: int = 0) -> dict[str, Any]:
    """What ``prune --json`` prints: what went, what stayed and why, and the space."""
    freed = sum(r["size"] or 0 for r in removed)
    return {"removed": removed, "kept": kept, "freed": freed,
            "remaining": sum(_size(p) for p in pkgs) + kernel_bytes - freed,
            "dry_run": dry_run}


def _prune_options(args: argparse.Namespace) -> PruneOptions:
    if args.max_size is None and args.older_than is None and not args.stale:
        raise CliError("say what to prune: --max-size SIZE, --older-than AGE and/or --stale")
    return PruneOptions(args.max_size, args.older_than, args.stale, args.force)


def prune(store: Any, opts: PruneOptions, *, dry_run: bool) -> dict[str, Any]:
    """Delete the packages ``opts`` names, then the shared kernels no package left names
    (with ``dry_run``, only decide); what ``prune --json`` prints."""
    now = time.time()
    # Only --stale needs the packages' bytes; sizes and times come from stat().
    pkgs = {p.key: p for p in iter_store(store, read=opts.stale)}
    recent = {k for k, p in pkgs.items() if is_recent(p, now)}
    plan = plan_prune(pkgs.values(), opts, now, recent)
    removed, kept = apply_prune(store, pkgs, plan, force=opts.force, dry_run=dry_run)
    gone = {r["key"] for r in removed}
    k_removed, k_kept, kernel_bytes = prune_kernels(store, gone, force=opts.force,
                                                    dry_run=dry_run)
    return _prune_doc(pkgs.values(), removed + k_removed, kept + k_kept, dry_run=dry_run,
                      kernel_bytes=kernel_bytes)


def cmd_prune(args: argparse.Namespace) -> int:
    opts = _prune_options(args)
    store = open_store(args.cache)
    doc = prune(store, opts, dry_run=bool(args.dry_run))
    text.show(doc, args.json, lambda: text.print_prune(doc, store.url))
    return EXIT_OK


# ------------------------------------------------------------- export / import


def cmd_export(args: argparse.Namespace) -> int:
    """Write every package of a cache that ``import`` would accept into one archive (a tar
    of .pcpkg files); what does not verify is left out, with a line saying why."""
    store = open_store(args.cache)
    skipped: list[str] = []
    with atomic_output(args.file, mode=0o644) as fh:
        count, kernels = _write_archive(fh, iter_exportable(store, skipped))
    text.show({"file": args.file, "packages": count, "shared_kernels": kernels,
               "skipped": skipped}, args.json,
              lambda: text.print_skipped(f"exported {count} packages and {kernels} shared "
                                         f"kernels to {args.file}", skipped))
    return EXIT_PROBLEMS if skipped else EXIT_OK


def _write_archive(out: BinaryIO, packages: Iterable[tuple[str, bytes]]) -> tuple[int, int]:
    """Write (key, bytes) pairs as ``<key>.pcpkg`` members; (packages, shared kernels)."""
    count = kernels = 0
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for key, data in packages:
            info = tarfile.TarInfo(f"{key}.pcpkg")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
            if lib.blobs.is_blob_key(key):
                kernels += 1
            else:
                count += 1
    return count, kernels


def cmd_import(args: argparse.Namespace) -> int:
    """Put an archive's packages into a cache, all or nothing (precompile/read/archive.py): every
    package is verified first; one already in the cache is replaced only by a newer one."""
    store = open_store(args.cache)
    imported, skipped = _import_archive(args, store)
    text.show({"file": args.file, "imported": imported, "skipped": skipped}, args.json,
              lambda: text.print_skipped(f"imported {imported} packages into {store.url}",
                                         skipped))
    return EXIT_OK if imported or not skipped else EXIT_PROBLEMS


def _import_archive(args: argparse.Namespace, store: Any) -> tuple[int, list[str]]:
    """(packages imported, lines for those skipped): the archive staged and verified under
    the command's limits, then committed; an archive refused as a whole ends the command."""
    archive = lib.archive
    key = lib.settings.signing_key()
    limits = archive.Limits(max_package_bytes=args.max_package_size,
                            max_total_bytes=args.max_total_size, max_members=args.max_packages,
                            max_seconds=args.max_seconds)
    try:
        with archive.staging_dir() as staging:
            staged, skipped = archive.stage(args.file, staging, signing_key=key, limits=limits)
            imported, not_newer = archive.commit(store, staged, staging, signing_key=key)
    except archive.ArchiveError as e:
        raise CliError(str(e)) from e
    except OSError as e:  # the staging directory itself (disk full, no /tmp)
        raise CliError(f"cannot stage the archive: {e}; nothing was imported") from e
    return imported, skipped + not_newer
