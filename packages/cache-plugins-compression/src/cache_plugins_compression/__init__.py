"""Compression codecs for Caching Agent L2 frames: gzip, and zstd / lz4 behind extras."""

from cache_plugins_compression.gzip_codec import GzipCodec

__all__ = ["GzipCodec"]
