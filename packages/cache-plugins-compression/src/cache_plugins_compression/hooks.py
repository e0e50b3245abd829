"""Registers this package's codecs with the Caching Agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_plugins_compression.gzip_codec import GzipCodec


@hookimpl
def cache_register_codecs() -> Sequence[type[Any]]:
    return [GzipCodec]
