"""Tag versions: what makes invalidating a tag one step, whatever the tag holds and whatever
the engine evicted.

Each tag has a version, ``P\\x1ftv:TAG`` (16 hex digits: the engine's clock in µs when it
was made or bumped, each bump past the last). A write that carries tags (its own, and those
its dependencies' entries record, so what depends on a tagged key goes with it) records
the current version of each in the frame it stores, inside its own script
(cache_plugins_redis.scripts). Invalidating a tag bumps its version and announces the new
one: one step, O(1) in the keys carrying it. A read of an entry whose recorded version is
older than the tag's, or whose tag has no version left (its key expired or was evicted),
is a miss. Outside Cluster only: a script's keys must share one slot, an entry's and its
tags' do not. In Cluster tags are walked as before (cache_plugins_redis.index).

The tier stores such an entry as a frame of format 4 (core writes format 3): core's
19-byte header with its format byte set to 4, then the annotation's length (4 bytes, big
endian) and, per tag, the name's length (2 bytes), the name and its version; then the
rest of core's frame. The tier hands core the format 3 frame it was given (:func:`strip`),
so core never sees a format of the tier's own.

Each instance keeps the versions it learned (:class:`TagVersions`), coherent by the
notices (kind ``v``: tag, version, tag, version...; an empty version: the tag has none),
and which keys it handed out carrying which tags, so a bump elsewhere drops exactly
those from its L1. Both are forgotten when the notices stop flowing, as L1 is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ANNOTATED = 4
"""The format byte of a frame carrying tag versions."""
_HEAD = 19
_NOTES = _HEAD + 4
VERSION_SIZE = 16
MAX_KNOWN = 100_000
"""Tags whose versions an instance remembers at most (the oldest learned goes first, and is
asked again when next needed)."""
MAX_HELD = 200_000
"""Keys an instance remembers the tags of at most; past it the oldest leaves L1 too (its
tags could no longer drop it)."""

Pairs = list[tuple[str, bytes]]


def annotated(frame: bytes | None) -> bool:
    return frame is not None and len(frame) >= _NOTES and frame[1] == ANNOTATED


def strip(frame: bytes) -> tuple[bytes, Pairs]:
    """The format 3 frame inside an annotated one, and the tags and versions it records.
    A length running past the frame reads as no tags recorded, but the frame is cut where
    it says: core then refuses what is left as corrupt."""
    size = int.from_bytes(frame[_HEAD:_NOTES], "big")
    end = _NOTES + size
    pairs: Pairs = []
    at = _NOTES
    while at + 2 <= end:
        length = int.from_bytes(frame[at : at + 2], "big")
        name_end = at + 2 + length
        version = frame[name_end : name_end + VERSION_SIZE]
        if len(version) < VERSION_SIZE or name_end + VERSION_SIZE > end:
            break
        pairs.append((frame[at + 2 : name_end].decode(errors="replace"), version))
        at = name_end + VERSION_SIZE
    return frame[:1] + b"\x03" + frame[2:_HEAD] + frame[end:], pairs


class TagVersions:
    """One instance's view of tag versions, and the keys it handed out carrying tags."""

    def __init__(self) -> None:
        self.known: dict[str, bytes | None] = {}
        """Tag → its current version as last learned (None: it has none)."""
        self._held: dict[str, tuple[str, ...]] = {}
        self._holders: dict[str, set[str]] = {}

    @property
    def holds_any(self) -> bool:
        return bool(self._held)

    def unknown(self, pairs: Iterable[tuple[str, bytes]]) -> set[str]:
        """The tags among ``pairs`` whose version must be asked: never learned, learned as
        having none (a write since may have made one), or recorded past the one learned (a
        bump whose notice is still on its way)."""
        known = self.known
        out = set()
        for tag, version in pairs:
            current = known.get(tag, b"")
            if current is None or current == b"" or version > current:
                out.add(tag)
        return out

    def current(self, pairs: Iterable[tuple[str, bytes]]) -> bool:
        """Whether every recorded version is its tag's current one (an unknown tag: not)."""
        known = self.known
        return all(known.get(tag) == version for tag, version in pairs)

    def learn(self, tag: str, version: bytes | None) -> None:
        known = self.known
        known.pop(tag, None)
        if len(known) >= MAX_KNOWN:
            del known[next(iter(known))]
        known[tag] = version

    def hold(self, key: str, tags: Sequence[str]) -> list[str]:
        """``key`` was handed out (read, or written by this instance) carrying ``tags``;
        returns the keys that must leave L1 because they are no longer remembered."""
        out: list[str] = []
        old = self._held.pop(key, None)
        if old is not None:
            self._release(key, old)
        if not tags:
            return out
        if len(self._held) >= MAX_HELD:
            oldest, its_tags = next(iter(self._held.items()))
            del self._held[oldest]
            self._release(oldest, its_tags)
            out.append(oldest)
        held = tuple(tags)
        self._held[key] = held
        for tag in held:
            self._holders.setdefault(tag, set()).add(key)
        return out

    def release(self, keys: Iterable[str]) -> None:
        """``keys`` carry no tags now, as far as this instance knows (rewritten without, or
        read as stored without): a bump of their old tags must not drop them, nor a write
        this instance buffered for them since."""
        held = self._held
        if not held:
            return
        for key in keys:
            tags = held.pop(key, None)
            if tags is not None:
                self._release(key, tags)

    def _release(self, key: str, tags: tuple[str, ...]) -> None:
        for tag in tags:
            holders = self._holders.get(tag)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._holders[tag]

    def bumped(self, pairs: Iterable[tuple[str, bytes | None]]) -> list[str]:
        """Tags got new versions (None: none at all): learn them; the keys this instance
        handed out carrying any of them, which must leave its L1."""
        out: set[str] = set()
        held = self._held
        for tag, version in pairs:
            self.learn(tag, version)
            holders = self._holders.pop(tag, ())
            for key in holders:
                tags = held.pop(key, None)
                if tags is not None and len(tags) > 1:  # its one tag's holders are gone
                    self._release(key, tags)
            out.update(holders)
        return list(out)

    def forget(self) -> None:
        """Notices stopped flowing: what was learned may be stale (L1 is emptied too)."""
        self.known.clear()
        self._held.clear()
        self._holders.clear()


def parse_notice(body: str) -> list[tuple[str, bytes | None]]:
    """The (tag, version) pairs of a ``v`` notice's body."""
    parts = body.split("\n")
    return [
        (parts[i], parts[i + 1].encode() or None) for i in range(0, len(parts) - 1, 2) if parts[i]
    ]
