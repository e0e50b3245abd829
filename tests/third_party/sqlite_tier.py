"""A third-party L2 tier from README's "Writing a plugin": SQLite, storage only."""

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from attrs import define

from cache_core import hookimpl
from cache_core.globs import matcher
from cache_core.tiers.base import CoherenceListener, RemoteTier, TierContext

LIVE = "(expires IS NULL OR expires > :now)"  # wall-clock time, as core dates its frames
KEYS = "key IN (SELECT value FROM json_each(:keys))"  # one parameter for any number of keys
SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, data BLOB, expires REAL);"
SCHEMA += "CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT, expires REAL);"
LOCK = "INSERT OR IGNORE INTO locks VALUES (:name, hex(randomblob(16)), :now + :lease) RETURNING *"


class SqliteTier:
    PLUGIN_NAME: ClassVar[str] = "sqlite"

    @define(frozen=True)
    class Options:  # structured from cache_tiers.l2
        ttl: float | None = 3600.0

    @define(frozen=True)
    class Settings:  # config.yaml's section "sqlite", this plugin's own
        SECTION: ClassVar[str] = "sqlite"
        ENV: ClassVar[Mapping[str, str]] = {"SQLITE_PATH": "path"}
        path: str = ":memory:"  # the database file (":memory:": this process's own)

    def __init__(self, options: Options, context: TierContext) -> None:
        self.default_ttl, self.path = options.ttl, context.config.section(self.Settings).path

    async def start(self) -> None:  # on the loop, not a thread: a local file answers at once
        self._db = sqlite3.connect(self.path, timeout=5.0)  # s to wait for another's write
        self._db.create_function("redis_glob", 2, lambda p, k: bool(matcher(p)(k)))
        self._db.executescript(SCHEMA)

    async def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, keys: Sequence[str] = (), **params: Any) -> list[Any]:
        with self._db:  # one transaction: committed, or rolled back on error
            params |= {"now": time.time(), "keys": json.dumps(list(keys))}
            return self._db.execute(sql, params).fetchall()

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = dict(self._run(f"SELECT key, data FROM entries WHERE {KEYS} AND {LIVE}", keys))
        return [found.get(key) for key in keys]

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        await self.set_many([(key, data, ttl)])

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        rows = [(key, data, time.time(), ttl) for key, data, ttl in items]  # ttl NULL: never
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ? + ?)", rows)

    async def delete(self, keys: Sequence[str]) -> list[str]:
        rows = self._run(f"DELETE FROM entries WHERE {KEYS} RETURNING key, {LIVE}", keys)
        return [key for key, live in rows if live]  # an expired entry was not there

    async def delete_matching(self, pattern: str) -> list[str]:
        sql = f"DELETE FROM entries WHERE redis_glob(:pattern, key) RETURNING key, {LIVE}"
        return [key for key, live in self._run(sql, pattern=pattern) if live]

    async def count(self) -> int:
        self._run(f"DELETE FROM entries WHERE NOT {LIVE}")  # the expired go
        return int(self._run("SELECT count(*) FROM entries")[0][0])

    def describe(self) -> dict[str, Any]:
        return {"backend": f"sqlite {self.path}"}

    def attach(self, listener: CoherenceListener) -> bool:
        return False  # no change notice reaches another process: L1 serves at once

    async def try_lock(self, name: str, lease: float) -> str | None:
        self._run("DELETE FROM locks WHERE name = :name AND expires <= :now", name=name)
        return next((str(token) for _, token, _ in self._run(LOCK, name=name, lease=lease)), None)

    async def unlock(self, name: str, token: str) -> None:
        self._run("DELETE FROM locks WHERE name = :name AND token = :token", name=name, token=token)


@hookimpl
def cache_register_tiers() -> Sequence[type[RemoteTier]]:
    return [SqliteTier]


@hookimpl
def cache_register_settings() -> Sequence[type[Any]]:
    return [SqliteTier.Settings]
