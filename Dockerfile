# kale-pooler container image: `pooler serve` as a non-root user.
#   docker build -t kale-pooler .
#   docker run --rm -p 3001:3001 --env-file .env kale-pooler
# See docs/operations.md ("Container") for volumes, health checks and configuration.

# ---- web: the dashboard's front-end files (uPlot from the npm registry, pinned by package-lock.json)
FROM node:20-bookworm-slim AS web
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json frontend/build.sh ./
RUN ./build.sh

# ---- build: install the package and its dependencies into a virtualenv
FROM python:3.11-slim-bookworm AS build

# gcc only in this stage, for dependencies without a wheel for the target platform
# (safe-pysha3 on some architectures). Debian's package versions are not pinned: the
# base image tag fixes the Debian release, and point-release pins disappear from the mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY pooler ./pooler
COPY --from=web /src/pooler/web/static/vendor ./pooler/web/static/vendor
RUN pip install --no-cache-dir . \
    && pooler version

# ---- runtime: the virtualenv only, no compiler, no sources
FROM python:3.11-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 pooler \
    && useradd --system --uid 10001 --gid pooler --home-dir /data --shell /usr/sbin/nologin pooler \
    && mkdir -p /data \
    && chown pooler:pooler /data

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3001 \
    POOLER_DB=/data/pooler.db

WORKDIR /data
VOLUME ["/data"]
# Numeric, so orchestrators can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 3001

# Liveness only (the process answers HTTP); readiness (/health/ready) is for load balancers.
# An HTTP error or no answer raises, and Python exits 1: "unhealthy".
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '3001'), timeout=4)"]

ENTRYPOINT ["pooler"]
CMD ["serve"]
