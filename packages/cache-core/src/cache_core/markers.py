"""The pluggy project name, shared by hookspecs, implementations and the entry-point group."""

import pluggy

NAME = "caching_agent"
"""The pluggy project name and the entry-point group plugins register under."""

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)
