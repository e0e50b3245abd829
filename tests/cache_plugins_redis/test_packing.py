"""Commands packed by the tier's connections: the very bytes redis-py makes, for any
arguments (text, bytes, numbers, large values, command names of several words)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from cache_core import CachingAgent
from cache_plugins_redis.packing import FastPacking, fast_packing

argument = st.one_of(
    st.text(),
    st.binary(),
    st.binary(min_size=5990, max_size=6010),  # about the buffer cutoff
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False),
    st.sampled_from(["MGET", "CONFIG GET", b"CLIENT SETNAME", "a\tb", "", b" x "]),
)


def packed(connection: Any, args: list[Any]) -> bytes | type[BaseException]:
    try:
        return b"".join(connection.pack_command(*args))
    except Exception as exc:  # what redis-py refuses is refused alike
        return type(exc)


@given(st.lists(argument, min_size=1, max_size=40))
def test_the_same_bytes_as_redis_py(args: list[Any]) -> None:
    assert packed(fast_packing(Connection)(), args) == packed(Connection(), args)


def test_a_batch_read_is_packed_whole_and_unknown_types_are_left_to_redis_py() -> None:
    connection = fast_packing(UnixDomainSocketConnection)()
    keys = [f"ca:user:{i}:profile" for i in range(100)]
    assert connection.pack_command("MGET", *keys) == [
        b"".join(Connection().pack_command("MGET", *keys))
    ]
    assert fast_packing(UnixDomainSocketConnection) is type(connection)
    assert fast_packing(type(connection)) is type(connection)
    assert issubclass(fast_packing(SSLConnection), SSLConnection)


async def test_the_tier_packs_with_it(l2_config: dict[str, Any]) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as agent:
        pool = agent.guarded_l2.client.connection_pool  # type: ignore[union-attr]
        assert issubclass(pool.connection_class, FastPacking)
        await agent.set_many({f"k{i}": i for i in range(50)})
        agent.l1.clear()
        assert await agent.get_many([f"k{i}" for i in range(50)]) == {f"k{i}": i for i in range(50)}
