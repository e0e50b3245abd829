"""gzip (stdlib zlib), the default codec; decompression is bounded, never allocated past it."""

from __future__ import annotations

import zlib
from typing import ClassVar

from cache_core.errors import CorruptEntryError

_GZIP_WBITS = 16 + zlib.MAX_WBITS


class GzipCodec:
    PLUGIN_NAME: ClassVar[str] = "gzip"
    CODEC_ID: ClassVar[int] = 1

    def __init__(self, level: int = 6) -> None:
        self.level = min(max(level, 1), 9)

    def compress(self, data: bytes) -> bytes:
        packer = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
        return packer.compress(data) + packer.flush()

    def decompress(self, data: bytes, max_size: int) -> bytes:
        unpacker = zlib.decompressobj(_GZIP_WBITS)
        try:
            # max_length caps what is produced: a bomb stops at max_size + 1 bytes.
            out = unpacker.decompress(data, max_size + 1)
        except zlib.error as exc:
            raise CorruptEntryError(f"gzip payload is damaged: {exc}") from None
        if len(out) > max_size:
            raise CorruptEntryError(f"gzip payload inflates beyond {max_size} bytes")
        if not unpacker.eof:
            raise CorruptEntryError("gzip payload is truncated")
        return out
