"""Masking what looks like a credential in a message before a report or rejects file keeps it.

Defence in depth: transport never puts a token in a message, but an API
could echo a header back. Product data is never touched, only messages.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)\b(authorization|x-auth-token|x-api-key|private-token|api[_-]?key"
        r"|access[_-]?token|token|secret|password)(\"?\s*[:=]\s*\"?)"
        r"(?!(?:bearer|basic)\s|\*\*\*)[^\s\"'&,;]+"
    ),
)


# scheme://user:password@host: the password (redis://:password@host has no user).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")


def redact(message: str) -> str:
    """``message`` with anything that looks like a credential replaced by ``***``:
    tokens, keys and passwords, also a URL's password (``https://user:***@host``)."""
    for pattern in _SECRET_PATTERNS:
        message = pattern.sub(r"\1\2***", message)
    return _URL_PASSWORD.sub(r"\1***@", message)
