"""The Dockerfile's dependency layer, checked without building it (`nox -s container` builds
and runs the image, outside CI): the locked sync there reads the workspace, so every
member's pyproject.toml must be copied before it, or the build fails (it did when
cache-client and cache-testing were added)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_every_workspace_member_is_copied_before_the_locked_sync() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    sync_at = dockerfile.index("uv sync --locked")
    head = dockerfile[:sync_at]
    copied = set(re.findall(r"^COPY (packages/[^/\s]+)/pyproject\.toml", head, re.M))
    members = {f"packages/{p.parent.name}" for p in (ROOT / "packages").glob("*/pyproject.toml")}
    assert members, "no workspace members found"
    assert copied == members, (sorted(members - copied), sorted(copied - members))
