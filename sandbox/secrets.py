"""Keep passwords out of messages and logs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"

_SCHEME_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.DOTALL)

# Query options that carry a secret (redis-py passes unknown query options to the client).
_QUERY_SECRET_RE = re.compile(
    r"([?&](?:password|passwd|pass|pwd|auth|token|secret)=)[^&#\s]*", re.IGNORECASE
)

_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")


def _mask_userinfo(rest: str) -> str:
    # The last '@' before the query ends the user info. A sloppy password containing an
    # unencoded '/' or '@' must not leak; over-masking a rare '@' in a path costs less.
    cut = len(rest)
    for stop in "?#":
        index = rest.find(stop)
        if index != -1:
            cut = min(cut, index)
    at = rest.rfind("@", 0, cut)
    if at == -1:
        return rest

    userinfo, host_and_path = rest[:at], rest[at + 1 :]
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        # A bare name before '@' is a user name: redis-py reads it so too.
        return rest
    return f"{user}:{MASK}@{host_and_path}"


def mask_url(url: object) -> str:
    """Return `url` with any password replaced by `***`; user names stay, nothing raises."""
    try:
        if isinstance(url, bytes):
            url = url.decode("utf-8", errors="replace")
        text = url if isinstance(url, str) else str(url)

        match = _SCHEME_RE.match(text)
        if match is not None:
            text = match[1] + _mask_userinfo(match[2])
        return _QUERY_SECRET_RE.sub(lambda m: m[1] + MASK, text)
    except Exception:  # noqa: BLE001 - a masking helper must never break the error it decorates
        return MASK


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every given secret (and its URL-encoded form) and every URL password in `text`."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(quote(secret, safe=""))

    # Longest first, so a secret that contains another is replaced whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)

    return _URL_IN_TEXT_RE.sub(lambda m: mask_url(m[0]), text)
