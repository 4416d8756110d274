"""Credentials masked in URLs before a log line, ``jobs show`` or an API answer shows them.

A queue URL (``redis://:password@host:6379/0``) or an API URL may carry a
password in its userinfo or its query (``?password=``); the worker shows
such URLs in logs, job views, errors and ``/healthz``. The user name stays
(it says *which* account), the password becomes ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "redact_urls"]

_SECRET_KEYS = frozenset({"password", "pass", "pwd", "secret", "token", "access_token", "key"})
# scheme://user:password@ inside free text (an error message).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]*):([^/\s@]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo and secret query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_urls(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_KEYS for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_KEYS else v) for k, v in pairs], safe="*"
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # as given: urlunsplit would respell sqlite:////abs as sqlite://abs
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _USERINFO.sub(r"\1\2:***@", text)
