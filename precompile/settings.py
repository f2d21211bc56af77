"""Every ``PRECOMPILE_*`` environment variable, read here and nowhere else.

One parser per kind of value, so ``PRECOMPILE_X=0`` means off for every flag and a typo
(``PRECOMPILE_WAIT_TIMEOUT=10m``) is a :class:`SettingError` that names the variable, rather
than a ``ValueError`` from deep inside a decorator at import time. Callers decide what a bad
value costs: :func:`or_default` turns it into one warning and the default (a cache setting
must never stop a program that plain ``torch.compile`` runs), or raises it in strict mode.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

from .counters import STATS
from .errors import SettingError

log = logging.getLogger("precompile")
T = TypeVar("T")

CACHE_URL = "PRECOMPILE_CACHE_URL"  # a store URL (or path); wins over CACHE_DIR
CACHE_DIR = "PRECOMPILE_CACHE_DIR"  # a directory store
DISABLE = "PRECOMPILE_DISABLE"  # plain torch.compile
STRICT = "PRECOMPILE_STRICT"  # a miss raises instead of compiling
WAIT_TIMEOUT = "PRECOMPILE_WAIT_TIMEOUT"  # seconds a single-flight waiter waits
SIGNING_KEY = "PRECOMPILE_SIGNING_KEY"  # HMAC key for packages
TRUST_SHARED_CACHE = "PRECOMPILE_TRUST_SHARED_CACHE"  # use stores other users can write
FULL_IMPORTS = "PRECOMPILE_FULL_IMPORTS"  # load graphs the way torch does
LOG = "PRECOMPILE_LOG"  # debug|info|warning|error
STATS_FILE = "PRECOMPILE_STATS_FILE"  # where the pytest plugin writes the counters
AUTO = "PRECOMPILE_AUTO"  # every torch.compile in the process (and its children) is cached
AUTO_RUN = "PRECOMPILE_AUTO_RUN"  # set by the first auto process: its children share a stats file

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_WARNED: set[str] = set()


def text(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    return os.environ.get(name) or None


def flag(name: str) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off (any case); unset is off."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingError(f"{name}={os.environ[name]!r} is not a yes/no value; set it to 1 "
                       "(on) or 0 (off)")


def seconds(name: str, default: float) -> float:
    """A non-negative number of seconds (``600``, ``2.5``); unset is ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise SettingError(f"{name}={raw!r} is not a number of seconds; write a plain "
                           f"number such as {name}=600 (no unit)")
    return value


def cache_spec() -> tuple[str, str | list[str]] | None:
    """(variable, value) of the store the environment names, URL first; None if neither.
    ``PRECOMPILE_CACHE_URL`` may list tiers, fastest first, separated by ``|``
    (``/var/cache/overlay|/opt/baked``: a writable overlay over a read-only baked cache);
    commas still separate tiers where no URL could hold them (``cache_backends.urls``)."""
    from cache_backends.urls import split_specs  # stores load only when a store is opened

    for name in (CACHE_URL, CACHE_DIR):
        value = text(name)
        if value and name == CACHE_URL:
            return name, split_specs(value)
        if value:
            return name, value
    return None


def signing_key() -> bytes | None:
    """The HMAC key; None when unset. Set but empty (or blank) is a SettingError, exactly
    like ``signing_key=""``: ``PRECOMPILE_SIGNING_KEY=$(cat missing-file)`` must not
    quietly turn signing off and accept unsigned packages."""
    raw = os.environ.get(SIGNING_KEY)
    if raw is None:
        return None
    if not raw.strip():
        raise SettingError(f"{SIGNING_KEY} is set but empty, which would turn package signing "
                           f"off; set it to the key, or unset {SIGNING_KEY} to run without "
                           "signing")
    return raw.encode()


def share_auto_run() -> str:
    """The ``PRECOMPILE_AUTO`` run this process belongs to: the first process of a run names
    it (pid and start time) in the environment, its children inherit the name, so all of
    them add up in one stats file rather than overwrite each other's."""
    run = text(AUTO_RUN)
    if run is None:
        run = f"{os.getpid()}-{time.time_ns()}"
        os.environ[AUTO_RUN] = run
    return run


def log_level() -> str | None:
    """The level ``PRECOMPILE_LOG`` asks for; None when unset or not a level name."""
    raw = os.environ.get(LOG, "").strip().upper()
    return raw if raw in _LOG_LEVELS else None


def or_default(read: Callable[[], T], default: T, *, strict: bool,
               instead: str | None = None) -> T:
    """``read()``; a bad value is one warning (and a reason in ``stats()["miss_reasons"]``)
    and ``default``, or the SettingError itself in strict mode. ``instead`` says what
    happens then, for the warning (default: "using <default>")."""
    try:
        return read()
    except SettingError as e:
        if strict:
            raise
        message = f"{e}; {instead or f'using {default!r}'} instead"
        STATS.note_miss(message)
        if message not in _WARNED:
            _WARNED.add(message)
            log.warning("precompile: %s", message)
        return default


def trust_shared() -> bool:
    """``PRECOMPILE_TRUST_SHARED_CACHE``: whether local stores may be ones other users can
    write (a bad value is one warning and "no")."""
    return or_default(lambda: flag(TRUST_SHARED_CACHE), False, strict=False)
