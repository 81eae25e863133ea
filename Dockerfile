# sipgate-auth-proxy container image.
#
#   docker build -t sipgate-auth-proxy .            (here, without a registry: make image)
#   docker run --rm --read-only -p 127.0.0.1:8080:8080 \
#     -e SIPGATE_PROXY_AUTH__MODE=personal_access_token \
#     -e SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID=token-AB12cd \
#     -e SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN=... \
#     -e SIPGATE_PROXY_AUTH__ALLOWED_CLIENT_NETWORKS='[172.16.0.0/12]' sipgate-auth-proxy
#   (published ports reach the proxy from the bridge network's gateway, not from loopback:
#   allow that network, Docker's default bridge is in 172.16.0.0/12)
#
# Configuration: /etc/sipgate-auth-proxy/config.yaml (a container default is baked in: listen
# on 0.0.0.0:8080, probes and metrics on 0.0.0.0:9090, JSON logs; mount your own file over
# it) and SIPGATE_PROXY_* environment variables, which win over the file. Secrets belong
# in mounted files (*_file keys) or environment variables, never in the image. The
# OpenTelemetry SDK is in (the tracing extra): SIPGATE_PROXY_TRACING__OTLP_ENDPOINT turns
# traces on; without it no OpenTelemetry module is loaded.
#
# The image runs as uid/gid 10001, writes nothing outside /tmp and works with a read-only
# root filesystem (mount a tmpfs or an emptyDir on /tmp). Nothing here depends on the
# Python minor version of the base: the venv is made with the base's python3.

# ---------------------------------------------------------------------------------------
# build: a venv with the pinned, hash-checked dependencies and the proxy itself
FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Only for builds behind a TLS-intercepting proxy: a CA bundle mounted into the build
# (podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
#  --build-arg PIP_CERT_FILE=/run/host-ca.crt). Empty: pip's own CA bundle.
ARG PIP_CERT_FILE=""

RUN python3 -m venv /opt/sipgate-auth-proxy

WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt ./requirements/
# Wheels only (--only-binary): no compiler is needed or present; every file is checked
# against the hashes in requirements/ (scripts/lock-requirements.sh writes them).
RUN /opt/sipgate-auth-proxy/bin/pip install ${PIP_CERT_FILE:+--cert "$PIP_CERT_FILE"} \
        --require-hashes --only-binary=:all: --no-deps \
        -r requirements/runtime.txt -r requirements/build.txt

COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
# The proxy itself, built with the pinned setuptools (no build isolation, so nothing
# unpinned is fetched) and without dependencies (all in place already).
RUN /opt/sipgate-auth-proxy/bin/pip install --no-build-isolation --no-deps --no-compile . \
    && /opt/sipgate-auth-proxy/bin/pip check

# Only what runs stays in the venv: pip and setuptools (only installing needs them), the
# venv's activate scripts and the libraries' command-line tools, sources of compiled
# modules (.pyx, .pxd, .pxi, .c, .h), type stubs, packaged tests, and the debug symbols
# of shared libraries (uvloop's alone are 12 of its 13.6 MB; binutils' strip, in this
# stage only). Byte-code is compiled now because the root filesystem is read-only at run
# time.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && venv=/opt/sipgate-auth-proxy \
    && "$venv/bin/pip" uninstall --yes --quiet setuptools pip \
    && find "$venv/bin" -type f ! -name 'python*' ! -name sipgate-auth-proxy -delete \
    && site=$(echo "$venv"/lib/python3*/site-packages) \
    && find "$site" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' \
        -o -name '*.h' -o -name '*.pyi' \) -type f -delete \
    && find "$site" -depth -type d \( -name tests -o -name test \) ! -path '*/proxy/*' \
        -exec rm -rf {} + \
    && find "$site" -name '*.so' -type f -exec strip --strip-unneeded {} + \
    && "$venv/bin/python" -m compileall -q "$venv" \
    && "$venv/bin/sipgate-auth-proxy" --version

# ---------------------------------------------------------------------------------------
# final: the base image, the venv and a default config; no pip, no build tools
FROM python:3.12-slim

LABEL org.opencontainers.image.title="sipgate-auth-proxy" \
      org.opencontainers.image.description="Authenticating reverse proxy in front of the sipgate REST API" \
      org.opencontainers.image.licenses="MIT"

COPY --from=build /opt/sipgate-auth-proxy /opt/sipgate-auth-proxy
RUN groupadd --system --gid 10001 sipgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sipgate

COPY deploy/container-config.yaml /etc/sipgate-auth-proxy/config.yaml

ENV PATH=/opt/sipgate-auth-proxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["sipgate-auth-proxy"]
CMD ["--config", "/etc/sipgate-auth-proxy/config.yaml"]
