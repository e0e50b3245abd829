"""What a codec is: a compressor of L2 frame payloads, known on the wire by its ``CODEC_ID``."""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Compresses payloads; ``decompress`` never produces more than ``max_size`` bytes.

    ``CODEC_ID`` (1-255) is written into every frame this codec compresses, so it must never
    change once released; 0 is reserved for uncompressed payloads. A codec is built with the
    configured ``compression.compression_level`` (each codec clamps it to its own range).
    """

    PLUGIN_NAME: ClassVar[str]
    CODEC_ID: ClassVar[int]

    def __init__(self, level: int) -> None: ...
    def compress(self, data: bytes) -> bytes: ...
    def decompress(self, data: bytes, max_size: int) -> bytes:
        """The original bytes; raises :class:`~cache_core.errors.CorruptEntryError` when the
        payload is damaged or would inflate beyond ``max_size``."""
        ...
