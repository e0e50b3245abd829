"""Shared test set-up."""

import os

# tests/minimal asserts that no plugin package is installed: it runs only in `nox -s minimal`.
collect_ignore = [] if os.environ.get("CACHING_AGENT_MINIMAL") else ["minimal"]
