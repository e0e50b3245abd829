"""A key as the last segment of ``/cache/{key}``, every character a key may hold kept."""

from __future__ import annotations

from urllib.parse import quote


def key_path(key: str) -> str:
    """``/cache/<key>``, the key percent-encoded as UTF-8 with nothing left out: the server
    decodes the segment once, so ``/``, ``%``, ``?``, ``#`` and spaces come back as given."""
    encoded = quote(key, safe="")
    if encoded in {".", ".."}:
        # A path segment of dots alone is removed by whatever normalises the path on the
        # way (RFC 3986 5.2.4); encoded, it is the key's text.
        encoded = encoded.replace(".", "%2E")
    return "/cache/" + encoded
