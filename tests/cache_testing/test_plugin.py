"""The pytest plugin of caching-agent[testing], as users load it: each test writes a user's
test file and runs pytest on it in a fresh process, where the plugin comes from its
``pytest11`` entry point."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

RUN_TIMEOUT = 120.0
README = Path(__file__).parents[2] / "README.md"

INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers
"""


def readme_blocks(section: str) -> list[str]:
    """The ```python blocks of README's ``## section``, in order."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(autouse=True)
def only_the_plugins_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs load pytest-asyncio's and this plugin's entry points by name and no other:
    every pytest plugin of the test environment (schemathesis, hypothesis...) would add
    six seconds to each."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run(
    pytester: pytest.Pytester, source: str, *args: str, mode: str = "strict"
) -> pytest.RunResult:
    """``source`` as a user's test file, run by pytest in its own process (asyncio_mode
    ``mode``, every warning an error)."""
    pytester.makefile(".ini", pytest=INI.format(mode=mode))
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "asyncio", "-p", "caching_agent", *args,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip


def test_loading_the_plugin_starts_and_imports_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that uses no fixture of the plugin pays nothing for it: no engine, none of the
    project's packages imported, yet the fixtures are there. With every installed plugin
    loaded as pytest loads them, the entry point included."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    result = run(
        pytester,
        """
import sys


def test_nothing_loaded():
    loaded = [m for m in ("cache_core", "cache_plugins_redis", "fakeredis", "cache_testing.engines")
              if m in sys.modules]
    assert loaded == []
""",
    )
    result.assert_outcomes(passed=1)
    assert "cache-testing-0.1.0" in result.stdout.str()  # pytest's list of plugins
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # as in the other runs: faster
    fixtures = run(pytester, "", "--fixtures")
    for name in (
        "caching_agent_engine",
        "caching_agent_config",
        "caching_agent_factory",
        "caching_agent_app",
        "caching_agent_fake_engine",
        "caching_agent_fake",
        "caching_agent_fake_app",
    ):
        assert name in fixtures.stdout.str()


def test_agent_on_the_real_engine_and_its_prefix_torn_down(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Strict mode: the agent writes through to the session's engine under the test's own
    prefix; a second test gets another prefix, and finds the first one's keys deleted; at
    the end of the session the engine is gone."""
    record = tmp_path / "record.json"
    result = run(
        pytester,
        f"""
import json
import pytest

SEEN = {{}}


@pytest.mark.asyncio
async def test_writes_reach_the_engine(caching_agent, caching_agent_config, caching_agent_engine):
    prefix = caching_agent_config["redis"]["key_prefix"]
    await caching_agent.set("user:1:profile", {{"name": "Ada"}}, tags=["users"])
    assert await caching_agent.get("user:1:profile") == {{"name": "Ada"}}
    assert caching_agent_engine.client.exists(prefix + "user:1:profile") == 1
    assert caching_agent_engine.url.startswith("unix://")
    health = caching_agent.health()
    assert health["status"] == "ok" and health["tiers"]["l2"]["coherent"] is True
    assert "warnings" not in health
    SEEN["prefix"] = prefix
    SEEN["pid"] = caching_agent_engine.process.pid
    SEEN["workdir"] = str(caching_agent_engine.workdir)


@pytest.mark.asyncio
async def test_next_test_has_its_own_prefix(
    caching_agent, caching_agent_config, caching_agent_engine
):
    assert caching_agent_config["redis"]["key_prefix"] != SEEN["prefix"]
    assert caching_agent_engine.client.keys(SEEN["prefix"] + "*") == []
    assert await caching_agent.get("user:1:profile") is None
    assert caching_agent_engine.process.pid == SEEN["pid"]  # one engine per session
    with open({str(record)!r}, "w") as f:
        json.dump(SEEN, f)
""",
    )
    result.assert_outcomes(passed=2)
    seen = json.loads(record.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(seen["pid"], 0)
    assert not Path(seen["workdir"]).exists()


COHERENCE = """
import asyncio


async def until(condition):
    for _ in range(500):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_two_instances({factory}):
    one = await {factory}()
    two = await {factory}()
    await one.set("content:7", "v1")
    # one's notice reaches two before two reads, so nothing drops what two's read keeps.
    assert await until(lambda: two.l2.notices_received >= 1)
    assert await two.get("content:7") == "v1"
    assert two.lookup_l1("content:7") is not None
    await one.set("content:7", "v2")
    assert await until(lambda: two.lookup_l1("content:7") is None)
    assert await two.get("content:7") == "v2"
"""


@pytest.mark.parametrize("factory", ["caching_agent_factory", "caching_agent_fake_factory"])
def test_factory_instances_share_l2_and_stay_coherent(
    pytester: pytest.Pytester, factory: str
) -> None:
    """Auto mode: two agents of one test share its prefix, as two instances of a service
    share one Redis, and a write on one drops the other's L1 copy: on fakeredis too, whose
    pub/sub carries the notices."""
    result = run(
        pytester,
        COHERENCE.format(factory=factory),
        mode="auto",
    )
    result.assert_outcomes(passed=1)


def test_app_with_a_config_override(pytester: pytest.Pytester) -> None:
    """The HTTP app on the real engine; the marker's config is merged over the default
    (here a token, and a policy), the rest of the default kept."""
    result = run(
        pytester,
        """
import pytest
from cache_server.keys import AGENT

AUTH = {"Authorization": "Bearer a-token-of-16-characters-or-more"}
OVERRIDES = {
    "server": {"auth_token": "a-token-of-16-characters-or-more"},
    "cache_policies": {"short": {"match": ["tmp:*"], "ttl": 5}},
}


@pytest.mark.asyncio
@pytest.mark.caching_agent(config=OVERRIDES)
async def test_served(caching_agent_app, caching_agent_config):
    assert caching_agent_config["redis"]["url"].startswith("unix://")  # the default kept
    assert (await caching_agent_app.get("/cache/tmp:1")).status == 401
    set_ = await caching_agent_app.post(
        "/cache", json={"key": "tmp:1", "value": [1, 2]}, headers=AUTH
    )
    assert set_.status == 200
    got = await (await caching_agent_app.get("/cache/tmp:1", headers=AUTH)).json()
    assert got["value"] == [1, 2] and got["hit"] is True
    agent = caching_agent_app.app[AGENT]
    assert agent.l2 is not None and agent.health()["status"] == "ok"
    assert (await caching_agent_app.get("/health")).status == 200
""",
    )
    result.assert_outcomes(passed=1)


def test_the_readme_examples(pytester: pytest.Pytester) -> None:
    """README's "Testing your code" example as it is, and "Writing a plugin"'s loader with
    its test: the marker hands the plugin over, the agent and the app both get it."""
    testing = readme_blocks("Testing your code")[0]
    loader, loader_test = readme_blocks("Writing a plugin")[:2]
    result = run(pytester, testing)
    result.assert_outcomes(passed=2)
    result = run(pytester, loader + "\n\n" + loader_test)
    result.assert_outcomes(passed=2)


def test_fake_variants(pytester: pytest.Pytester) -> None:
    """The agent, factory and app on fakeredis: the same tier over the same protocol, no
    engine binary; what fakeredis cannot show (README "Testing your code") includes the
    server's memory settings, which the tier cannot read there."""
    result = run(
        pytester,
        """
import asyncio
import pytest


@pytest.mark.asyncio
async def test_agent(caching_agent_fake, caching_agent_fake_config, caching_agent_fake_engine):
    prefix = caching_agent_fake_config["redis"]["key_prefix"]
    assert caching_agent_fake_engine.url.startswith("redis://127.0.0.1:")
    await caching_agent_fake.set("user:1:profile", {"name": "Ada"}, tags=["users"])
    assert caching_agent_fake_engine.client.exists(prefix + "user:1:profile") == 1
    assert await caching_agent_fake.invalidate_by_tags(["users"]) == 1
    assert await caching_agent_fake.get("user:1:profile") is None
    l2 = caching_agent_fake.health()["tiers"]["l2"]
    assert l2["coherent"] is True
    assert l2["memory"]["checked"] is False  # no CONFIG GET on fakeredis


@pytest.mark.asyncio
async def test_app(caching_agent_fake_app):
    answer = await caching_agent_fake_app.post("/cache", json={"key": "a", "value": 1})
    assert answer.status == 200
    body = await (await caching_agent_fake_app.get("/cache/a")).json()
    assert body["value"] == 1
""",
    )
    result.assert_outcomes(passed=2)


def test_a_failing_user_test_fails_and_still_tears_down(pytester: pytest.Pytester) -> None:
    """The fixtures report a user's failure as the user's, and close their agents anyway."""
    result = run(
        pytester,
        """
import pytest


@pytest.mark.asyncio
async def test_fails(caching_agent):
    await caching_agent.set("k", 1)
    assert await caching_agent.get("k") == 2
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*ERROR at teardown*")
