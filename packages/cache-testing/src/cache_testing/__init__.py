"""Caching Agent's pytest plugin: fixtures for an agent or the HTTP app on the real engine,
or on fakeredis (see cache_testing.plugin).

Kept empty: pytest imports this package when it loads the plugin, in every test run of an
environment that has it installed, so nothing may be imported here that a run not using
the fixtures would pay for."""
