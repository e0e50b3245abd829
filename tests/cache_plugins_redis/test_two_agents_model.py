"""Two agents on one engine against a model (issue 16, item 7): a Hypothesis state machine
interleaves writes (every strategy, with tags and a dependency), deletes, tag, pattern and
event invalidations, flushes and connection cuts across agents A and B.

Each agent reaches the engine through a proxy of its own that a step may cut (connections
reset, new ones refused) and a later one restores. After every step a marker published on
the coherence channel is awaited by every connected agent: notices are delivered in the
order they were published, so each has applied what came before (README's bound, without
a timed wait). What must hold:

- a read returns a value the model allows for that key: never one older than the last
  acknowledged write nor one an acknowledged removal took, and no miss where the model
  knows a value (nothing expires or is evicted here);
- once every cut is restored and both buffers flushed, A, B and L2 agree, on a value the
  model allows.

The model keeps, per key, the set of values it allows (``None``: no entry). A step that
fails (L2 away) may or may not have applied, so it adds its outcome rather than replacing.
What README allows, it allows: a cut agent's L1 answering stale (stale-if-error); a
write_back write reaching the other agent once flushed; a tag or a dependency removing too
much, never too little; a pattern, which leaves no tombstone, not stopping the other
agent's older buffered write from landing after it; an agent cut off from the notices
serving its own buffered write. (Once connected, an agent no longer serves its own
buffered write after the other agent's newer write or removal: test_coherence.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cache_core import CachingAgent, TierUnavailableError
from cache_core.frames import decode_frame, is_tombstone
from cache_plugins_redis.tag_versions import VERSION_SIZE, annotated, strip

KEYS = ("a:0", "a:1", "b:0")  # few: steps must meet on a key to find anything
TAGS = ("red", "blue")
NAMES = ("A", "B")
EVENT_TARGETS = ["tag:blue", "a:{id}"]
SYNC_TIMEOUT = 5.0
Value = int | None


def agent_config(port: int, prefix: str) -> dict[str, Any]:
    return {
        "redis": {
            "url": f"redis://127.0.0.1:{port}/0",
            "key_prefix": prefix,
            # Generous: a cut refuses at once, so these bound only a slow moment of a busy
            # machine, which must not fail a step.
            "socket_timeout": 5,
            "connect_timeout": 2,
            "retry_attempts": 0,
        },
        "cache_tiers": {
            "l1": {"max_size_mb": 1, "ttl": 3600},
            "l2": {"type": "redis", "ttl": 3600},
        },
        # Flushed when the model says (or by batch_size inside a write), never by the clock:
        # a flush in the background would make a failing example unrepeatable.
        "strategies": {"write_back": {"batch_size": 3, "flush_interval": 3600}},
        "circuit_breaker": {
            "failure_threshold": 1,
            "probe_after": 0.02,
            "reset_timeout": 0.05,
            "operation_timeout": 5,
        },
        "invalidation": {"event_triggers": {"touch": EVENT_TARGETS}},
        "compression": {"enable": False},
        "monitoring": {"recorders": []},
    }


class World:
    """What every example shares: one loop, the engine, a proxy per agent."""

    def __init__(self, engine: Any, proxies: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = engine
        self.proxies = proxies

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)


class TwoAgents(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        self.prefix = f"m{uuid.uuid4().hex[:8]}:"
        for proxy in world.proxies.values():
            proxy.mode = "pass"
        self.agents = {
            name: CachingAgent.from_config(
                agent_config(world.proxies[name].port, self.prefix), env={}
            )
            for name in NAMES
        }
        self.marks: dict[str, bytes] = {}
        for name, agent in self.agents.items():
            world.run(agent.start())
            self._watch_marks(name, agent)
        self.marker = 0
        self.counter = 0
        self.possible: dict[str, set[Value]] = {key: {None} for key in KEYS}
        self.meta: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
        """Each value's tags and dependencies."""
        self.ever_tagged: dict[str, set[str]] = {tag: set() for tag in TAGS}
        self.ever_depending: dict[str, set[str]] = {key: set() for key in KEYS}
        """Source key -> keys that ever depended on it: an index link may outlive the value
        that made it (a rewrite not flushed yet, a failed step), and removing too much is
        allowed, never too little."""
        self.pending: dict[str, dict[str, tuple[int, set[Value]]]] = {n: {} for n in NAMES}
        """Each agent's acknowledged write_back writes not flushed yet: key -> (value, what
        L2 may hold meanwhile, which the other agent may read)."""
        self.deferred: dict[str, dict[str, int]] = {n: {} for n in NAMES}
        """Plain write_back writes whose old value's dependents go once flushed."""
        self.unsettled: dict[str, dict[str, int]] = {n: {} for n in NAMES}
        """Deferred writes whose flush landed in a step that then failed: maybe settled,
        else by the next flush that sends anything."""
        self.cut: set[str] = set()
        self.stale: dict[str, dict[str, set[Value]]] = {n: {} for n in NAMES}

    # -- plumbing -------------------------------------------------------------------------

    def _watch_marks(self, name: str, agent: CachingAgent) -> None:
        subscriber = agent.l2._subscriber  # type: ignore[union-attr]
        handle = subscriber.handle

        def watched(data: bytes) -> None:
            if data.startswith(b"model\n"):
                self.marks[name] = data
            handle(data)

        subscriber.handle = watched

    def run(self, work: Any) -> Any:
        return self.world.run(work)

    def held(self, name: str, key: str) -> bool:
        """Whether ``name``'s buffer still holds its write of ``key``: any write_back write
        may start a flush (``batch_size``), a write of another strategy to a buffered key
        flushes it, and so does the other agent's notice of that key (in the background)."""
        buffer: Any = self.agents[name].strategies["write_back"]
        return buffer.pending(key) is not None

    def after(self, name: str, ok: bool) -> None:
        """Whatever left ``name``'s buffer during the step (``ok``: the step did not fail,
        and with it the index's settling), and the other agent's, is applied."""
        for agent in NAMES:
            gone = [key for key in self.pending[agent] if not self.held(agent, key)]
            if gone:
                self.flushed(agent, gone, settled=ok or agent != name)

    def attempt(self, work: Any) -> tuple[bool, Any]:
        """(True, result), or (False, None) when L2 was away."""
        try:
            return True, self.run(work)
        except TierUnavailableError:
            return False, None

    def sync(self) -> None:
        """Every connected agent has applied every notice published so far."""
        self.marker += 1
        mark = b"model\nk\nsync:%d" % self.marker
        self.world.engine.client.publish(f"{self.prefix}__coherence__", mark)
        deadline = time.monotonic() + SYNC_TIMEOUT
        for name in NAMES:
            if name in self.cut:
                continue
            while self.marks.get(name) != mark:
                assert time.monotonic() < deadline, f"{name} never heard the marker"
                self.run(asyncio.sleep(0.0005))

    def l2_may_hold(self, key: str) -> set[Value]:
        held = set(self.possible[key])
        for pending in self.pending.values():
            if key in pending:
                held |= pending[key][1]
        return held

    def allowed(self, name: str, key: str) -> set[Value]:
        ok = set(self.possible[key])
        for other, pending in self.pending.items():
            if key not in pending:
                continue
            value, before = pending[key]
            if other != name:
                ok |= before  # a write_back write reaches the others once flushed
            elif name in self.cut:
                # Cut, it hears no notice: it serves its own held write (once notices flow
                # again it flushes every held write, and reads wait for L2 to decide).
                ok.add(value)
        if name in self.cut:
            # Stale-if-error: L1 answers what it held when its notices stopped.
            ok |= self.stale[name].get(key, set())
        return ok

    def landed(self, key: str, only: str | None = None) -> None:
        """What L2 holds of ``key`` is in ``possible`` now (a write or removal reached it),
        for what the agents' buffered writes of it replace (``only``'s alone: see
        :meth:`tag_removed`)."""
        for name, pending in self.pending.items():
            if key in pending and only in (None, name):
                pending[key] = (pending[key][0], set(self.possible[key]))

    def cascade(self, sources: set[str], certain: bool, written: int | None = None) -> None:
        """Dependents of ``sources`` go (transitively; the written key spared); ``certain``:
        they were removed for sure (else maybe). ``written``: the overwrite's value, the
        dependents of the old one go for sure, later ones maybe."""
        spared = set() if written is None else set(sources)
        queue = [(source, certain, written) for source in sources]
        while queue:
            source, sure, newer = queue.pop()
            for key in self.ever_depending[source] - spared:
                values = {
                    v
                    for v in self.possible[key]
                    if v is not None and source in self.meta[v][1] and (newer is None or v < newer)
                }
                was = set(self.possible[key])
                if sure:
                    self.possible[key] -= values
                self.possible[key].add(None)
                if self.possible[key] == {None}:
                    self.landed(key)
                spared.add(key)
                # Its own dependents go for sure only if it was surely reached: each value
                # it may hold depended on the source (a value's links land with it).
                queue.append((key, sure and None not in was and values == was, None))

    # -- steps ----------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        key=st.sampled_from(KEYS),
        strategy=st.sampled_from(["write_through", "write_back", "write_around"]),
        tags=st.frozensets(st.sampled_from(TAGS), max_size=2),
        dependency=st.sampled_from([None, *KEYS]),
    )
    def write(
        self, name: str, key: str, strategy: str, tags: frozenset[str], dependency: str | None
    ) -> None:
        deps: frozenset[str] = frozenset() if dependency in (None, key) else frozenset({dependency})
        self.counter += 1
        value = self.counter
        self.meta[value] = (tags, deps)
        for tag in tags:
            self.ever_tagged[tag].add(key)
        for dep in deps:
            self.ever_depending[dep].add(key)
        before = self.l2_may_hold(key)
        ok, _ = self.attempt(
            self.agents[name].set(
                key, value, strategy=strategy, tags=sorted(tags), dependencies=sorted(deps)
            )
        )
        self.sync()
        self.wrote(name, key, strategy, value, before, ok)
        self.after(name, ok)

    def wrote(
        self, name: str, key: str, strategy: str, value: int, before: set[Value], ok: bool
    ) -> None:
        tags, deps = self.meta[value]
        if not ok:
            self.possible[key].add(value)
            self.cascade({key}, certain=False, written=value)
            return
        self.possible[key] = {value}
        plain = not tags and not deps
        if strategy == "write_back":
            self.pending[name][key] = (value, before)
            if plain:
                self.deferred[name][key] = value
                self.cascade({key}, certain=False, written=value)
                return
        else:
            self.pending[name].pop(key, None)
            self.deferred[name].pop(key, None)
            self.landed(key)
        self.cascade({key}, certain=True, written=value)

    def removed(self, name: str, keys: set[str], ok: bool, pattern: bool = False) -> None:
        for key in keys:
            if ok:
                self.possible[key] = {None}
                self.pending[name].pop(key, None)
                self.deferred[name].pop(key, None)
                self.landed(key)
            else:
                self.possible[key].add(None)
            for other, pending in self.pending.items():
                if pattern and other != name and key in pending:
                    # A pattern leaves no tombstone (README: only deletes do), so the other
                    # agent's buffered write, made before it, may still land after it.
                    self.possible[key].add(pending[key][0])
        # A pattern's cascade starts from what it found stored, which the model cannot tell.
        self.cascade(keys, certain=ok and not pattern)

    @rule(name=st.sampled_from(NAMES), key=st.sampled_from(KEYS))
    def delete(self, name: str, key: str) -> None:
        ok, _ = self.attempt(self.agents[name].delete(key))
        self.sync()
        self.removed(name, {key}, ok)
        self.after(name, ok)

    @rule(name=st.sampled_from(NAMES), group=st.sampled_from(["a", "b"]))
    def invalidate_pattern(self, name: str, group: str) -> None:
        ok, _ = self.attempt(self.agents[name].invalidate_pattern(f"{group}:*"))
        self.sync()
        matched = {key for key in KEYS if key.startswith(f"{group}:")}
        self.removed(name, matched, ok, pattern=True)
        self.after(name, ok)

    def tag_removed(self, name: str, tag: str, ok: bool) -> None:
        reached = set()
        for key in self.ever_tagged[tag]:
            values = {v for v in self.possible[key] if v is not None and tag in self.meta[v][0]}
            if ok:
                self.possible[key] -= values
            self.possible[key].add(None)
            if self.possible[key] == {None}:
                # Another agent's buffered write carrying the tag is not in L2 to bump: the
                # older value L2 holds of its key stays readable until that write's flush
                # (which lands a tombstone in its place) or the tag's reaping (README).
                self.landed(key, only=name)
            reached.add(key)
        self.cascade(reached, certain=False)

    @rule(name=st.sampled_from(NAMES), tag=st.sampled_from(TAGS))
    def invalidate_tag(self, name: str, tag: str) -> None:
        ok, _ = self.attempt(self.agents[name].invalidate_by_tags([tag]))
        self.sync()
        self.tag_removed(name, tag, ok)
        self.after(name, ok)

    @rule(name=st.sampled_from(NAMES), which=st.sampled_from(["0", "1"]))
    def event(self, name: str, which: str) -> None:
        ok, _ = self.attempt(self.agents[name].invalidate_by_event("touch", {"id": which}))
        self.sync()
        self.tag_removed(name, "blue", ok)
        self.removed(name, {f"a:{which}"}, ok)
        self.after(name, ok)

    @rule(name=st.sampled_from(NAMES))
    def flush(self, name: str) -> None:
        ok, _ = self.attempt(self.agents[name].strategies["write_back"].flush())  # type: ignore[attr-defined]
        self.sync()
        self.after(name, ok)

    def flushed(self, name: str, keys: list[str], settled: bool) -> None:
        """``name``'s writes of ``keys`` landed (what L2 did not refuse as older);
        ``settled``: the index then saw to the plain writes among them (the step did not
        fail after), and to those a failed step left unsettled, which a flush that sends
        anything retries."""
        for key in keys:
            value, _ = self.pending[name].pop(key)
            if value in self.possible[key]:
                self.landed(key)
        due = dict(self.unsettled[name])
        for key in keys:
            if key in self.deferred[name]:
                due[key] = self.deferred[name].pop(key)
        if not settled:
            self.unsettled[name] = due
            return
        self.unsettled[name] = {}
        for key, value in due.items():
            self.cascade({key}, certain=self.possible[key] == {value}, written=value)

    @precondition(lambda self: len(self.cut) < len(NAMES))
    @rule(name=st.sampled_from(NAMES))
    def cut_connections(self, name: str) -> None:
        if name in self.cut:
            return
        self.stale[name] = {key: self.allowed(name, key) for key in KEYS}
        self.cut.add(name)
        self.world.proxies[name].cut()

    @precondition(lambda self: bool(self.cut))
    @rule(name=st.sampled_from(NAMES))
    def restore(self, name: str) -> None:
        if name in self.cut:
            self.reconnect(name)

    def reconnect(self, name: str) -> None:
        self.world.proxies[name].mode = "pass"
        agent = self.agents[name]
        deadline = time.monotonic() + 10
        while agent.health()["status"] != "ok":
            assert time.monotonic() < deadline, agent.health()
            with contextlib.suppress(TierUnavailableError):
                self.run(agent.get("probe"))
            self.run(asyncio.sleep(0.01))
        self.cut.discard(name)
        self.stale[name] = {}  # L1 was emptied before it served again
        self.sync()
        self.after(name, ok=True)

    @rule(name=st.sampled_from(NAMES), key=st.sampled_from(KEYS))
    def get(self, name: str, key: str) -> None:
        ok, got = self.attempt(self.agents[name].get(key))
        if ok:
            assert got in self.allowed(name, key), (name, key, got, self.allowed(name, key))
        self.after(name, ok=True)  # a read waits for a flush a notice started

    @invariant()
    def reads_follow_the_model(self) -> None:
        for name, agent in self.agents.items():
            failures: dict[str, Any] = {}
            ok, found = self.attempt(agent.lookup_many(list(KEYS), failures))
            if not ok:  # none answered: no L1 copy and L2 away
                assert name in self.cut
                continue
            for key in KEYS:
                if key in failures:
                    continue
                got = found[key]
                value = None if got is None else orjson.loads(got[0])
                assert value in self.allowed(name, key), (name, key, value, got)

    # -- quiescence -----------------------------------------------------------------------

    def stored(self, key: str) -> Value:
        client = self.world.engine.client
        frame = client.get(self.prefix + key)
        if frame is None or is_tombstone(frame):
            return None
        if annotated(frame):
            # It records its tags' versions: another version than a tag's current one, or
            # a tag with none, is a miss (cache_plugins_redis.tag_versions).
            frame, pairs = strip(frame)
            names = [f"{self.prefix}\x1ftv:{tag}" for tag, _ in pairs]
            current = client.mget(names)
            for (_, version), now in zip(pairs, current, strict=True):
                if now is None or now[:VERSION_SIZE] != version:
                    return None
        value: int = orjson.loads(decode_frame(frame, {}, 2**20))
        return value

    def teardown(self) -> None:
        try:
            for name in sorted(self.cut):
                self.reconnect(name)
            for name, agent in self.agents.items():
                self.run(agent.strategies["write_back"].flush())  # type: ignore[attr-defined]
                self.after(name, ok=True)
            self.sync()
            for key in KEYS:
                in_l2 = self.stored(key)
                assert in_l2 in self.possible[key], (key, in_l2, self.possible[key])
                for name, agent in self.agents.items():
                    assert self.run(agent.get(key)) == in_l2, (name, key, in_l2)
        finally:
            for agent in self.agents.values():
                self.run(agent.close())


@contextlib.contextmanager
def world_of(engine: Any, new_proxy: Callable[[], Any]) -> Iterator[World]:
    world = World(engine, {name: new_proxy() for name in NAMES})
    try:
        for proxy in world.proxies.values():
            world.run(proxy.start())
        yield world
    finally:
        for proxy in world.proxies.values():
            world.run(proxy.close())
        world.loop.close()


EXAMPLES = 500


def test_two_agents_on_one_engine_follow_the_model(
    engine: Any, new_proxy: Callable[[], Any]
) -> None:
    with world_of(engine, new_proxy) as world:
        machine = type("Machine", (TwoAgents,), {"world": world})
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=15,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
