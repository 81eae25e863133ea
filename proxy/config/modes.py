"""What each mode requires, resolved once when the settings load: records whose required
fields are not Optional, so the code that uses them needs no check of its own.

``Settings.mode`` is one of ``OAuth2Mode``, ``PersonalAccessTokenMode``, ``ServiceMode``;
``Settings.store`` is where sessions (and service mode's identity) live: ``CookieStore``
or ``RedisStore``. A required key that is not set is reported here, naming its variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from proxy.config.auth_schema import Client, OAuth2, PersonalAccessToken, Service
from proxy.config.problems import Problem
from proxy.config.redis_store import RedisStore, resolve_redis
from proxy.config.schema import Document
from proxy.config.secret import Secret
from proxy.config.sources import SECRET_FILES, env_name

T = TypeVar("T")


@dataclass(frozen=True)
class OAuth2Client:
    """The OAuth2 section with the client credentials that its modes require."""

    settings: OAuth2
    client_id: str
    client_secret: Secret


@dataclass(frozen=True)
class OAuth2Mode:
    client: OAuth2Client


@dataclass(frozen=True)
class PersonalAccessTokenMode:
    token_id: str
    token: Secret


@dataclass(frozen=True)
class CookieStore:
    """Sessions live sealed in the browser's cookies; the server keeps nothing."""


@dataclass(frozen=True)
class ServiceMode:
    client: OAuth2Client
    allowed_subjects: frozenset[str]
    state: Path | RedisStore  # where the identity is kept: auth.service.state_file, or Redis


Mode = OAuth2Mode | PersonalAccessTokenMode | ServiceMode
Store = CookieStore | RedisStore


class Settings(Document, frozen=True, kw_only=True):
    """The validated configuration with its mode resolved (what ``load`` returns)."""

    mode: Mode
    store: Store
    # The shared modes' apps: auth.clients and auth.clients_file (config/clients.py).
    clients: tuple[Client, ...] = ()


def resolved(
    document: Document, problems: list[Problem], clients: tuple[Client, ...] = ()
) -> Settings | None:
    """The settings with mode and store, or None when ``problems`` says what is missing."""
    store = resolve_store(document, problems)
    mode = resolve_mode(document, store, problems)
    if mode is None or store is None:
        return None
    sections = {name: getattr(document, name) for name in document.__struct_fields__}
    return Settings(**sections, mode=mode, store=store, clients=clients)


def resolve_store(document: Document, problems: list[Problem]) -> Store | None:
    if document.session.store == "cookie":
        return CookieStore()
    return resolve_redis(document.session, problems)


def resolve_mode(document: Document, store: Store | None, problems: list[Problem]) -> Mode | None:
    auth = document.auth
    if auth.mode == "personal_access_token":
        return _personal_access_token(auth.personal_access_token, problems)
    client = _client(auth.oauth2, f"in {auth.mode} mode", problems)
    if auth.mode == "oauth2":
        return OAuth2Mode(client) if client is not None else None
    state = _identity_state(auth.service, store, document.session.store, problems)
    if client is None or state is None:
        return None
    return ServiceMode(client, frozenset(auth.service.allowed_subjects), state)


def _personal_access_token(
    settings: PersonalAccessToken, problems: list[Problem]
) -> PersonalAccessTokenMode | None:
    when = "in personal_access_token mode"
    token_id = _required(settings.token_id, "auth.personal_access_token.token_id", when, problems)
    token = _required(settings.token, "auth.personal_access_token.token", when, problems)
    if token_id is None or token is None:
        return None
    return PersonalAccessTokenMode(token_id, token)


def _client(settings: OAuth2, when: str, problems: list[Problem]) -> OAuth2Client | None:
    client_id = _required(settings.client_id, "auth.oauth2.client_id", when, problems)
    secret = _required(settings.client_secret, "auth.oauth2.client_secret", when, problems)
    if client_id is None or secret is None:
        return None
    return OAuth2Client(settings, client_id, secret)


def _identity_state(
    service: Service, store: Store | None, store_name: str, problems: list[Problem]
) -> Path | RedisStore | None:
    if service.state_file is not None:
        return service.state_file
    if isinstance(store, RedisStore):
        return store
    if store_name != "redis":  # else session.redis_url's problem is already reported
        problems.append(
            Problem(
                "auth.service.state_file",
                "required in service mode unless session.store is redis",
            )
        )
    return None


def _required(value: T | None, key: str, when: str, problems: list[Problem]) -> T | None:
    """The value; when it is not set, a problem naming its variable and, for a secret,
    the file that can hold it instead."""
    if value is None:
        section, name = key.rsplit(".", 1)
        files = [f for path, k, f, _ in SECRET_FILES if ".".join(path) == section and k == name]
        also = f" or {files[0]}" if files else ""
        problems.append(
            Problem(key, f"required {when}: set {env_name(key)} (or {name}{also} in the config)")
        )
    return value
