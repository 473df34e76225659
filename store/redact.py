"""What of a URL may be shown or kept: no user, password, query or fragment, where a token may hide.

Below both local (the history records sources) and remote (error
messages, the journal's source of a partial): a message or a file of a
shared store is read by others, and a URL's credentials are the user's.
"""

from urllib.parse import urlsplit, urlunsplit

__all__ = ["scrub"]


def scrub(url: str) -> str:
    """``url`` without user, password, query or fragment; a path (no scheme, or a drive letter) or a file: URL as it is."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(a URL that does not parse)"
    # A Hub remote's hf://ORG/REPO@REV?include=... holds no credential: its ORG is no host, its query the filters.
    if not parts.scheme or parts.scheme in ("file", "hf") or len(parts.scheme) == 1:
        return url
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
