"""Compression codecs for Caching Agent L2 frames (gzip; zstd and lz4 behind extras)."""

from cache_plugins_compression.gzip_codec import GzipCodec

__all__ = ["GzipCodec"]
