"""The ``webhooks`` section: sipgate.io's push API (call events) verified and forwarded to
the app. Off by default; ``checks`` for the rules that span sections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from proxy.config.problems import Problem
from proxy.config.rules import http_url
from proxy.config.section import Check, IPNetwork, Section
from proxy.crypto.public_keys import rsa_public_keys

# The proxy's own paths on the main listener, and sipgate's API (all of it under /v2):
# the webhook path may lie under none of them, nor they under it.
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/v2")


def _path(value: str) -> str:
    """No "." or ".." segments."""
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError("must not contain '.' or '..' segments")
    return value


def _app_url(value: str | None) -> str | None:
    """An http(s) URL without credentials, query or fragment."""
    return None if value is None else http_url(value)  # written as null: not set


class Webhooks(Section, frozen=True, kw_only=True):
    """sipgate.io's push API: call events verified, then forwarded to the app."""

    enabled: Annotated[bool, Meta(description="verify and forward sipgate.io's call events")] = (
        False
    )
    path: Annotated[
        str,
        Meta(
            pattern=r"^(/[A-Za-z0-9._~-]+)+\Z",
            description="prefix on the main listener: sipgate posts to public_url + path + "
            "the app's route",
        ),
        Check(_path),
    ] = "/sipgate/webhooks"
    forward_to: Annotated[
        Annotated[str, Check(_app_url)] | None,
        Meta(description="the app's URL (the rest of the path and the query appended); required"),
    ] = None
    public_keys_file: Annotated[
        Path | None, Meta(description="PEM file of RSA public keys; unset: sipgate's, built in")
    ] = None
    source_networks: Annotated[
        list[IPNetwork], Meta(description="where events may come from; empty: anywhere")
    ] = msgspec.field(default_factory=list)
    trusted_proxies: Annotated[
        list[IPNetwork], Meta(description="peers whose X-Forwarded-For names the client")
    ] = msgspec.field(default_factory=list)
    replay_window: Annotated[
        int,
        Meta(ge=1, le=7 * 24 * 3600, description="seconds an answered event is remembered"),
    ] = 600
    max_body_size: Annotated[
        int, Meta(ge=1024, le=16 * 1024 * 1024, description="bytes an event may have (413)")
    ] = 65536
    # sipgate waits about as long.
    timeout: Annotated[
        float, Meta(gt=0, le=60, description="seconds the app may take to answer (then 504)")
    ] = 10.0


def webhooks_problems(webhooks: Webhooks, oauth2_prefix: str) -> Iterator[Problem]:
    if not webhooks.enabled:
        return
    if webhooks.forward_to is None:
        yield Problem("webhooks.forward_to", "required with webhooks.enabled: the app's URL")
    taken = next((p for p in (oauth2_prefix, *RESERVED_PATHS) if _overlap(webhooks.path, p)), None)
    if taken is not None:
        yield Problem("webhooks.path", f"must not overlap the path {taken}, which is taken")
    if webhooks.public_keys_file is not None:
        problem = public_keys_problem(webhooks.public_keys_file)
        if problem:
            yield Problem("webhooks.public_keys_file", problem)


def _overlap(path: str, taken: str) -> bool:
    return path == taken or path.startswith(taken + "/") or taken.startswith(path + "/")


def public_keys_problem(path: Path) -> str | None:
    """Why the file cannot be used, or None: read once here so a bad file stops the start."""
    try:
        rsa_public_keys(path.read_bytes())
    except OSError as err:
        return f"cannot read {str(path)!r}: {err.strerror or err}"
    except ValueError as err:
        return f"{str(path)!r} {err}"
    return None
