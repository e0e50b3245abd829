"""gzip (stdlib zlib), the default codec; decompression is bounded, never allocated past it."""

from __future__ import annotations

import zlib
from typing import ClassVar

from cache_core.errors import CorruptEntryError

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_STEP = 256 * 1024


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
        out = bytearray()
        pending = data
        try:
            # Bounded steps: memory stays near what is kept, and a bomb stops at max_size.
            while not unpacker.eof:
                step = unpacker.decompress(pending, _STEP)
                out += step
                if len(out) > max_size:
                    raise CorruptEntryError(f"gzip payload inflates beyond {max_size} bytes")
                pending = unpacker.unconsumed_tail
                if not step and not pending:
                    break
        except zlib.error as exc:
            raise CorruptEntryError(f"gzip payload is damaged: {exc}") from None
        if not unpacker.eof:
            raise CorruptEntryError("gzip payload is truncated")
        return bytes(out)
