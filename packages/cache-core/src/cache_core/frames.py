"""The L2 frame: a 3-byte header (magic, format version, codec id) and the payload.

Readers dispatch on the codec id, so changing ``compression.algorithm`` never strands
stored entries; anything without the header (a pickle planted in Redis, a stray string) is
refused as corrupt, never interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping

from cache_core.codecs import Codec
from cache_core.errors import CorruptEntryError

MAGIC = 0xCA
VERSION = 1
RAW_CODEC_ID = 0
HEADER_SIZE = 3
_RAW_HEADER = bytes((MAGIC, VERSION, RAW_CODEC_ID))

# Codec ids of the codecs this project ships outside cache-core, and the extra each needs.
KNOWN_CODEC_EXTRAS = {1: "compression", 2: "zstd", 3: "lz4"}


def encode_frame(data: bytes, codec: Codec | None = None) -> bytes:
    """Frame ``data``; compressed with ``codec`` only when that makes it smaller."""
    if codec is not None:
        packed = codec.compress(data)
        if len(packed) < len(data):
            return bytes((MAGIC, VERSION, codec.CODEC_ID)) + packed
    return _RAW_HEADER + data


def frame_codec_id(frame: bytes) -> int:
    """The codec id of ``frame``; :class:`CorruptEntryError` if it is not one of ours."""
    if len(frame) < HEADER_SIZE or frame[0] != MAGIC:
        raise CorruptEntryError("stored entry is not a caching-agent frame")
    if frame[1] != VERSION:
        raise CorruptEntryError(f"stored entry has unknown frame version {frame[1]}")
    return frame[2]


def decode_frame(
    frame: bytes,
    codecs: Mapping[int, Codec],
    max_size: int,
    missing: Mapping[int, str] | None = None,
) -> bytes:
    """The JSON bytes inside ``frame``; ``missing`` maps codec ids to the extra that reads them."""
    codec_id = frame_codec_id(frame)
    payload = frame[HEADER_SIZE:]
    if codec_id == RAW_CODEC_ID:
        if len(payload) > max_size:
            raise CorruptEntryError(f"stored entry is larger than {max_size} bytes")
        return payload
    codec = codecs.get(codec_id)
    if codec is None:
        extra = (missing or {}).get(codec_id)
        hint = f"; install caching-agent[{extra}]" if extra else ""
        raise CorruptEntryError(f"stored entry uses codec id {codec_id}, not installed{hint}")
    return codec.decompress(payload, max_size)


class CodecSet:
    """The codecs of one agent: the one that writes and every one that reads.

    Frames above ``threshold`` bytes are compressed with ``writer`` when ``compress`` is
    asked for; reading dispatches on the frame's codec id.
    """

    def __init__(
        self,
        writer: Codec | None,
        readers: Mapping[int, Codec],
        *,
        threshold: int,
        max_size: int,
        missing: Mapping[int, str] | None = None,
    ) -> None:
        self.writer = writer
        self.readers = dict(readers)
        self.threshold = threshold
        self.max_size = max_size
        self.missing = dict(missing or {})

    def encode(self, data: bytes, compress: bool = True) -> bytes:
        use = self.writer if compress and len(data) > self.threshold else None
        return encode_frame(data, use)

    def decode(self, frame: bytes) -> bytes:
        return decode_frame(frame, self.readers, self.max_size, self.missing)
