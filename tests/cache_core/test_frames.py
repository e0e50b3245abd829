"""The L2 frame's header: format 3 carries the write's stamp (its version) beside the
expiry, compressed or not; frames of formats 1 and 2 still read, and count as unstamped
(older than any write); the clock that stamps writes never gives one instance two equal
stamps, and takes in a newer stamp that beat one of its own."""

from __future__ import annotations

import zlib
from typing import ClassVar

import orjson
import pytest

from cache_core import CorruptEntryError
from cache_core.frames import (
    HEADER_SIZE,
    MAGIC,
    MAX_AHEAD_NS,
    STAMP_AT,
    UNSTAMPED,
    VERSION,
    CodecSet,
    HybridClock,
    encode_frame,
    frame_expiry,
    frame_stamp,
    header,
)

STAMP = 0x0123_4567_89AB_CDEF
EXPIRY = 1_900_000_000_000


class ZlibCodec:
    """A codec of the test's own: frames must not depend on which one compressed them."""

    PLUGIN_NAME: ClassVar[str] = "zlib-test"
    CODEC_ID: ClassVar[int] = 200

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        return zlib.decompressobj().decompress(data, max_size)


def codecs(threshold: int = 16) -> CodecSet:
    codec = ZlibCodec()
    return CodecSet(codec, {codec.CODEC_ID: codec}, threshold=threshold, max_size=2**20)


def test_the_current_header_carries_expiry_and_stamp() -> None:
    frame = encode_frame(b'"v"', None, EXPIRY, STAMP)
    assert frame[:3] == bytes((MAGIC, VERSION, 0)) and VERSION == 3
    assert len(frame) == HEADER_SIZE + 3 and frame[HEADER_SIZE:] == b'"v"'
    assert frame[STAMP_AT:HEADER_SIZE] == STAMP.to_bytes(8, "big")
    assert frame_stamp(frame) == STAMP and frame_expiry(frame) == EXPIRY
    assert codecs().read(frame) == (b'"v"', EXPIRY)


def test_the_stamp_survives_compression() -> None:
    data = b'{"items":[' + b",".join([b'"the same item"'] * 200) + b"]}"
    frame = codecs().encode(data, True, EXPIRY, STAMP)
    assert frame[2] == ZlibCodec.CODEC_ID and len(frame) < len(data)  # compressed
    assert frame_stamp(frame) == STAMP and frame_expiry(frame) == EXPIRY
    assert codecs().read(frame) == (data, EXPIRY)
    # The same value below the threshold is stored raw, stamped alike.
    raw = codecs(threshold=len(data)).encode(data, True, EXPIRY, STAMP)
    assert raw[2] == 0 and frame_stamp(raw) == STAMP


@pytest.mark.parametrize(
    ("frame", "expiry"),
    [
        (bytes((MAGIC, 1, 0)) + b'{"v":1}', None),  # format 1: no expiry inside
        (bytes((MAGIC, 2, 0)) + EXPIRY.to_bytes(8, "big") + b'{"v":1}', EXPIRY),
        (bytes((MAGIC, 2, 0)) + bytes(8) + b'{"v":1}', 0),  # format 2, never expires
    ],
    ids=["v1", "v2", "v2-never"],
)
def test_frames_of_the_older_formats_still_read_and_count_as_unstamped(
    frame: bytes, expiry: int | None
) -> None:
    assert codecs().read(frame) == (b'{"v":1}', expiry)
    assert frame_stamp(frame) == UNSTAMPED


def test_compressed_frames_of_format_2_still_read() -> None:
    data = b'"' + b"x" * 500 + b'"'
    packed = zlib.compress(data)
    frame = bytes((MAGIC, 2, ZlibCodec.CODEC_ID)) + bytes(8) + len(data).to_bytes(4, "big")
    assert codecs().read(frame + packed) == (data, 0)
    assert frame_stamp(frame + packed) == UNSTAMPED


@pytest.mark.parametrize(
    "frame",
    [
        header()[: HEADER_SIZE - 1],  # format 3 cut inside its stamp
        bytes((MAGIC, 2, 0)) + bytes(7),  # format 2 cut inside its expiry
        bytes((MAGIC, 4, 0)) + bytes(16) + b"1",  # a format this release does not know
        b"\x80\x04K\x01.",  # a pickle: not ours
    ],
    ids=["v3-truncated", "v2-truncated", "v4", "pickle"],
)
def test_what_is_not_a_whole_frame_is_refused_and_unstamped(frame: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        codecs().read(frame)
    assert frame_stamp(frame) == UNSTAMPED


def test_one_clock_never_gives_two_equal_stamps_even_when_time_stands_still() -> None:
    now = [1_000_000]
    clock = HybridClock(lambda: now[0])
    stamps = [clock.stamp() for _ in range(1000)]
    assert stamps == sorted(set(stamps)) and stamps[0] == 1_000_000
    now[0] -= 5_000  # the wall clock steps back a little: stamps still go forward
    assert clock.stamp() == stamps[-1] + 1
    now[0] = 2_000_000
    assert clock.stamp() == 2_000_000


def test_a_clock_takes_in_a_stamp_that_beat_it_but_not_one_from_far_ahead() -> None:
    now = [1_000_000]
    clock = HybridClock(lambda: now[0])
    clock.observe(5_000_000)  # another instance's clock runs 4 ms ahead
    assert clock.stamp() == 5_000_001
    clock.observe(now[0] + MAX_AHEAD_NS + 1)  # a clock gone wrong must not drag us along
    assert clock.stamp() == 5_000_002
    assert clock.horizon() == now[0] + MAX_AHEAD_NS


def test_a_clock_that_stepped_far_back_follows_the_wall_clock() -> None:
    now = [10 * MAX_AHEAD_NS]
    clock = HybridClock(lambda: now[0])
    clock.stamp()
    now[0] -= 2 * MAX_AHEAD_NS  # e.g. corrected after running minutes ahead
    assert clock.stamp() == now[0]


def test_open_many_reads_each_frame_as_read_does_and_parses_it_once() -> None:
    large = b'["' + b"x" * 40_000 + b'"]'  # parsed with the collector paused
    compressed = codecs().encode(b'{"items":[' + b",".join([b'"same"'] * 200) + b"]}", True)
    v1 = bytes((MAGIC, 1, 0)) + b'{"v":1}'
    frames = [
        encode_frame(b'"v"', None, EXPIRY, STAMP),
        None,
        compressed,
        v1,
        bytes((MAGIC, 2, 0)) + EXPIRY.to_bytes(8, "big") + b"[2]",
        encode_frame(b"3", None, 0, STAMP),  # never expires
        encode_frame(b"4", None, 1_000, STAMP),  # past its expiry
        encode_frame(b'1,"hit":false', None, EXPIRY, STAMP),  # more than one value
        b"\x80\x04K\x01.",  # a pickle
        encode_frame(large, None, EXPIRY, STAMP),
    ]
    now_ms = EXPIRY - 30_000
    out, undated, corrupt = codecs().open_many(frames, now_ms, decode=True)
    assert (undated, corrupt) == ([3], [7, 8])
    for frame, entry in zip(frames, out, strict=True):
        if frame is None or entry is None or isinstance(entry, CorruptEntryError):
            continue
        data, expiry = codecs().read(frame)
        assert entry == (data, None if expiry in (0, None) else 30.0, orjson.loads(data))
    assert [entry is None for entry in out] == [i in (1, 6) for i in range(len(frames))]
    assert all(isinstance(out[i], CorruptEntryError) for i in corrupt)
    with pytest.raises(CorruptEntryError):
        codecs().read(frames[7])  # type: ignore[arg-type]
    # Not decoding: checked all the same, no value kept.
    kept, _, refused = codecs().open_many(frames, now_ms, decode=False)
    assert refused == corrupt
    assert [e[:2] if isinstance(e, tuple) else e for e in kept[:6]] == [
        e[:2] if isinstance(e, tuple) else e for e in out[:6]
    ]
    assert all(e[2] is None for e in kept if isinstance(e, tuple))
