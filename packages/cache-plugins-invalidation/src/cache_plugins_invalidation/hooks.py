"""Registers tag, event and dependency invalidation with the Caching Agent."""

from __future__ import annotations
