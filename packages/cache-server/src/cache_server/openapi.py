"""The OpenAPI 3 document of the HTTP API, served at GET /openapi.json.

Limits that depend on the configuration (key length, batch size) are filled in from it,
so the document describes the server that serves it. Each request body's properties are
the fields of the attrs model its handler parses (:data:`REQUEST_MODELS`), required when
the field has no default, so a field added to a model cannot go undocumented (building
the document fails until it is described); the answers are checked against the document
by the schemathesis run (tests/e2e/test_e2e_api_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cache_core import Config
from cache_server.auth import OPEN_PATHS
from cache_server.models import (
    BatchGetRequest,
    BatchSetRequest,
    InvalidateRequest,
    SetRequest,
    WarmUpRequest,
)
from cache_server.settings import AgentSettings, ServerSettings

OPERATIONS: dict[str, tuple[str, str]] = {
    "getValue": (
        "Read a key",
        "L1, then L2, then the key's loader (read-through); a miss answers hit false. A hit "
        "carries an ETag and Cache-Control: max-age; If-None-Match answers 304.",
    ),
    "deleteValue": (
        "Delete a key",
        "From every tier, with the dependents of its value; other instances drop their copies.",
    ),
    "setValue": (
        "Write a key",
        "With a TTL (seconds or a ttl_presets name), a strategy, tags and dependencies; "
        "overwriting a key invalidates what depended on it.",
    ),
    "batchGet": ("Read many keys", "One L2 round trip for the keys L1 does not hold."),
    "batchSet": ("Write many keys", "All validated before any is written."),
    "invalidate": (
        "Invalidate by tags, pattern or event",
        "Tags invalidate in O(1) (tag versions); a glob pattern sweeps the prefix; an event "
        "applies its configured rules with the context given.",
    ),
    "warmUp": ("Load keys ahead of reads", "Through their loaders, in parallel or in turn."),
    "stats": (
        "Counters and sizes",
        "Hits, misses, latencies, L1 and L2 sizes, write-back and compression figures.",
    ),
    "health": ("Liveness and degradation", "ok, or degraded with the reasons (L2 away)."),
}
"""Each operation's summary and description, by operationId."""

REQUEST_MODELS: dict[str, type] = {
    "setValue": SetRequest,
    "batchGet": BatchGetRequest,
    "batchSet": BatchSetRequest,
    "invalidate": InvalidateRequest,
    "warmUp": WarmUpRequest,
}
"""The model each operation's handler parses its body as, by operationId."""

COUNT = {"type": "integer", "minimum": 0}
SECONDS = {"type": "number", "minimum": 0}
MS = {"type": "number", "minimum": 0, "nullable": True}
STATS: dict[str, Any] = {
    "type": "object",
    "required": ["hits", "misses", "sets", "deletes", "hit_rate", "tiers", "uptime_seconds"],
    "properties": {
        "hits": COUNT,
        "misses": COUNT,
        "sets": COUNT,
        "deletes": COUNT,
        "hit_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "avg_latency_ms": MS,
        "p50_latency_ms": MS,
        "p99_latency_ms": MS,
        "hits_by_tier": {"type": "object", "additionalProperties": COUNT},
        "sets_by_strategy": {"type": "object", "additionalProperties": COUNT},
        "invalidated": COUNT,
        "invalidated_by_kind": {"type": "object", "additionalProperties": COUNT},
        "errors": COUNT,
        "served_stale": COUNT,
        "l1_size_bytes": COUNT,
        "l1_max_bytes": COUNT,
        "l1_entries": COUNT,
        "l1_evictions": COUNT,
        "l1_policy": {"type": "object"},
        "l2_size_keys": {**COUNT, "nullable": True},
        "l2_size_keys_age_seconds": {**SECONDS, "nullable": True},
        "l2_error": {"type": "string"},
        "tiers": {"type": "array", "items": {"type": "string"}},
        "write_back_pending": COUNT,
        "uptime_seconds": SECONDS,
        "plugins": {"type": "array", "items": {"type": "string"}},
        "compression": {"type": "object"},
        "alerts": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}
"""What GET /stats answers (a plugin may add fields: more are allowed)."""

ENTITY_HEADERS: dict[str, Any] = {
    "ETag": {
        "description": "A weak entity tag of the value (a digest of its JSON), on a hit",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "max-age=<seconds the value has left in L1> on a hit, or no-cache",
        "schema": {"type": "string"},
    },
}

JSON_VALUE: dict[str, Any] = {
    "description": "Any JSON value",
    "nullable": True,
    "oneOf": [
        {"type": "object"},
        {"type": "array", "items": {}},
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
    ],
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _object(
    properties: dict[str, Any], required: list[str] | None = None, closed: bool = False
) -> dict[str, Any]:
    """An object schema; every property required unless ``required`` says which, and no
    others allowed when ``closed`` (a request body)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = list(properties) if required is None else required
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _request(
    operation: str, schemas: Mapping[str, dict[str, Any]], description: str | None = None
) -> dict[str, Any]:
    """The body of ``operation``: an object of its model's fields, each described by
    ``schemas``, no others allowed."""
    model = REQUEST_MODELS[operation]
    fields = attrs.fields(model)
    names = {field.name for field in fields}
    if names != set(schemas):
        raise AssertionError(
            f"{operation}: {model.__name__} has fields {sorted(names)}, "
            f"the document describes {sorted(schemas)}"
        )
    properties = {field.name: schemas[field.name] for field in fields}
    required = [field.name for field in fields if field.default is attrs.NOTHING]
    schema = _object(properties, required, closed=True)
    if description is not None:
        schema["description"] = description
    return _body(schema)


def openapi_document(config: Config, strategies: list[str], auth: bool = False) -> dict[str, Any]:
    """The document for ``config``, the strategy plugins the agent has, and whether a
    bearer token is needed (every path but the open ones)."""
    limits = config.limits
    key = {"type": "string", "minLength": 1, "maxLength": limits.max_key_length}
    keys = {"type": "array", "items": key, "maxItems": limits.max_batch_size}
    key_error = _object({"code": {"type": "string"}, "message": {"type": "string"}})
    tags = {"type": "array", "items": key, "maxItems": limits.max_tags}
    dependencies = {"type": "array", "items": key, "maxItems": limits.max_dependencies}
    seconds = {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": limits.max_ttl,
    }
    ttl = {"oneOf": [seconds, {"type": "string"}]}
    strategy = {"type": "string", "enum": sorted(strategies)}
    common = {
        "400": _error("Bad input: nothing changed"),
        "401": _error("A bearer token is needed"),
        "404": _error("No such route (a key a URL path cannot carry, such as one with a newline)"),
        "413": _error(
            f"The body is larger than limits.max_request_bytes ({limits.max_request_bytes})"
        ),
        "502": _error("A stored entry or a loader failed"),
        "503": _error("L2 is unavailable"),
    }
    posted = {
        **common,
        "408": _error(
            f"The body did not arrive in full within server.body_timeout "
            f"({config.section(ServerSettings).body_timeout:g} s); the connection closes"
        ),
        "415": _error(
            "The body is not application/json (UTF-8), or has a Content-Encoding other than "
            "gzip, deflate, br, zstd or identity"
        ),
    }
    key_param = {"name": "key", "in": "path", "required": True, "schema": key}
    entry = _object(
        {
            "key": {"type": "string"},
            "value": JSON_VALUE,
            "hit": {"type": "boolean"},
            "tier": {"type": "string", "nullable": True, "enum": ["l1", "l2", "loader", None]},
        }
    )
    paths: dict[str, Any] = {
        "/cache/{key}": {
            "get": {
                "operationId": "getValue",
                "parameters": [
                    key_param,
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "Entity tags the caller holds (or *): 304 when one is "
                        "the value's",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "Cache-Control",
                        "in": "header",
                        "required": False,
                        "description": "no-cache: past L1 (the key's loader computes it "
                        "again when one serves it, else L2 answers)",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {**_ok(entry), "headers": ENTITY_HEADERS},
                    "304": {
                        "description": "The value is the one tagged in If-None-Match",
                        "headers": ENTITY_HEADERS,
                    },
                    **common,
                },
            },
            "delete": {
                "operationId": "deleteValue",
                "parameters": [key_param],
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "success": {"type": "boolean"},
                                "key": {"type": "string"},
                                "deleted": {"type": "boolean"},
                            }
                        )
                    ),
                    **common,
                },
            },
        },
        "/cache": {
            "post": {
                "operationId": "setValue",
                "requestBody": _request(
                    "setValue",
                    {
                        "key": key,
                        "value": JSON_VALUE,
                        "ttl": ttl,
                        "strategy": strategy,
                        "tags": tags,
                        "dependencies": dependencies,
                    },
                ),
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "success": {"type": "boolean"},
                                "key": {"type": "string"},
                                "strategy": strategy,
                            }
                        )
                    ),
                    **posted,
                },
            }
        },
        "/cache/batch-get": {
            "post": {
                "operationId": "batchGet",
                "requestBody": _request("batchGet", {"keys": keys}),
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "results": {"type": "object", "additionalProperties": JSON_VALUE},
                                "hits": {"type": "integer"},
                                "misses": {"type": "integer"},
                                "errors": {
                                    "description": "Keys that could not be answered: an "
                                    "unreadable stored entry, or L2 away and no L1 copy "
                                    "(their result is null, counted as misses); present "
                                    "only when there are any",
                                    "type": "object",
                                    "additionalProperties": key_error,
                                },
                            },
                            required=["results", "hits", "misses"],
                        )
                    ),
                    **posted,
                },
            }
        },
        "/cache/batch-set": {
            "post": {
                "operationId": "batchSet",
                "requestBody": _request(
                    "batchSet",
                    {
                        "items": {
                            "type": "object",
                            "additionalProperties": JSON_VALUE,
                            "maxProperties": limits.max_batch_size,
                        },
                        "ttl": ttl,
                        "strategy": strategy,
                        "tags": tags,
                    },
                ),
                "responses": {
                    "200": _ok(
                        _object({"success": {"type": "boolean"}, "count": {"type": "integer"}})
                    ),
                    **posted,
                },
            }
        },
        "/invalidate": {
            "post": {
                "operationId": "invalidate",
                "requestBody": _request(
                    "invalidate",
                    {
                        "pattern": {"type": "string", "minLength": 1},
                        "tags": {**tags, "maxItems": limits.max_batch_size},
                        "event": {"type": "string"},
                        "context": {"type": "object"},
                    },
                    "At least one of pattern, tags and event; context fills the placeholders "
                    "of the event's rules ({user_id}).",
                ),
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "success": {"type": "boolean"},
                                "invalidated_count": {"type": "integer"},
                            }
                        )
                    ),
                    **posted,
                },
            }
        },
        "/warm-up": {
            "post": {
                "operationId": "warmUp",
                "requestBody": _request(
                    "warmUp",
                    {
                        "keys": {**keys, "maxItems": limits.max_warmup_keys},
                        "compute_strategy": {"type": "string", "enum": ["parallel", "sequential"]},
                    },
                ),
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "success": {"type": "boolean"},
                                "warmed_count": {"type": "integer"},
                                "requested": {"type": "integer"},
                                "failures": {
                                    "description": "Every key not cached after the call, "
                                    "with why: no_loader, not_found, loader_failed, "
                                    "corrupt_entry",
                                    "type": "object",
                                    "additionalProperties": key_error,
                                },
                            }
                        )
                    ),
                    **posted,
                },
            }
        },
        "/stats": {
            "get": {
                "operationId": "stats",
                "responses": {
                    "200": _ok(STATS),
                    **common,
                    "403": _error(
                        "A token with a namespace: /stats (and /metrics) count every "
                        "namespace, so they answer admin tokens alone"
                    ),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "responses": {
                    "200": _ok(
                        _object(
                            {
                                "status": {"type": "string", "enum": ["ok", "degraded"]},
                                "reasons": {"type": "array", "items": {"type": "string"}},
                                # Only when there are any; advice, never a degraded status.
                                "warnings": {"type": "array", "items": {"type": "string"}},
                                "tiers": {"type": "object"},
                                "pid": {"type": "integer"},
                            },
                            required=["status", "reasons", "tiers", "pid"],
                        )
                    )
                },
            }
        },
    }
    for path, methods in paths.items():
        for operation in methods.values():
            summary, description = OPERATIONS[operation["operationId"]]
            operation["summary"], operation["description"] = summary, description
            if path in OPEN_PATHS:
                operation["security"] = []  # answered without a token
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "Caching Agent", "version": config.section(AgentSettings).version},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth:
        document["security"] = [{"bearer": []}]
    return document
