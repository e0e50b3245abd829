"""zstd (the ``zstandard`` binding, extra ``caching-agent[zstd]``): fast, and strong on JSON."""

from __future__ import annotations

import io
from typing import ClassVar

import zstandard

from cache_core.errors import CorruptEntryError


class ZstdCodec:
    PLUGIN_NAME: ClassVar[str] = "zstd"
    CODEC_ID: ClassVar[int] = 2

    def __init__(self, level: int = 6) -> None:
        # compression_level is gzip's 1-9 in the seed; zstd takes 1-22, same meaning of "more".
        self.level = min(max(level, 1), 22)
        self._packer = zstandard.ZstdCompressor(level=self.level)
        self._unpacker = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        return self._packer.compress(data)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        try:
            declared = zstandard.frame_content_size(data)  # -1 when the frame does not say
        except zstandard.ZstdError as exc:
            raise CorruptEntryError(f"zstd payload is damaged: {exc}") from None
        if declared > max_size:
            raise CorruptEntryError(f"zstd payload inflates beyond {max_size} bytes")
        if declared >= 0:
            # libzstd writes into a buffer of exactly the declared size and fails if the
            # frame holds more: the allocation is bounded by the check above.
            try:
                return self._unpacker.decompress(data)
            except zstandard.ZstdError as exc:
                raise CorruptEntryError(f"zstd payload is damaged: {exc}") from None
        try:
            # A stream read of at most max_size + 1 bytes: a lying header cannot make it grow.
            with self._unpacker.stream_reader(io.BytesIO(data)) as reader:
                out = reader.read(max_size + 1)
                if len(out) <= max_size and reader.read(1):
                    out += b"?"  # more follows: over the cap as well
        except zstandard.ZstdError as exc:
            raise CorruptEntryError(f"zstd payload is damaged: {exc}") from None
        if len(out) > max_size:
            raise CorruptEntryError(f"zstd payload inflates beyond {max_size} bytes")
        return out
