"""The L2 frame: a header (magic, format version, codec id, from version 2 the entry's
expiry, from version 3 the write's stamp), then the payload; a compressed payload is
preceded by its uncompressed size (4 bytes, big-endian).

Format 3, written today (19 header bytes, integers big-endian)::

    0       magic 0xCA
    1       format version (3)
    2       codec id (0: not compressed)
    3..10   expiry: Unix milliseconds by the writer's clock, 0: never
    11..18  stamp: the write's version (a :class:`HybridClock` reading), 0: none

A tombstone is that header alone with codec id 0xFF: what a delete leaves (with its
stamp) where the store can compare stamps, so a write made before the delete is refused
after it; it reads as no entry.

The expiry rides beside the engine's own PX, so a read is a plain GET or MGET: no PTTL per
key. The stamp orders writes of one key by when each was made (a write_back write: when it
was accepted, not when it was flushed): a tier with a conditional set
(:class:`~cache_core.tiers.base.ConditionalSet`) keeps whichever is newer, whatever the
order they reach it in. Later formats keep both fields where they are. Frames of formats 1
(3-byte header, no expiry: its remaining TTL is asked of the engine) and 2 (11 bytes, no
stamp: older than any stamped write) stay readable.

Readers dispatch on the codec id, so changing ``compression.algorithm`` never strands
stored entries; anything without the header (a pickle planted in Redis, a stray string) is
refused as corrupt, never interpreted. The declared size bounds decompression before it
starts: a frame declaring more than the cap is refused at once, and one that inflates past
what it declares is refused as soon as it does, so a planted compression bomb costs no
more memory than the frame itself.

:meth:`CodecSet.read` is what a tier reads with: besides the header and the lengths it
checks that the payload is exactly one well-formed JSON value, since the agent splices
those bytes into answers unparsed (a frame cut short, or one whose payload is
``1,"hit":false``, would otherwise break or forge the answer around it).
"""

from __future__ import annotations

import gc
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from attrs import define

from cache_core.codecs import Codec
from cache_core.errors import CorruptEntryError
from cache_core.extras import install_hint

MAGIC = 0xCA
VERSION = 3
"""The version written; 1, 2 and 3 are read."""
RAW_CODEC_ID = 0
TOMBSTONE_CODEC_ID = 0xFF
"""The codec id of a tombstone: a header alone, left by a delete with its stamp (and
expiring after :data:`TOMBSTONE_TTL`), read as no entry."""
TOMBSTONE_TTL = 60.0
"""Seconds a delete's tombstone stays: within them no write made before the delete lands
after it (another instance's write_back flush, normally due within its flush_interval)."""
EXPIRY_AT = 3
STAMP_AT = 11
HEADER_SIZE = 19
"""Magic, version, codec id, expiry (8 bytes), stamp (8 bytes)."""
COMPRESSED_HEADER_SIZE = HEADER_SIZE + 4
V2_HEADER_SIZE = 11
V1_HEADER_SIZE = 3
NEVER = 0
"""The expiry of an entry that never expires."""
UNSTAMPED = 0
"""The stamp of a frame that carries none (formats 1 and 2): older than any write's."""
MAX_AHEAD_NS = 60 * 10**9
"""How far ahead of a writer's clock a stored stamp may be and still win (ns): a stamp
beyond it comes from a clock gone wrong, and must neither freeze a key nor drag every
instance's clock along with it."""
_MAX_DECLARED = 2**32 - 1
_MAX_U64 = 2**64 - 1
_RAW_HEADER = bytes((MAGIC, VERSION, RAW_CODEC_ID))
_RAW_HEAD = struct.Struct(f">{EXPIRY_AT}sQ")
"""The bytes before the expiry, and the expiry: a frame's header read in one call."""
_GC_PAUSE_BYTES = 32 * 1024

Opened = tuple[bytes, float | None, Any]
"""An entry read from a frame: its JSON bytes, seconds it has left (None: never expires)
and its value when asked for (:meth:`CodecSet.open_many`)."""


def header(
    codec_id: int = RAW_CODEC_ID, expires_at_ms: int = NEVER, stamp: int = UNSTAMPED
) -> bytes:
    """The header of a frame of the current format (a compressed payload's declared size
    is not part of it)."""
    expiry = min(max(expires_at_ms, 0), _MAX_U64).to_bytes(8, "big")
    written = min(max(stamp, 0), _MAX_U64).to_bytes(8, "big")
    return bytes((MAGIC, VERSION, codec_id)) + expiry + written


def tombstone(expires_at_ms: int, stamp: int) -> bytes:
    """The frame a delete made at ``stamp`` leaves behind, expiring at ``expires_at_ms``."""
    return header(TOMBSTONE_CODEC_ID, expires_at_ms, stamp)


def is_tombstone(frame: bytes) -> bool:
    return len(frame) == HEADER_SIZE and frame[2] == TOMBSTONE_CODEC_ID and frame[0] == MAGIC


def encode_frame(
    data: bytes, codec: Codec | None = None, expires_at_ms: int = NEVER, stamp: int = UNSTAMPED
) -> bytes:
    """Frame ``data`` expiring at ``expires_at_ms`` (Unix ms, 0: never), written with
    ``stamp``; compressed with ``codec`` only when that makes it smaller."""
    if codec is not None and len(data) <= _MAX_DECLARED:
        packed = codec.compress(data)
        if len(packed) + 4 < len(data):
            declared = len(data).to_bytes(4, "big")
            return header(codec.CODEC_ID, expires_at_ms, stamp) + declared + packed
    return header(RAW_CODEC_ID, expires_at_ms, stamp) + data


_HEADER_SIZES = {1: V1_HEADER_SIZE, 2: V2_HEADER_SIZE, VERSION: HEADER_SIZE}


def _header_size(frame: bytes) -> int:
    """The header size of ``frame`` (without a declared size); refuses what is not ours."""
    if len(frame) >= HEADER_SIZE and frame[0] == MAGIC and frame[1] == VERSION:
        return HEADER_SIZE
    if len(frame) < V1_HEADER_SIZE or frame[0] != MAGIC:
        raise CorruptEntryError("stored entry is not a caching-agent frame")
    size = _HEADER_SIZES.get(frame[1])
    if size is None:
        raise CorruptEntryError(f"stored entry has unknown frame version {frame[1]}")
    if len(frame) < size:
        raise CorruptEntryError("stored entry is truncated")
    return size


def frame_expiry(frame: bytes) -> int | None:
    """When ``frame`` expires (Unix ms, 0: never), or None for a version 1 frame, which
    does not say. Call on a frame :func:`decode_frame` accepted."""
    if frame[1] >= 2:
        return int.from_bytes(frame[EXPIRY_AT:STAMP_AT], "big")
    return None


def frame_stamp(frame: bytes) -> int:
    """The stamp of the write that stored ``frame``; :data:`UNSTAMPED` for a frame of an
    earlier format, or for anything that is not a frame (so any write replaces those).
    For a tier that compares stamps (:class:`~cache_core.tiers.base.ConditionalSet`):
    it reads only the header, never the payload."""
    if len(frame) < HEADER_SIZE or frame[0] != MAGIC or frame[1] < VERSION:
        return UNSTAMPED
    return int.from_bytes(frame[STAMP_AT:HEADER_SIZE], "big")


class HybridClock:
    """Stamps writes: a hybrid logical clock folded into one integer, the wall clock in
    Unix nanoseconds, or one past the last stamp when the wall clock has not moved past it
    (two writes of one instance never share a stamp, and a later one is always newer).

    :meth:`observe` takes in a stamp that beat one of ours (a write refused as older): the
    next stamp is newer than it, so a clock running behind another instance's loses one
    race, not every one. Stamps of different instances compare by their wall clocks: keep
    them in step (NTP); two writes made closer together than the skew may be ordered
    either way."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.now_ns = now_ns
        self.last = UNSTAMPED

    def stamp(self) -> int:
        now = self.now_ns()
        last = self.last
        # After the wall clock stepped back by more than MAX_AHEAD_NS, follow it: the last
        # stamp is then as far from the truth as a stamp from the future would be.
        stamp = now if now > last or last - now > MAX_AHEAD_NS else last + 1
        self.last = stamp
        return stamp

    def horizon(self) -> int:
        """The newest stamp a stored frame may carry and still win over ours."""
        return self.now_ns() + MAX_AHEAD_NS

    def observe(self, stamp: int) -> None:
        if self.last < stamp <= self.horizon():
            self.last = stamp


def decode_frame(
    frame: bytes,
    codecs: Mapping[int, Codec],
    max_size: int,
    missing: Mapping[int, str] | None = None,
) -> bytes:
    """The JSON bytes inside ``frame``; ``missing`` maps codec ids to the extra that reads them."""
    header = _header_size(frame)
    codec_id = frame[2]
    if codec_id == RAW_CODEC_ID:
        if len(frame) - header > max_size:
            raise CorruptEntryError(f"stored entry is larger than {max_size} bytes")
        return frame[header:]
    codec = codecs.get(codec_id)
    if codec is None:
        extra = (missing or {}).get(codec_id)
        hint = f"; {install_hint(extra)}" if extra else ""
        raise CorruptEntryError(f"stored entry uses codec id {codec_id}, not installed{hint}")
    if len(frame) < header + 4:
        raise CorruptEntryError("stored entry is truncated")
    declared = int.from_bytes(frame[header : header + 4], "big")
    if declared > max_size:
        raise CorruptEntryError(f"stored entry inflates beyond {max_size} bytes")
    payload = memoryview(frame)[header + 4 :]  # no copy of a large payload
    data = codec.decompress(payload, declared)  # type: ignore[arg-type]
    if len(data) != declared:
        raise CorruptEntryError(f"stored entry holds {len(data)} bytes, declares {declared}")
    return data


def check_json(data: bytes) -> None:
    """Refuse ``data`` as corrupt unless it is exactly one well-formed JSON value."""
    parse_json(data)


def parse_json(data: bytes) -> Any:
    """The value ``data`` holds; :class:`CorruptEntryError` unless it is exactly one
    well-formed JSON value."""
    # The parse builds a tree of objects. Past a few tens of KB its allocations trigger
    # cyclic GC passes (full ones on a large heap) that cost more than the parse itself
    # and can free none of it: the tree is alive until the parse returns it.
    pause = len(data) > _GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        # orjson refuses trailing content, so a payload that would add fields after the
        # value spliced into an answer is refused too. It also refuses what it cannot parse
        # back (1e400, lone surrogates, 1024+ levels), none of which orjson ever wrote.
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntryError(f"stored entry is not one JSON value: {exc}") from None
    finally:
        if pause:
            gc.enable()


@define(slots=True)
class CodecCounters:
    """What one codec (or ``none``: stored uncompressed) did to written frames."""

    frames: int = 0
    bytes_in: int = 0
    """JSON bytes handed to the codec."""
    bytes_out: int = 0
    """Payload bytes stored (the header excluded)."""

    def summary(self) -> dict[str, float]:
        ratio = self.bytes_in / self.bytes_out if self.bytes_out else 0.0
        return {
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "ratio": round(ratio, 3),
        }


class CodecSet:
    """The codecs of one agent: the one that writes and every one that reads.

    Frames above ``threshold`` bytes are compressed with ``writer`` when ``compress`` is
    asked for and it makes them smaller; reading dispatches on the frame's codec id.
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
        self._raw_limit = max_size + HEADER_SIZE
        self.counters: dict[str, CodecCounters] = {"none": CodecCounters()}
        if writer is not None:
            self.counters[writer.PLUGIN_NAME] = CodecCounters()

    def encode(
        self,
        data: bytes,
        compress: bool = True,
        expires_at_ms: int = NEVER,
        stamp: int = UNSTAMPED,
    ) -> bytes:
        codec = self.writer if compress and len(data) > self.threshold else None
        frame = encode_frame(data, codec, expires_at_ms, stamp)
        raw = frame[2] == RAW_CODEC_ID or self.writer is None
        counters = self.counters["none" if raw or self.writer is None else self.writer.PLUGIN_NAME]
        counters.frames += 1
        counters.bytes_in += len(data)
        counters.bytes_out += len(frame) - (HEADER_SIZE if raw else COMPRESSED_HEADER_SIZE)
        return frame

    def decode(self, frame: bytes) -> bytes:
        """The payload of ``frame``, its header and lengths checked (not its JSON)."""
        return decode_frame(frame, self.readers, self.max_size, self.missing)

    def read(self, frame: bytes) -> tuple[bytes, int | None]:
        """The JSON bytes in ``frame`` and its expiry (:func:`frame_expiry`), after
        checking all of it: header, lengths, codec and exactly one JSON value.
        :class:`CorruptEntryError` otherwise."""
        if HEADER_SIZE <= len(frame) <= self._raw_limit and frame.startswith(_RAW_HEADER):
            # The common frame (current format, not compressed): read in place.
            data = frame[HEADER_SIZE:]
            expiry: int | None = int.from_bytes(frame[EXPIRY_AT:STAMP_AT], "big")
        else:
            data = self.decode(frame)
            expiry = frame_expiry(frame)
        check_json(data)
        return data, expiry

    def open_many(
        self, frames: Sequence[bytes | None], now_ms: float, decode: bool
    ) -> tuple[list[Opened | CorruptEntryError | None], list[int], list[int]]:
        """Each frame as :meth:`read` checks it, with its JSON parsed once: for a frame,
        ``(JSON bytes, seconds left by the writer's clock at ``now_ms`` or None for never,
        the parsed value when ``decode`` else None)``; None for an absent frame or one past
        its expiry; a bad one's :class:`CorruptEntryError` in its place. Then where the
        frames of format 1 are (no expiry inside: answered as never expiring, for the
        caller to ask the store), and where the bad ones are.

        A batch's whole cost is this loop, so the common frame (current format, not
        compressed, small enough to parse without pausing the collector) is read in place
        without a call per frame; the parse that checks it is the one that decodes it."""
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        raw_head, raw = _RAW_HEAD.unpack_from, _RAW_HEADER
        fast_limit = min(self._raw_limit, HEADER_SIZE + _GC_PAUSE_BYTES)
        out: list[Opened | CorruptEntryError | None] = []
        undated: list[int] = []
        corrupt: list[int] = []
        append = out.append
        for frame in frames:
            if frame is None:
                append(None)
                continue
            expiry: int | None
            if HEADER_SIZE <= len(frame) <= fast_limit and (head := raw_head(frame))[0] == raw:
                data = frame[HEADER_SIZE:]
                try:
                    value = loads(data)
                except decode_error as exc:
                    corrupt.append(len(out))
                    append(CorruptEntryError(f"stored entry is not one JSON value: {exc}"))
                    continue
                expiry = head[1]
            else:
                if is_tombstone(frame):
                    append(None)  # deleted
                    continue
                try:
                    data = self.decode(frame)
                    value = parse_json(data)
                except CorruptEntryError as exc:
                    corrupt.append(len(out))
                    append(exc)
                    continue
                expiry = frame_expiry(frame)
            if not decode:
                value = None  # checked, not kept: a batch of large values is not held twice
            if expiry == NEVER:
                append((data, None, value))
            elif expiry is None:
                undated.append(len(out))
                append((data, None, value))
            else:
                left = (expiry - now_ms) / 1000.0
                # Past its expiry by the writer's clock: the store drops it within the skew.
                append((data, left, value) if left > 0 else None)
        return out, undated, corrupt

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: counters.summary() for name, counters in self.counters.items()}
