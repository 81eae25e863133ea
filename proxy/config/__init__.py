"""Settings: YAML file + SIPGATE_PROXY_* environment overrides, validated on load.

Loading happens in four steps, each reporting every problem it finds at once:
1. read the YAML file and overlay the environment (``SIPGATE_PROXY_A__B=v`` sets ``a.b``),
   then read ``*_file`` secrets (``sources``);
2. convert the values to the schema's types with their rules, by msgspec (``schema``,
   ``convert``);
3. check the rules that span several keys (``checks``);
4. resolve the mode into records whose required fields are set (``modes``).
Every problem names the key it is about (and the variable that set it) and never echoes
a secret value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from proxy.config.auth_schema import (
    Auth,
    Client,
    OAuth2,
    PersonalAccessToken,
    RateLimit,
    Service,
)
from proxy.config.checks import cross_checks, upstream_ca_problem
from proxy.config.clients import all_clients, read_clients_file
from proxy.config.convert import section
from proxy.config.derived import with_derived_defaults
from proxy.config.modes import (
    CookieStore,
    Mode,
    OAuth2Client,
    OAuth2Mode,
    PersonalAccessTokenMode,
    ServiceMode,
    Settings,
    Store,
    resolved,
)
from proxy.config.problems import ConfigError, Problem, named_source
from proxy.config.redis_store import RedisAuth, RedisSentinels, RedisServer, RedisStore
from proxy.config.schema import Document, ForwardAuth, Listen, Log, Management, Server, Upstream
from proxy.config.secret import Secret
from proxy.config.section import LOOPBACK_NETWORKS, IPNetwork
from proxy.config.session_schema import Session
from proxy.config.sources import ENV_PREFIX, env_name, read
from proxy.config.webhooks import Webhooks

__all__ = [
    "ENV_PREFIX",
    "LOOPBACK_NETWORKS",
    "Auth",
    "Client",
    "ConfigError",
    "CookieStore",
    "Document",
    "ForwardAuth",
    "IPNetwork",
    "Listen",
    "Log",
    "Management",
    "Mode",
    "OAuth2",
    "OAuth2Client",
    "OAuth2Mode",
    "PersonalAccessToken",
    "PersonalAccessTokenMode",
    "Problem",
    "RateLimit",
    "RedisAuth",
    "RedisSentinels",
    "RedisServer",
    "RedisStore",
    "Secret",
    "Server",
    "Service",
    "ServiceMode",
    "Session",
    "Settings",
    "Store",
    "Upstream",
    "Webhooks",
    "env_name",
    "load",
    "read_clients_file",
    "upstream_ca_problem",
]


def load(path: Path | None, environ: Mapping[str, str] = os.environ) -> Settings:
    raw, from_env = read(path, environ)
    problems: list[Problem] = []
    document = section(Document, raw, (), problems)
    if document is None:
        raise ConfigError([named_source(p, from_env) for p in problems])
    document = with_derived_defaults(document, raw)
    try:
        clients = all_clients(document.auth)
    except ConfigError as err:
        problems += err.problems
        clients = ()
    settings = resolved(document, problems, clients)  # what is missing, then what is wrong
    problems += cross_checks(document)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings
