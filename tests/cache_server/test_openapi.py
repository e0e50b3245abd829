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
