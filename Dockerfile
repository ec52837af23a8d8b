# s3shim container image.
#
#   docker build -t s3shim .                      (BuildKit: RUN --mount cache)
#   podman build --format docker -t s3shim .      (docker format keeps the HEALTHCHECK)
#
# Two stages: the builder makes a wheel of s3shim and installs it with the pinned runtime
# dependencies (requirements/runtime.lock, binary wheels only) into /opt/venv; the final
# stage copies only that venv onto a clean base and runs as UID 10001. Nothing is written
# at run time, so the root filesystem may be read-only. Configuration is the environment
# only (see README: every S3SHIM_* / AWS_* variable).

############################################################################### builder
FROM python:3.11-slim AS builder

# Build tools, pinned; they stay in the builder.
ARG PIP_VERSION=25.3
ARG SETUPTOOLS_VERSION=80.9.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# /opt/build: pip + setuptools for building; /opt/venv: the runtime venv, without pip.
RUN python -m venv /opt/build \
 && python -m venv --without-pip /opt/venv

RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/build/bin/pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"

# Dependencies first: this layer is reused while only s3shim's code changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/build/bin/pip --python /opt/venv/bin/python install \
        --no-deps --only-binary=:all: --require-virtualenv -r requirements/runtime.lock

COPY pyproject.toml README.md ./
COPY s3shim ./s3shim
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /dist/s3shim-*.whl \
 && /opt/build/bin/pip --python /opt/venv/bin/python check \
 && /opt/venv/bin/python -c "import s3shim.cli, aiohttp, awscrt, uvloop, isal, prometheus_client"

################################################################################# final
FROM python:3.11-slim

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="s3shim" \
      org.opencontainers.image.description="Authenticating, re-signing S3 reverse proxy that lets unmodified AWS SDK clients (e.g. Convex) use non-AWS stores such as Ceph RGW and MinIO" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --gid 10001 s3shim \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init s3shim

COPY --from=builder /opt/venv /opt/venv

# S3 listener and admin listener (/healthz, /readyz, /metrics) on all interfaces inside the
# container; logs as JSON lines on stdout. Override any of them with -e / env:.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    S3SHIM_LISTEN_HOST=0.0.0.0 \
    S3SHIM_LISTEN_PORT=8080 \
    S3SHIM_ADMIN_HOST=0.0.0.0 \
    S3SHIM_ADMIN_PORT=9090 \
    S3SHIM_LOG_FORMAT=json

USER 10001:10001
WORKDIR /
EXPOSE 8080 9090

# Liveness on the admin port, from inside the container (no curl in slim: Python's urllib).
# It dials 127.0.0.1, which S3SHIM_ADMIN_HOST=0.0.0.0 (or 127.0.0.1) covers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('S3SHIM_ADMIN_PORT', '9090'), timeout=2)"]

# Exec form: s3shim is PID 1 and gets SIGTERM itself; it stops accepting, drains for up to
# S3SHIM_SHUTDOWN_GRACE_SECONDS and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/s3shim"]
