"""POST /invalidate by pattern, tags, event (context placeholders) and all combined; on
L1 alone and on an L2 below it (the Redis tier, and a third-party one from tests/)."""

from __future__ import annotations

from typing import Any

import pytest

SEEDED: dict[str, dict[str, Any]] = {
    "user:1:profile": {"value": {"name": "Alice"}, "tags": ["user", "profile"]},
    "user:1:mastery:math": {"value": 0.8, "tags": ["user"]},
    "user:1:learning_path": {"value": ["a", "b"], "tags": []},
    "user:2:profile": {"value": {"name": "Bob"}, "tags": ["user", "profile"]},
    "user:2:settings": {"value": {"dark": True}, "tags": ["user"]},
    "user:*:profile": {"value": "literal star key", "tags": []},
    "content:7": {"value": {"title": "Algebra"}, "tags": []},
    "content:8": {"value": {"title": "Geometry"}, "tags": ["content"]},
    "content:9": {"value": {"title": "Calculus"}, "tags": ["content", "featured"]},
    "session:abc": {"value": {"ok": True}, "tags": ["session"]},
}


@pytest.fixture(params=["l1", "redis", "sqlite"])
async def client(request, make_client, config_factory, make_l2):
    """The app on L1 alone, or with an L2 whose copies invalidation must reach as well:
    a key left there is found again by the batch read that checks what is present."""
    if request.param == "l1":
        return await make_client()
    backend = make_l2(request.param)
    tiers = {**config_factory()["cache_tiers"], "l2": backend.l2}
    cfg = config_factory(cache_tiers=tiers, **backend.sections)
    return await make_client(cfg, plugins=backend.plugins)


@pytest.fixture
async def seeded(client):
    for key, entry in SEEDED.items():
        resp = await client.post(
            "/cache", json={"key": key, "value": entry["value"], "tags": entry["tags"]}
        )
        assert resp.status == 200
    return client


async def present(client: Any) -> set[str]:
    resp = await client.post("/cache/batch-get", json={"keys": list(SEEDED)[:5]})
    first = await resp.json()
    resp = await client.post("/cache/batch-get", json={"keys": list(SEEDED)[5:]})
    second = await resp.json()
    results = {**first["results"], **second["results"]}
    return {key for key in SEEDED if results[key] is not None}


async def invalidate(client: Any, body: dict[str, Any]) -> int:
    resp = await client.post("/invalidate", json=body)
    assert resp.status == 200, await resp.text()
    payload = await resp.json()
    assert set(payload) == {"success", "invalidated_count"}
    assert payload["success"] is True
    count: int = payload["invalidated_count"]
    return count


ALL = set(SEEDED)


@pytest.mark.parametrize(
    ("pattern", "removed"),
    [
        ("user:*:profile", {"user:1:profile", "user:2:profile", "user:*:profile"}),
        ("user:1:*", {"user:1:profile", "user:1:mastery:math", "user:1:learning_path"}),
        ("content:?", {"content:7", "content:8", "content:9"}),
        ("content:[78]", {"content:7", "content:8"}),
        ("content:[^78]", {"content:9"}),
        ("user:\\*:profile", {"user:*:profile"}),
        ("session:abc", {"session:abc"}),
        ("nothing:*", set()),
        ("*", ALL),
    ],
)
async def test_invalidate_by_pattern(seeded, pattern, removed):
    assert await invalidate(seeded, {"pattern": pattern}) == len(removed)
    assert await present(seeded) == ALL - removed


@pytest.mark.parametrize(
    ("tags", "removed"),
    [
        (["profile"], {"user:1:profile", "user:2:profile"}),
        (
            ["user", "profile"],
            {"user:1:profile", "user:1:mastery:math", "user:2:profile", "user:2:settings"},
        ),
        (["featured", "session"], {"content:9", "session:abc"}),
        (["no-such-tag"], set()),
    ],
)
async def test_invalidate_by_tags_removes_keys_with_any_tag(seeded, tags, removed):
    assert await invalidate(seeded, {"tags": tags}) == len(removed)
    assert await present(seeded) == ALL - removed


async def test_tags_are_replaced_on_overwrite(seeded):
    await seeded.post("/cache", json={"key": "user:1:profile", "value": 1, "tags": ["fresh"]})
    assert await invalidate(seeded, {"tags": ["profile"]}) == 1  # only user:2:profile
    assert "user:1:profile" in await present(seeded)


async def test_invalidate_by_event_fills_placeholders_from_context(seeded):
    count = await invalidate(seeded, {"event": "user_profile_update", "context": {"user_id": 1}})
    removed = {"user:1:profile", "user:1:mastery:math", "user:1:learning_path"}
    assert count == len(removed)
    assert await present(seeded) == ALL - removed


async def test_event_with_several_targets(seeded):
    count = await invalidate(seeded, {"event": "mastery_update", "context": {"user_id": "1"}})
    removed = {"user:1:mastery:math", "user:1:learning_path"}
    assert count == len(removed)
    assert await present(seeded) == ALL - removed


async def test_event_target_may_be_a_literal_key_and_a_tag(seeded):
    count = await invalidate(
        seeded, {"event": "content_modification", "context": {"content_id": 7}}
    )
    removed = {"content:7", "content:8", "content:9"}  # content:7 + everything tagged content
    assert count == len(removed)
    assert await present(seeded) == ALL - removed


async def test_context_values_are_data_not_globs(seeded):
    # user_id "*" must reach the literal key "user:*:...", never every user's keys
    count = await invalidate(seeded, {"event": "user_profile_update", "context": {"user_id": "*"}})
    assert count == 1
    assert await present(seeded) == ALL - {"user:*:profile"}


async def test_event_for_a_user_with_nothing_cached(seeded):
    assert (
        await invalidate(seeded, {"event": "user_profile_update", "context": {"user_id": 3}}) == 0
    )
    assert await present(seeded) == ALL


async def test_combined_pattern_tags_event_count_each_key_once(seeded):
    count = await invalidate(
        seeded,
        {
            "pattern": "user:*:profile",  # user:1:profile, user:2:profile, user:*:profile
            "tags": ["profile", "session"],  # user:1:profile, user:2:profile, session:abc
            "event": "user_profile_update",  # user:1:*  (3 keys, one shared with the above)
            "context": {"user_id": "1"},
        },
    )
    removed = {
        "user:1:profile",
        "user:2:profile",
        "user:*:profile",
        "session:abc",
        "user:1:mastery:math",
        "user:1:learning_path",
    }
    assert count == len(removed)
    assert await present(seeded) == ALL - removed


async def test_invalidation_cascades_to_dependents(seeded):
    await seeded.post(
        "/cache", json={"key": "recs:2", "value": [1], "dependencies": ["user:2:profile"]}
    )
    count = await invalidate(seeded, {"pattern": "user:2:*"})
    assert count == 3  # user:2:profile, user:2:settings and the dependent recs:2
    assert (await (await seeded.get("/cache/recs:2")).json())["hit"] is False


async def test_list_form_event_triggers_are_known_events(make_client, config_factory):
    cfg = config_factory(invalidation={"event_triggers": ["user_profile_update"]})
    client = await make_client(cfg)
    await client.post("/cache", json={"key": "user:1:profile", "value": 1})
    assert await invalidate(client, {"event": "user_profile_update"}) == 0
    assert (await (await client.get("/cache/user:1:profile")).json())["hit"] is True


async def test_invalidation_is_neither_a_delete_nor_a_set(seeded):
    await invalidate(seeded, {"pattern": "content:*"})
    stats = await (await seeded.get("/stats")).json()
    assert stats["deletes"] == 0
    assert stats["sets"] == len(SEEDED)
    assert stats.get("invalidated", 3) == 3


# -- events without context (the description's own example) ------------------------------


async def test_an_event_without_context_reaches_every_key_of_its_kind(seeded):
    # user_profile_update targets user:{user_id}:*; no user_id: user:*:*
    removed = {key for key in SEEDED if key.startswith("user:")}
    assert await invalidate(seeded, {"event": "user_profile_update"}) == len(removed)
    assert await present(seeded) == ALL - removed


async def test_an_event_without_context_reaches_literal_targets_of_its_kind(seeded):
    # content_modification targets content:{content_id} and tag:content
    removed = {"content:7", "content:8", "content:9"}
    assert await invalidate(seeded, {"event": "content_modification"}) == len(removed)
    assert await present(seeded) == ALL - removed


async def test_the_descriptions_combined_invalidate_body_answers(seeded):
    count = await invalidate(
        seeded, {"pattern": "user:*:profile", "tags": ["user"], "event": "user_profile_update"}
    )
    removed = {key for key in SEEDED if key.startswith("user:")}
    assert count == len(removed)
    assert await present(seeded) == ALL - removed


async def test_an_unknown_event_is_named_as_such_and_changes_nothing(seeded):
    resp = await seeded.post("/invalidate", json={"pattern": "*", "event": "moon_landing"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "unknown_event"
    assert "moon_landing" in error["message"]
    assert await present(seeded) == ALL
