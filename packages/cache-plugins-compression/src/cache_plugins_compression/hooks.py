"""Registers this package's codecs with the Caching Agent.

zstd and lz4 register only when their binding is installed (extras ``zstd`` and ``lz4``);
without it, a config naming them fails at start with the extra to install, and a stored
frame they wrote reads as an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec
from typing import Any

from cache_core import hookimpl
from cache_plugins_compression.gzip_codec import GzipCodec


@hookimpl
def cache_register_codecs() -> Sequence[type[Any]]:
    codecs: list[type[Any]] = [GzipCodec]
    if find_spec("zstandard") is not None:
        from cache_plugins_compression.zstd_codec import ZstdCodec

        codecs.append(ZstdCodec)
    if find_spec("lz4") is not None:
        from cache_plugins_compression.lz4_codec import Lz4Codec

        codecs.append(Lz4Codec)
    return codecs
