"""Settings: YAML file + SIPGATE_PROXY_* environment overrides, validated by pydantic.

Loading happens in three steps, each reporting every problem it finds at once:
1. read the YAML file and overlay the environment (``SIPGATE_PROXY_A__B=v`` sets ``a.b``);
2. read ``*_file`` secrets (a Kubernetes secret mounted as a file);
3. validate the structure (pydantic), then the rules that span several keys.
Every problem names the key it is about and never echoes a secret value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
)

from proxy.csrf import normalise_origin
from proxy.keys import InvalidKey, decode_key

ENV_PREFIX = "SIPGATE_PROXY_"
LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class Upstream(_Section):
    url: str = "https://api.sipgate.com"
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_body_size: int = Field(default=64 * 1024 * 1024, ge=0)
    forward_cookies: bool = False

    @field_validator("url")
    @classmethod
    def _origin_only(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or not _valid_port(value):
            raise ValueError("must be an http(s) URL such as https://api.sipgate.com")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not contain credentials, a query or a fragment")
        return value.rstrip("/")


class OAuth2(_Section):
    realm: str = Field(default="sipgate-apps", pattern=r"^[A-Za-z0-9._-]+$")
    issuer: str | None = None
    discovery: bool = False
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    scopes: list[str] = Field(default_factory=lambda: ["all"])
    pkce: bool = True
    # Below sipgate's 300 s token lifetime, or every request would refresh.
    refresh_skew: float = Field(default=30.0, ge=0, lt=300)
    timeout: float = Field(default=10.0, gt=0)
    path_prefix: str = Field(default="/oauth2", pattern=r"^(/[A-Za-z0-9._~-]+)+$")
    idp_logout: bool = False


class PersonalAccessToken(_Section):
    token_id: str | None = Field(default=None, pattern=r"^token-[A-Za-z0-9]{6}$")
    token: SecretStr | None = None


class Service(_Section):
    # Only these subjects (the IdP's "sub") may become the service identity.
    allowed_subjects: list[str] = Field(default_factory=list)
    state_file: Path | None = None  # without it, session.store: redis keeps the identity


class Auth(_Section):
    mode: Literal["oauth2", "personal_access_token", "service"] = "oauth2"
    oauth2: OAuth2 = OAuth2()
    personal_access_token: PersonalAccessToken = PersonalAccessToken()
    service: Service = Service()
    # Headless modes (PAT, service) act as the account for anyone who reaches them.
    allowed_client_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]
    )


class Session(_Section):
    cookie_name: str = Field(default="sipgate_proxy", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cookie_secure: bool | None = None  # None: on, except for a loopback http public_url
    keys: list[SecretStr] = Field(default_factory=list)
    store: Literal["cookie", "redis"] = "cookie"
    redis_url: SecretStr | None = None  # redis://, rediss:// (TLS) or unix://
    redis_lock_ttl: float = Field(default=5.0, gt=0, le=60)
    max_lifetime: float = Field(default=30 * 24 * 3600, gt=0)
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _bare_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if normalise_origin(origin) is None:
                raise ValueError(f"{origin!r} is not a bare origin such as https://app.example")
        return origins

    @field_validator("keys")
    @classmethod
    def _keys_decode(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys):
            try:
                decode_key(key.get_secret_value())
            except InvalidKey as err:
                raise ValueError(f"key #{position + 1}: {err}") from None
        return keys


class Server(_Section):
    max_field_size: int = Field(default=65536, ge=8190)
    shutdown_timeout: float = Field(default=30.0, ge=0)
    workers: int = Field(default=1, ge=1, le=64)


class Management(_Section):
    # A second listener for probes and metrics (e.g. a port only the cluster reaches);
    # when set, /metrics is served there only.
    listen: Listen | None = None


class Log(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Settings(_Section):
    listen: Listen = Listen()
    public_url: str = "http://localhost:8080"
    upstream: Upstream = Upstream()
    auth: Auth = Auth()
    session: Session = Session()
    server: Server = Server()
    management: Management = Management()
    log: Log = Log()

    @field_validator("public_url")
    @classmethod
    def _public_origin(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or not _valid_port(value):
            raise ValueError("must be the http(s) origin browsers use, e.g. https://proxy.example")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError("must be an origin only (scheme, host, port), without a path")
        return value.rstrip("/")

    @property
    def is_local(self) -> bool:
        """A plain-http loopback public_url: a developer's machine."""
        parts = urlsplit(self.public_url)
        return parts.scheme == "http" and _is_loopback_host(parts.hostname or "")

    @property
    def cookie_secure(self) -> bool:
        if self.session.cookie_secure is None:
            return not self.is_local
        return self.session.cookie_secure


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def load(path: Path | None, environ: Mapping[str, str] = os.environ) -> Settings:
    problems: list[Problem] = []
    raw = _read_yaml(path, problems)
    from_env = _overlay_environment(raw, environ, problems)
    _read_secret_files(raw, problems)
    if problems:
        raise ConfigError(problems)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError([_problem_from_pydantic(e, from_env) for e in err.errors()]) from None
    problems = list(_cross_checks(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _read_yaml(path: Path | None, problems: list[Problem]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        problems.append(Problem("--config", f"cannot read {path}: {err.strerror}"))
        return {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problems.append(Problem("--config", f"{path} is not valid YAML{where}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem("--config", f"{path} must hold a mapping of settings"))
        return {}
    return data


def _overlay_environment(
    raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]
) -> dict[str, str]:
    """Apply SIPGATE_PROXY_* variables; return which dotted keys each one set."""
    from_env: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            problems.append(Problem(name, "malformed variable name"))
            continue
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(Problem(name, f"{'.'.join(path)} is not a section"))
                break
            node = child
        else:
            node[path[-1]] = _parse_env_value(value)
            from_env[".".join(path)] = name
    return from_env


def _parse_env_value(value: str) -> Any:
    # Lists and mappings may be written inline (YAML flow style); scalars stay
    # strings and pydantic converts them, so a secret like "0123" keeps its zero.
    if value.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


# (section path, secret key, file key, one value per line?)
_SECRET_FILES = (
    (("auth", "oauth2"), "client_secret", "client_secret_file", False),
    (("auth", "personal_access_token"), "token", "token_file", False),
    (("session",), "keys", "keys_file", True),
    (("session",), "redis_url", "redis_url_file", False),
)


def _read_secret_files(raw: dict[str, Any], problems: list[Problem]) -> None:
    for section_path, key, file_key, many in _SECRET_FILES:
        section = _section(raw, section_path)
        if section is None or section.get(file_key) is None:
            continue
        dotted = ".".join((*section_path, file_key))
        if section.get(key):
            problems.append(Problem(dotted, f"set either {key} or {file_key}, not both"))
            continue
        try:
            text = Path(str(section.pop(file_key))).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(dotted, f"cannot read the file: {_reason(err)}"))
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            problems.append(Problem(dotted, "the file is empty"))
            continue
        section[key] = lines if many else lines[0]


def _section(raw: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = raw
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or type(err).__name__


def _problem_from_pydantic(error: Mapping[str, Any], from_env: Mapping[str, str]) -> Problem:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling)"
    source = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
    if source:
        message += f" (set by {source})"
    return Problem(key, message)  # never error["input"]: it may be a secret


def _cross_checks(settings: Settings) -> Iterator[Problem]:
    auth = settings.auth
    if auth.mode == "personal_access_token":
        pat = auth.personal_access_token
        if pat.token_id is None or pat.token is None:
            yield Problem(
                "auth.personal_access_token",
                "no credentials: set "
                f"{env_name('auth.personal_access_token.token_id')} and "
                f"{env_name('auth.personal_access_token.token')} "
                "(or token_id and token / token_file in the config file)",
            )
    if auth.mode in ("oauth2", "service"):
        yield from _oauth2_checks(settings)
    if auth.mode == "service":
        service = auth.service
        if not service.allowed_subjects:
            yield Problem(
                "auth.service.allowed_subjects",
                "list the subjects that may become the service identity",
            )
        if not settings.session.keys:
            yield Problem(
                "session.keys",
                "required in service mode: the stored identity must outlive a restart",
            )
        if service.state_file is None and settings.session.store != "redis":
            yield Problem(
                "auth.service.state_file",
                "required in service mode unless session.store is redis",
            )
    if settings.session.store == "redis":
        url = settings.session.redis_url
        if url is None:
            yield Problem(
                "session.redis_url",
                f"required with store: redis (set {env_name('session.redis_url')} or "
                "session.redis_url_file)",
            )
        elif urlsplit(url.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            yield Problem("session.redis_url", "must be a redis://, rediss:// or unix:// URL")


def _oauth2_checks(settings: Settings) -> Iterator[Problem]:
    oauth2 = settings.auth.oauth2
    if oauth2.client_id is None or oauth2.client_secret is None:
        yield Problem(
            "auth.oauth2",
            "no client credentials: set "
            f"{env_name('auth.oauth2.client_id')} and {env_name('auth.oauth2.client_secret')}"
            " (or personal access token mode: "
            f"{env_name('auth.mode')}=personal_access_token)",
        )
    issuer = oauth2.issuer
    if issuer is not None:
        parts = urlsplit(issuer)
        plain_ok = settings.is_local or _is_loopback_host(parts.hostname or "")
        if not _valid_port(issuer) or not parts.hostname or parts.query or parts.fragment:
            yield Problem("auth.oauth2.issuer", "must be the IdP's issuer URL")
        elif parts.scheme != "https" and not (parts.scheme == "http" and plain_ok):
            yield Problem(
                "auth.oauth2.issuer",
                "must be https (the client secret travels to it); http only for loopback",
            )
    if settings.is_local:
        return
    if not settings.session.keys:
        yield Problem(
            "session.keys",
            f"required when public_url is not a loopback http URL "
            f"(create one with 'sipgate-auth-proxy generate-key', set {env_name('session.keys')}"
            " or session.keys_file)",
        )
    if settings.session.cookie_secure is False:
        yield Problem(
            "session.cookie_secure",
            "may only be false when public_url is a loopback http URL",
        )


def _valid_port(url: str) -> bool:
    try:
        port = urlsplit(url).port
    except ValueError:
        return False
    return port is None or 1 <= port <= 65535


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
