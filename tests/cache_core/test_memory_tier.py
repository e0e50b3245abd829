"""MemoryTier (L1): LRU order, the exact byte bound, expiry on a fake clock, glob deletes."""

from __future__ import annotations

import math
import random
from collections import OrderedDict

import pytest

from cache_core.tiers.memory import MIB, MemoryTier, entry_weight
from cache_core.tiers.wtinylfu import EXTRA_OVERHEAD, WTinyLfuTier

VALUE = b"x" * 16


def weight(key: str, data: bytes = VALUE) -> int:
    return entry_weight(key, data)


def weight_of(policy: type, key: str, data: bytes = VALUE) -> int:
    extra = EXTRA_OVERHEAD if policy is WTinyLfuTier else 0
    return entry_weight(key, data) + extra


@pytest.fixture(params=[MemoryTier, WTinyLfuTier], ids=["lru", "wtinylfu"])
def policy(request: pytest.FixtureRequest) -> type:
    """The tests below hold for either eviction policy (those above are LRU's own)."""
    return request.param  # type: ignore[no-any-return]


def tier_holding(n: int, clock, key_len: int = 2, ttl: float | None = 60.0) -> MemoryTier:
    """A tier whose byte bound holds exactly ``n`` entries of a ``key_len`` key and VALUE."""
    per_entry = weight("k" * key_len)
    # +0.5 so float rounding can never leave max_bytes one byte short of n entries
    options = MemoryTier.Options(max_size_mb=(n * per_entry + 0.5) / MIB, ttl=ttl)
    tier = MemoryTier(options, clock=clock)
    assert tier.max_bytes == n * per_entry
    return tier


def held_size(tier: MemoryTier, entries: dict[str, bytes]) -> int:
    return sum(entry_weight(k, d) for k, d in entries.items())


# -- LRU order -----------------------------------------------------------------------------


def test_least_recently_set_is_evicted_first(clock) -> None:
    tier = tier_holding(3, clock)
    for key in ("k1", "k2", "k3", "k4"):
        assert tier.set(key, VALUE, None)
    assert tier.keys() == ["k2", "k3", "k4"]
    assert tier.get("k1") is None
    assert tier.evictions == 1


def test_get_refreshes_recency(clock) -> None:
    tier = tier_holding(3, clock)
    for key in ("k1", "k2", "k3"):
        tier.set(key, VALUE, None)
    assert tier.get("k1") == VALUE  # k1 is now the most recently used
    tier.set("k4", VALUE, None)
    assert "k2" not in tier
    assert tier.keys() == ["k3", "k1", "k4"]
    tier.set("k5", VALUE, None)
    assert tier.keys() == ["k1", "k4", "k5"]
    assert tier.evictions == 2


def test_overwrite_refreshes_recency(clock) -> None:
    tier = tier_holding(3, clock)
    for key in ("k1", "k2", "k3"):
        tier.set(key, VALUE, None)
    tier.set("k1", b"y" * 16, None)
    tier.set("k4", VALUE, None)
    assert tier.keys() == ["k3", "k1", "k4"]
    assert tier.get("k1") == b"y" * 16


def test_contains_and_len_do_not_change_order(clock) -> None:
    tier = tier_holding(2, clock)
    tier.set("k1", VALUE, None)
    tier.set("k2", VALUE, None)
    assert "k1" in tier
    assert len(tier) == 2
    tier.set("k3", VALUE, None)
    assert tier.keys() == ["k2", "k3"]


def test_evictions_counter_counts_each_evicted_entry(clock) -> None:
    tier = tier_holding(4, clock, key_len=3)
    for i in range(20):
        tier.set(f"k{i:02d}", VALUE, None)
    assert tier.evictions == 16
    assert len(tier) == 4
    assert tier.keys() == ["k16", "k17", "k18", "k19"]


def test_a_big_entry_evicts_as_many_small_ones_as_it_needs(clock) -> None:
    tier = tier_holding(4, clock)
    for key in ("k1", "k2", "k3", "k4"):
        tier.set(key, VALUE, None)
    big = b"z" * (2 * weight("kk") - weight("kk", b"") + 1)  # needs more than two slots
    assert tier.set("k5", big, None)
    assert tier.keys() == ["k4", "k5"]
    assert tier.evictions == 3
    assert tier.size_bytes == weight("k4") + entry_weight("k5", big) <= tier.max_bytes


# -- byte accounting -----------------------------------------------------------------------


def test_size_is_exact_after_sets_overwrites_deletes(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    assert tier.size_bytes == 0
    tier.set("a", b"1", None)
    tier.set("bb", b"22" * 50, 10)
    assert tier.size_bytes == weight_of(policy, "a", b"1") + weight_of(policy, "bb", b"22" * 50)
    tier.set("a", b"x" * 500, None)  # grows
    assert tier.size_bytes == weight_of(policy, "a", b"x" * 500) + weight_of(
        policy, "bb", b"22" * 50
    )
    tier.set("bb", b"", None)  # shrinks
    assert tier.size_bytes == weight_of(policy, "a", b"x" * 500) + weight_of(policy, "bb", b"")
    assert tier.delete("a") is True
    assert tier.size_bytes == weight_of(policy, "bb", b"")
    assert tier.delete("a") is False
    assert tier.size_bytes == weight_of(policy, "bb", b"")
    tier.delete("bb")
    assert tier.size_bytes == 0
    assert len(tier) == 0


def test_size_is_exact_after_evictions(clock) -> None:
    tier = tier_holding(3, clock)
    for i in range(10):
        tier.set(f"k{i}", VALUE, None)
        assert tier.size_bytes <= tier.max_bytes
    assert tier.size_bytes == 3 * weight("k0") == tier.max_bytes


def test_size_is_exact_after_expiry(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    tier.set("short", b"s" * 10, 5)
    tier.set("long", b"l" * 30, 50)
    clock.advance(5)
    assert tier.get("short") is None
    assert tier.expirations == 1
    assert tier.size_bytes == weight_of(policy, "long", b"l" * 30)
    assert len(tier) == 1


def test_size_matches_a_reference_model_over_random_operations(clock) -> None:
    """Thousands of mixed operations; after each one the tier agrees with an OrderedDict
    model of an LRU with expiry, and size_bytes is exactly the sum of the held weights."""
    rng = random.Random(20240601)
    tier = MemoryTier(MemoryTier.Options(max_size_mb=4096 / MIB), clock=clock)
    model: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
    evictions = 0

    def model_size() -> int:
        return sum(entry_weight(k, d) for k, (d, _) in model.items())

    for _ in range(3000):
        key = f"key:{rng.randrange(12)}"
        op = rng.random()
        if op < 0.45:
            data = b"v" * rng.choice([0, 1, 10, 100, 300, 900, 5000])
            ttl = rng.choice([None, 1.0, 5.0, 30.0])
            stored = tier.set(key, data, ttl)
            assert stored == (entry_weight(key, data) <= tier.max_bytes)
            if stored:
                model.pop(key, None)
                model[key] = (data, math.inf if ttl is None else clock() + ttl)
                while model_size() > tier.max_bytes:
                    model.popitem(last=False)
                    evictions += 1
        elif op < 0.75:
            got = tier.get(key)
            entry = model.get(key)
            if entry is None:
                assert got is None
            elif entry[1] <= clock():
                assert got is None
                del model[key]
            else:
                assert got == entry[0]
                model.move_to_end(key)
        elif op < 0.85:
            tier.delete(key)
            model.pop(key, None)
        elif op < 0.88:
            pattern = f"key:{rng.randrange(10)}*"
            tier.delete_matching(pattern)
            prefix = pattern[:-1]
            for k in [k for k in model if k.startswith(prefix)]:
                del model[k]
        else:
            clock.advance(rng.choice([0.5, 1.0, 3.0]))
        assert tier.size_bytes == model_size()
        assert tier.size_bytes <= tier.max_bytes
        assert len(tier) == len(model)
        assert tier.evictions == evictions
        assert tier.keys() == [k for k, (_, at) in model.items() if at > clock()]
    # the walk really did evict, expire and refuse
    assert evictions > 0
    assert tier.expirations > 0


# -- values that can never fit -------------------------------------------------------------


def test_value_that_can_never_fit_is_refused_and_changes_nothing(clock) -> None:
    tier = tier_holding(3, clock)
    tier.set("k1", VALUE, None)
    tier.set("k2", VALUE, None)
    size, keys = tier.size_bytes, tier.keys()
    huge = b"h" * tier.max_bytes
    assert tier.set("k3", huge, None) is False
    assert tier.set("k1", huge, None) is False  # an overwrite too: the old value stays
    assert tier.size_bytes == size
    assert tier.keys() == keys
    assert tier.evictions == 0
    assert tier.get("k1") == VALUE
    assert "k3" not in tier


def test_entry_of_exactly_max_bytes_fits_and_evicts_everything_else(clock) -> None:
    tier = tier_holding(3, clock)
    tier.set("k1", VALUE, None)
    exact = b"e" * (tier.max_bytes - weight("kk", b""))
    assert entry_weight("kk", exact) == tier.max_bytes
    assert tier.set("kk", exact, None) is True
    assert tier.keys() == ["kk"]
    assert tier.size_bytes == tier.max_bytes


# -- expiry --------------------------------------------------------------------------------


def test_entry_expires_exactly_at_its_ttl(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    tier.set("a", b"1", 10)
    clock.advance(9.5)
    assert tier.get("a") == b"1"
    assert tier.ttl_remaining("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert "a" not in tier
    assert tier.keys() == []
    assert tier.get("a") is None
    assert tier.expirations == 1
    assert len(tier) == 0
    with pytest.raises(KeyError):
        tier.ttl_remaining("a")


def test_overwrite_resets_the_expiry(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    tier.set("a", b"1", 10)
    clock.advance(8)
    tier.set("a", b"2", 10)
    clock.advance(8)
    assert tier.get("a") == b"2"
    clock.advance(2)
    assert tier.get("a") is None


def test_ttl_none_never_expires(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    tier.set("forever", b"1", None)
    clock.advance(10**9)
    assert tier.get("forever") == b"1"
    assert tier.ttl_remaining("forever") is None
    assert tier.expirations == 0


def test_default_ttl_comes_from_options(clock, policy) -> None:
    assert policy(policy.Options(ttl=7), clock=clock).default_ttl == 7
    assert policy(policy.Options(ttl=None), clock=clock).default_ttl is None


def test_deleting_an_expired_entry_reports_nothing_removed(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    tier.set("a:1", b"1", 1)
    tier.set("a:2", b"2", 1)
    clock.advance(2)
    assert tier.delete("a:1") is False
    assert tier.delete_matching("a:*") == []
    assert tier.size_bytes == 0


# -- delete_matching and clear -------------------------------------------------------------

GLOB_KEYS = [
    "user:1:profile",
    "user:2:profile",
    "user:10:profile",
    "user:a:settings",
    "user:b:profile",
    "user:d:profile",
    "star*key",
    "starXkey",
    "q?",
    "qx",
]


@pytest.mark.parametrize(
    ("pattern", "removed"),
    [
        (
            "user:*:profile",
            [
                "user:1:profile",
                "user:10:profile",
                "user:2:profile",
                "user:b:profile",
                "user:d:profile",
            ],
        ),
        (
            "user:?:profile",
            ["user:1:profile", "user:2:profile", "user:b:profile", "user:d:profile"],
        ),
        ("user:[a-c]:*", ["user:a:settings", "user:b:profile"]),
        ("user:[^1]:profile", ["user:2:profile", "user:b:profile", "user:d:profile"]),
        ("star\\*key", ["star*key"]),
        ("star*key", ["star*key", "starXkey"]),
        ("q\\?", ["q?"]),
        ("user:1:profile", ["user:1:profile"]),
        ("user:3:*", []),
        ("*", sorted(GLOB_KEYS)),
    ],
)
def test_delete_matching_uses_redis_globs(clock, policy, pattern: str, removed: list[str]) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    for key in GLOB_KEYS:
        tier.set(key, key.encode(), None)
    assert sorted(tier.delete_matching(pattern)) == sorted(removed)
    left = [k for k in GLOB_KEYS if k not in removed]
    assert sorted(tier.keys()) == sorted(left)
    assert tier.size_bytes == sum(weight_of(policy, k, k.encode()) for k in left)


def test_clear_empties_everything(clock, policy) -> None:
    tier = policy(policy.Options(max_size_mb=1), clock=clock)
    for i in range(5):
        tier.set(f"k{i}", VALUE, None)
    assert tier.clear() == 5
    assert len(tier) == 0
    assert tier.size_bytes == 0
    assert tier.keys() == []
    assert tier.get("k0") is None
    tier.set("k0", VALUE, None)
    assert tier.size_bytes == weight_of(policy, "k0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MemoryTier.Options(max_size_mb=0), "max_size_mb must be greater than 0"),
        (MemoryTier.Options(max_size_mb=-1), "max_size_mb must be greater than 0"),
        (MemoryTier.Options(eviction="lfu"), "eviction 'lfu' is not provided"),
    ],
)
def test_bad_options_are_refused(clock, options: MemoryTier.Options, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryTier(options, clock=clock)


# -- batches: the same as one call a key -----------------------------------------------------


class Key(str):
    """A key of a str subclass: weighed by sys.getsizeof, as set weighs it."""


def test_set_many_leaves_what_the_same_sets_leave(clock, policy) -> None:
    rng = random.Random(7)
    one_by_one = policy(policy.Options(max_size_mb=6000 / MIB), clock=clock)
    batched = policy(policy.Options(max_size_mb=6000 / MIB), clock=clock)
    keys: list[str] = [f"k{i}" for i in range(30)] + ["clé", "键", Key("sub")]
    for _ in range(40):
        items = [
            (rng.choice(keys), b"v" * rng.choice([0, 5, 50, 400, 7000]), rng.choice([None, 2.0]))
            for _ in range(rng.randrange(1, 12))
        ]
        for item in items:
            one_by_one.set(*item)
        batched.set_many(items)
        assert batched.keys() == one_by_one.keys()
        assert [batched.get(k) for k in keys] == [one_by_one.get(k) for k in keys]
        assert batched.size_bytes == one_by_one.size_bytes <= batched.max_bytes
        assert batched.evictions == one_by_one.evictions
        assert batched.describe() == one_by_one.describe()
        clock.advance(rng.choice([0.0, 1.5]))
    assert batched.evictions > 0  # the walk evicted, and refused 7000-byte values


def test_get_many_answers_and_counts_as_the_same_gets_do(clock, policy) -> None:
    one_by_one = policy(policy.Options(max_size_mb=1), clock=clock)
    batched = policy(policy.Options(max_size_mb=1), clock=clock)
    for tier in (one_by_one, batched):
        tier.set("a", b"1", None)
        tier.set("short", b"2", 1.0)
        tier.set("b", b"3", 60.0)
    clock.advance(1.0)
    asked = ["b", "short", "gone", "a", "short", "b"]  # expired, missing, repeated
    answers = batched.get_many(asked)
    assert answers == [one_by_one.get(k) for k in asked] == [b"3", None, None, b"1", None, b"3"]
    assert batched.keys() == one_by_one.keys()
    assert batched.expirations == one_by_one.expirations == 1
    assert batched.size_bytes == one_by_one.size_bytes
    assert batched.get_many(["x", "y"]) == [None, None]
