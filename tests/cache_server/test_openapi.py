"""The OpenAPI document users generate clients from: every operation described, the
strategy an enum of the server's own, /stats given a schema its answer fits, and the
bearer scheme applied when the server asks for a token."""

from __future__ import annotations

from typing import Any

ADMIN = "admin-token-0123456789abcdef"


async def test_every_operation_has_a_summary_a_description_and_an_id(
    client: Any,
) -> None:
    document = await (await client.get("/openapi.json")).json()
    operations = [op for methods in document["paths"].values() for op in methods.values()]
    assert len(operations) == 9  # the 8 endpoints of the product description, DELETE too
    for operation in operations:
        assert operation["operationId"] and operation["summary"] and operation["description"]
    assert "security" not in document  # no token asked for


async def test_the_strategy_is_an_enum_of_the_servers_strategies(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    body = document["paths"]["/cache"]["post"]["requestBody"]["content"]["application/json"]
    strategy = body["schema"]["properties"]["strategy"]
    assert strategy["enum"] == ["write_around", "write_back", "write_through"]


async def test_stats_answers_what_its_schema_says(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    schema = document["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    await client.post("/cache", json={"key": "k", "value": 1})
    stats = await (await client.get("/stats")).json()
    assert set(schema["required"]) <= set(stats)
    assert set(stats) <= set(schema["properties"]), set(stats) - set(schema["properties"])
    kinds: dict[str, type | tuple[type, ...]] = {
        "integer": int,
        "number": (int, float),
        "string": str,
        "array": list,
        "object": dict,
    }
    for name, value in stats.items():
        field = schema["properties"][name]
        assert (value is None and field.get("nullable")) or isinstance(value, kinds[field["type"]])


async def test_with_a_token_the_bearer_scheme_applies_but_not_to_the_open_paths(
    make_client: Any, config_factory: Any
) -> None:
    client = await make_client(config_factory(server={"auth_token": ADMIN}))
    document = await (await client.get("/openapi.json")).json()  # open: no token needed
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in document["paths"]["/cache/{key}"]["get"]
    assert (await client.get("/stats")).status == 401


# A value each body property takes that the base config's server accepts.
SAMPLES: dict[str, Any] = {
    "key": "k",
    "value": {"n": 1},
    "ttl": 60,
    "strategy": "write_through",
    "tags": ["t"],
    "dependencies": ["d"],
    "keys": ["k"],
    "items": {"k": 1},
    "pattern": "p:*",
    "event": "user_profile_update",
    "context": {"user_id": "1"},
    "compute_strategy": "sequential",
}


def bodies(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """operationId -> (path, body schema) of every operation with a body."""
    found = {}
    for path, methods in document["paths"].items():
        for operation in methods.values():
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                found[operation["operationId"]] = (path, schema)
    return found


async def test_each_body_is_its_models_fields_and_the_server_takes_what_it_describes(
    client: Any,
) -> None:
    """The document and the handlers cannot drift: each body's properties are its model's
    fields (required = no default), and the server answers 200 to the required ones alone
    and with each optional one added, and 400 to a body missing one or with one more."""
    import attrs

    from cache_server.openapi import REQUEST_MODELS

    document = await (await client.get("/openapi.json")).json()
    described = bodies(document)
    assert set(described) == set(REQUEST_MODELS)
    for operation, (path, schema) in described.items():
        fields = attrs.fields(REQUEST_MODELS[operation])
        assert list(schema["properties"]) == [f.name for f in fields], operation
        required = [f.name for f in fields if f.default is attrs.NOTHING]
        assert schema.get("required", []) == required, operation
        assert schema["additionalProperties"] is False, operation
        minimal = {name: SAMPLES[name] for name in required}
        bodies_ok = [minimal] + [
            {**minimal, name: SAMPLES[name]} for name in schema["properties"] if name not in minimal
        ]
        if not required:  # invalidate: one of pattern, tags, event; context goes with event
            bodies_ok = [b for b in bodies_ok if b and "context" not in b]
            bodies_ok.append({"event": SAMPLES["event"], "context": SAMPLES["context"]})
        for body in bodies_ok:
            resp = await client.post(path, json=body)
            assert resp.status == 200, (operation, body, await resp.text())
        for name in required:
            resp = await client.post(path, json={k: v for k, v in minimal.items() if k != name})
            assert resp.status == 400, (operation, "without", name)
        resp = await client.post(path, json={**(bodies_ok[0]), "undocumented": 1})
        assert resp.status == 400, (operation, "with an undocumented property")
