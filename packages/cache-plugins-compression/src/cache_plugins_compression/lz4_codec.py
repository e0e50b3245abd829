"""LZ4 frames (the ``lz4`` binding, extra ``caching-agent[lz4]``): the fastest, lighter ratio."""

from __future__ import annotations

from typing import ClassVar

import lz4.frame

from cache_core.errors import CorruptEntryError


class Lz4Codec:
    PLUGIN_NAME: ClassVar[str] = "lz4"
    CODEC_ID: ClassVar[int] = 3

    def __init__(self, level: int = 6) -> None:
        # lz4's fast mode is the point of choosing it; levels 3+ switch to its slow HC mode.
        self.level = 0 if level <= 6 else min(level, 16)

    def compress(self, data: bytes) -> bytes:
        packed: bytes = lz4.frame.compress(data, compression_level=self.level)
        return packed

    def decompress(self, data: bytes, max_size: int) -> bytes:
        unpacker = lz4.frame.LZ4FrameDecompressor()
        try:
            out: bytes = unpacker.decompress(data, max_length=max_size + 1)
        except RuntimeError as exc:  # lz4 reports damaged frames as RuntimeError
            raise CorruptEntryError(f"lz4 payload is damaged: {exc}") from None
        if len(out) > max_size:
            raise CorruptEntryError(f"lz4 payload inflates beyond {max_size} bytes")
        if not unpacker.eof:
            raise CorruptEntryError("lz4 payload is truncated")
        return out
