"""Entity tags for cached values (HTTP ``ETag``): a digest of a value's JSON bytes, so every
instance gives one value the same tag and a client's ``If-None-Match`` is answered 304 by
whichever instance it reaches."""

from __future__ import annotations

from hashlib import blake2b


def etag_of(data: bytes) -> str:
    """The weak entity tag of ``data``: weak (``W/``) because a GET's body also says which
    tier answered, so two answers with one tag may differ in that field; 64 bits, so two
    values of one key sharing a tag is a 1 in 2**64 chance."""
    return f'W/"{blake2b(data, digest_size=8).hexdigest()}"'
