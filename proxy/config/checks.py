"""Rules that span several keys, checked once every value has its type. Whether a key
that a mode requires is set at all is decided where the mode is resolved (modes.py)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from proxy.config.origins import is_loopback_host, secure_prefix, valid_port
from proxy.config.problems import Problem
from proxy.config.schema import Document, Upstream
from proxy.config.sources import env_name
from proxy.config.tracing import tracing_problems
from proxy.config.webhooks import webhooks_problems


def cross_checks(document: Document) -> Iterator[Problem]:
    yield from _upstream_checks(document.upstream)
    if document.auth.mode in ("oauth2", "service"):
        yield from _oauth2_checks(document)
    yield from _cookie_prefix_check(document)
    if document.auth.mode == "service":
        yield from _service_checks(document)
    yield from _forward_auth_checks(document)
    yield from tracing_problems(document.tracing)
    yield from webhooks_problems(document.webhooks, document.auth.oauth2.path_prefix)


# The front proxy's secret: at least as long as a base64 session key is (generate-key).
MIN_FORWARD_AUTH_SECRET = 32


def _forward_auth_checks(document: Document) -> Iterator[Problem]:
    forward_auth = document.forward_auth
    if forward_auth.listener == "management" and document.management.listen is None:
        yield Problem(
            "forward_auth.listener",
            "management needs management.listen (a second listener for probes and metrics)",
        )
    secret = forward_auth.secret
    if secret is not None and len(secret.get_secret_value()) < MIN_FORWARD_AUTH_SECRET:
        yield Problem(
            "forward_auth.secret",
            f"at least {MIN_FORWARD_AUTH_SECRET} characters (sipgate-auth-proxy generate-key "
            "makes one)",
        )
    if forward_auth.enabled and secret is None and document.auth.mode != "oauth2":
        # Any holder of a client credential on an allowed network could otherwise ask
        # /oauth2/auth itself and read the account's PAT or Bearer from the answer.
        yield Problem(
            "forward_auth.secret",
            f"required with forward_auth.enabled in {document.auth.mode} mode: /oauth2/auth "
            "answers with the account's own credential, so only a front proxy that sends "
            "this secret (X-Sipgate-Forward-Auth-Secret) may ask; set "
            f"forward_auth.secret_file or {env_name('forward_auth.secret')}",
        )


def _upstream_checks(upstream: Upstream) -> Iterator[Problem]:
    parts = urlsplit(upstream.url)
    loopback = is_loopback_host(parts.hostname or "")
    if parts.scheme == "http" and not loopback and not upstream.allow_insecure_http:
        yield Problem(
            "upstream.url",
            "plain http would send the Bearer token or PAT in clear to a host that is "
            "not loopback: use https, or set upstream.allow_insecure_http: true "
            f"({env_name('upstream.allow_insecure_http')}=true) for a trusted network",
        )
    if upstream.ca_file is not None:
        problem = upstream_ca_problem(upstream.ca_file)
        if problem:
            yield Problem("upstream.ca_file", problem)


def upstream_ca_problem(path: Path) -> str | None:
    """Why the CA bundle cannot be used, or None: loaded once here so a bad file stops
    the start with its key named instead of failing every request."""
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:  # before OSError, its base class
        return f"{str(path)!r} holds no PEM certificate"
    except OSError as err:
        return f"cannot read {str(path)!r}: {err.strerror or err}"
    return None


def _oauth2_checks(document: Document) -> Iterator[Problem]:
    yield from _issuer_checks(document)
    if document.is_local:
        return
    if not document.session.keys:
        yield Problem(
            "session.keys",
            f"required when public_url is not a loopback http URL "
            f"(create one with 'sipgate-auth-proxy generate-key', set {env_name('session.keys')}"
            " or session.keys_file)",
        )
    if document.session.cookie_secure is False:
        yield Problem(
            "session.cookie_secure",
            "may only be false when public_url is a loopback http URL",
        )


def _issuer_checks(document: Document) -> Iterator[Problem]:
    issuer = document.auth.oauth2.issuer
    if issuer is None:
        return
    parts = urlsplit(issuer)
    plain_ok = document.is_local or is_loopback_host(parts.hostname or "")
    if not valid_port(issuer) or not parts.hostname or parts.query or parts.fragment:
        yield Problem("auth.oauth2.issuer", "must be the IdP's issuer URL")
    elif parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
        yield Problem(
            "auth.oauth2.issuer",
            "must be https (the client secret travels to it); http only for loopback",
        )


def _cookie_prefix_check(document: Document) -> Iterator[Problem]:
    name = document.session.cookie_name
    prefix = secure_prefix(name)
    if prefix is not None and not document.cookie_secure:
        yield Problem(
            "session.cookie_secure",
            f"must be true with session.cookie_name {name!r}: browsers drop {prefix} "
            "cookies that are not Secure",
        )


def _service_checks(document: Document) -> Iterator[Problem]:
    if not document.auth.service.allowed_subjects:
        yield Problem(
            "auth.service.allowed_subjects",
            "list the subjects that may become the service identity",
        )
    if not document.session.keys:
        yield Problem(
            "session.keys",
            "required in service mode: the stored identity must outlive a restart",
        )
