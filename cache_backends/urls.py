"""Store URLs as URLs: a list of them in one string, and the form that messages show.

A list of tiers in one setting is separated by ``|`` (``/var/cache/overlay|/opt/baked``),
a character no URL holds unencoded (RFC 3986; a password with a ``|`` in it is written
``%7C``). Commas, the old separator, are legal inside a URL (``redis://:pa,ss@host``), so a
value without ``|`` is split at commas only where that is unambiguous: every part is an
absolute path or a URL with a scheme and a well-formed authority. Anything else is one
store, never a fragment of a password opened as a directory under the current one.

:func:`redact` is what every message shows of a URL: no password, in the authority or in
a query parameter that holds a secret.
"""
from __future__ import annotations

import os
import re
import urllib.parse

SEPARATOR = "|"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAM = re.compile(r"pass|secret|token|sig|credential|key|auth", re.IGNORECASE)
_MASK = "***"


def split_specs(value: str) -> str | list[str]:
    """One store spec, or the tiers a ``|``- (or, unambiguously, comma-) separated list
    names, fastest first."""
    for separator, relative_ok in ((SEPARATOR, True), (",", False)):
        parts = [part.strip() for part in value.split(separator) if part.strip()]
        if len(parts) > 1 and all(_stands_alone(part, relative_ok) for part in parts):
            return parts
    return value.strip(" \t" + SEPARATOR)


def _stands_alone(part: str, relative_ok: bool) -> bool:
    """Whether ``part`` is a whole store spec by itself: a URL with a scheme whose
    authority parses (``redis://:pa`` of ``redis://:pa,ss@h`` does not: its "port" is not a
    number), or a path (for commas, an absolute or ``~`` one)."""
    if _SCHEME.match(part):
        try:
            urllib.parse.urlsplit(part).port  # noqa: B018 - raises on a broken authority
        except ValueError:
            return False
        return True
    return relative_ok or part.startswith(("/", "~")) or os.path.isabs(part)


def redact(url: str) -> str:
    """``url`` as messages show it: the password in its authority and the values of query
    parameters that hold secrets masked; an authority that does not parse is masked whole
    (it may be part of a password)."""
    if not isinstance(url, str) or "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = _redact_netloc(parts)
    except ValueError:
        scheme = url.partition("://")[0]
        return f"{scheme}://{_MASK}"
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    # Not urlunsplit: it turns unix:///x into unix:/x.
    rest = url.partition("://")[2]
    path = rest[len(parts.netloc):].split("?", 1)[0].split("#", 1)[0]
    return (f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def _redact_query(query: str) -> str:
    """``query`` with the values of parameters that hold secrets masked; unchanged (not
    re-encoded) when none does."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(_SECRET_PARAM.search(name) for name, _ in pairs):
        return query
    return urllib.parse.urlencode(
        [(n, _MASK if _SECRET_PARAM.search(n) else v) for n, v in pairs], safe="*")


def _redact_netloc(parts: urllib.parse.SplitResult) -> str:
    """The authority with its password masked; host and port as written (urllib splits the
    user information off at the last ``@``, so no part of the password follows it)."""
    parts.port  # noqa: B018 - ValueError for an authority that is not host[:port]
    if parts.password is None:
        return parts.netloc
    return f"{parts.username or ''}:{_MASK}@{parts.netloc.rpartition('@')[2]}"
