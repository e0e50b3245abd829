"""The latency alert over HTTP: a few slow requests just after start raise nothing."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import attrs

import cache_core
from cache_server.keys import AGENT

LOADER_DELAY = 0.02  # 20 ms: above the shipped 10 ms threshold


class SlowSource:
    """Registers ``slow``: a loader that answers every key after LOADER_DELAY."""

    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        class SlowLoader:
            PLUGIN_NAME: ClassVar[str] = "slow"

            @attrs.define(frozen=True)
            class Options:
                match: list[str] = attrs.field(factory=list)

            def __init__(self, options: SlowLoader.Options, context: Any) -> None:
                self.match = list(options.match)

            async def start(self) -> None:
                return None

            async def close(self) -> None:
                return None

            async def load(self, key: str, ids: Any) -> Any:
                await asyncio.sleep(LOADER_DELAY)
                return {"key": key}

        return [SlowLoader]


async def test_a_few_slow_requests_after_start_raise_no_latency_alert(
    make_client: Any, config_factory: Any
) -> None:
    # The shipped thresholds; the background sampler is pushed out of the way so the
    # test takes the samples itself.
    monitoring = {"alert_on_high_latency": 10, "alert_interval": 3600, "alert_window": 3600}
    cfg = config_factory(loaders={"slow": {"match": ["slow:*"]}}, monitoring=monitoring)
    client = await make_client(cfg, plugins=(SlowSource(),))
    agent = client.server.app[AGENT]
    agent.alerts.sample()
    assert (await client.post("/cache", json={"key": "fast", "value": 1})).status == 200
    for _ in range(8):
        assert (await (await client.get("/cache/fast")).json())["hit"] is True
    for i in range(3):  # read through the 20 ms loader
        assert (await (await client.get(f"/cache/slow:{i}")).json())["tier"] == "loader"
    agent.alerts.sample()
    stats = await (await client.get("/stats")).json()
    assert stats["p99_latency_ms"] > 10  # the window's "p99" is one of the slow ones
    assert stats["alerts"] == []
