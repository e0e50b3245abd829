"""What ``serve --workers N`` refuses before starting anything, and the port check that
keeps SO_REUSEPORT from joining another server's port."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from cache_core import CachingAgent
from cache_server.workers import check_port_free, refusal

L2 = {
    "redis": {"url": "redis://127.0.0.1:1/0"},  # never connected: nothing is started here
    "cache_tiers": {"l1": {"type": "memory"}, "l2": {"type": "redis"}},
}


def agent(**sections: Any) -> CachingAgent:
    return CachingAgent.from_config({**L2, **sections}, env={})


def test_one_worker_is_always_fine() -> None:
    l1_alone = CachingAgent.from_config({"cache_tiers": {"l1": {"type": "memory"}}}, env={})
    assert refusal(l1_alone, 1) is None


def test_a_shared_l2_with_shared_indexes_serves_many_workers() -> None:
    assert refusal(agent(), 4) is None


@pytest.mark.parametrize(
    ("sections", "says"),
    [
        ({"cache_tiers": {"l1": {"type": "memory"}}}, "needs an L2 tier"),
        ({"invalidation": {"backend": "local"}}, "indexes in L2"),
        ({"monitoring": {"prometheus_port": 9464}}, "monitoring.prometheus_port"),
    ],
)
def test_what_workers_cannot_share_is_refused(sections: dict[str, Any], says: str) -> None:
    why = refusal(agent(**sections), 2)
    assert why is not None
    assert says in why
    assert "\n" not in why


def test_a_port_someone_listens_on_is_taken_even_with_reuse_port() -> None:
    with socket.socket() as other:
        # Another `serve --workers` on this port: its workers bind like this.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again once it has gone
