"""The cache-core tests' fixtures live in tests/conftest.py (``clock``, ``base_config``,
``make_agent``, ``no_plugins_env``): every agent is built with no installed entry-point
plugin, so what a test uses is what it registers. Test modules cannot import conftest
files, so what they share is handed out as fixtures."""
