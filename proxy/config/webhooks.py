"""The ``webhooks`` section: sipgate.io's push API (call events) verified and forwarded to
the app. Off by default; ``checks`` for the rules that span sections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec

from proxy.config.problems import Problem
from proxy.config.rules import http_url
from proxy.config.section import Check, IPNetwork, Section
from proxy.crypto.public_keys import rsa_public_keys

# The proxy's own paths on the main listener, and sipgate's API (all of it under /v2):
# the webhook path may lie under none of them, nor they under it.
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/v2")


def _path(value: str) -> str:
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError("must not contain '.' or '..' segments")
    return value


def _app_url(value: str | None) -> str | None:
    return None if value is None else http_url(value)  # written as null: not set


class Webhooks(Section, frozen=True, kw_only=True):
    enabled: bool = False
    # A prefix on the main listener: sipgate posts to public_url + path + the app's route.
    path: Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9._~-]+)+\Z"), Check(_path)] = (
        "/sipgate/webhooks"
    )
    forward_to: Annotated[str, Check(_app_url)] | None = None  # required when enabled
    public_keys_file: Path | None = None  # None: sipgate's key, built in
    source_networks: list[IPNetwork] = msgspec.field(default_factory=list)  # []: any
    trusted_proxies: list[IPNetwork] = msgspec.field(default_factory=list)  # may set XFF
    replay_window: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] = 600  # seconds
    max_body_size: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 65536
    # Seconds the app may take to answer (then 504); sipgate waits about as long.
    timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0


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
