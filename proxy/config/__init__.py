"""Settings: YAML file + SIPGATE_PROXY_* environment overrides, validated on load.

Loading happens in three steps, each reporting every problem it finds at once:
1. read the YAML file and overlay the environment (``SIPGATE_PROXY_A__B=v`` sets ``a.b``);
2. read ``*_file`` secrets (a Kubernetes secret mounted as a file);
3. validate the structure (the types and rules declared on the sections below), then the
   rules that span several keys.
Every problem names the key it is about and never echoes a secret value.

The sections are frozen dataclasses checked by the small validator at the end of this
module, not pydantic models: pydantic cost every worker about 10 MB of RSS and a sixth of
the start-up time, for a job done once at start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import ssl
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from proxy.auth.origin import normalise_origin
from proxy.crypto.keys import InvalidKey, decode_key
from proxy.session.cookie_chunks import secure_prefix

ENV_PREFIX = "SIPGATE_PROXY_"
LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A secret setting: masked in repr and str (so in logs and errors)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --- rules a setting's type can carry: Annotated[int, Limits(ge=0)] -----------------


@dataclass(frozen=True)
class Limits:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class Pattern:
    regex: str


@dataclass(frozen=True)
class Check:
    """Returns the value (possibly normalised) or raises ValueError with the problem."""

    check: Callable[[Any], Any]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _valid_port(value):
        raise ValueError("must be an http(s) URL such as https://api.sipgate.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not contain credentials, a query or a fragment")
    return value.rstrip("/")


def _public_origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _valid_port(value):
        raise ValueError("must be the http(s) origin browsers use, e.g. https://proxy.example")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("must be an origin only (scheme, host, port), without a path")
    return value.rstrip("/")


def _bare_origins(origins: list[str]) -> list[str]:
    for origin in origins:
        if normalise_origin(origin) is None:
            raise ValueError(f"{origin!r} is not a bare origin such as https://app.example")
    return origins


def _decodable_keys(keys: list[Secret]) -> list[Secret]:
    for position, key in enumerate(keys):
        try:
            decode_key(key.get_secret_value())
        except InvalidKey as err:
            raise ValueError(f"key #{position + 1}: {err}") from None
    return keys


Port = Annotated[int, Limits(ge=0, le=65535)]
Positive = Annotated[float, Limits(gt=0)]


# --- the sections ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Section:
    def model_dump(self) -> dict[str, Any]:
        """The settings as plain data (secrets stay masked); named as pydantic named it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Listen(_Section):
    host: str = "127.0.0.1"
    port: Port = 8080


@dataclass(frozen=True, kw_only=True)
class Upstream(_Section):
    url: Annotated[str, Check(_http_url)] = "https://api.sipgate.com"
    connect_timeout: Positive = 5.0
    read_timeout: Positive = 60.0
    max_body_size: Annotated[int, Limits(ge=0)] = 64 * 1024 * 1024
    forward_cookies: bool = False
    allow_insecure_http: bool = False  # plain http to a host that is not loopback
    ca_file: Path | None = None  # PEM bundle trusted for https instead of the system's roots


@dataclass(frozen=True, kw_only=True)
class OAuth2(_Section):
    realm: Annotated[str, Pattern(r"^[A-Za-z0-9._-]+$")] = "sipgate-apps"
    issuer: str | None = None
    discovery: bool = False
    client_id: str | None = None
    client_secret: Secret | None = None
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    scopes: list[str] = field(default_factory=lambda: ["all"])
    pkce: bool = True
    # Below sipgate's 300 s token lifetime, or every request would refresh.
    refresh_skew: Annotated[float, Limits(ge=0, lt=300)] = 30.0
    timeout: Positive = 10.0
    path_prefix: Annotated[str, Pattern(r"^(/[A-Za-z0-9._~-]+)+$")] = "/oauth2"
    idp_logout: bool = False


@dataclass(frozen=True, kw_only=True)
class PersonalAccessToken(_Section):
    token_id: Annotated[str, Pattern(r"^token-[A-Za-z0-9]{6}$")] | None = None
    token: Secret | None = None


@dataclass(frozen=True, kw_only=True)
class Service(_Section):
    # Only these subjects (the IdP's "sub") may become the service identity.
    allowed_subjects: list[str] = field(default_factory=list)
    state_file: Path | None = None  # without it, session.store: redis keeps the identity


@dataclass(frozen=True, kw_only=True)
class Auth(_Section):
    mode: Literal["oauth2", "personal_access_token", "service"] = "oauth2"
    oauth2: OAuth2 = field(default_factory=OAuth2)
    personal_access_token: PersonalAccessToken = field(default_factory=PersonalAccessToken)
    service: Service = field(default_factory=Service)
    # Headless modes (PAT, service) act as the account for anyone who reaches them.
    allowed_client_networks: list[IPNetwork] = field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]
    )


@dataclass(frozen=True, kw_only=True)
class Session(_Section):
    cookie_name: Annotated[str, Pattern(r"^[A-Za-z0-9_-]{1,64}$")] = "sipgate_proxy"
    # None: on, except for a loopback http public_url with an unprefixed cookie_name
    cookie_secure: bool | None = None
    keys: Annotated[list[Secret], Check(_decodable_keys)] = field(default_factory=list)
    store: Literal["cookie", "redis"] = "cookie"
    redis_url: Secret | None = None  # redis://, rediss:// (TLS) or unix://
    redis_lock_ttl: Annotated[float, Limits(gt=0, le=60)] = 5.0
    max_lifetime: Positive = 30 * 24 * 3600
    allowed_origins: Annotated[list[str], Check(_bare_origins)] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Server(_Section):
    max_field_size: Annotated[int, Limits(ge=8190)] = 65536
    shutdown_timeout: Annotated[float, Limits(ge=0)] = 30.0
    workers: Annotated[int, Limits(ge=1, le=64)] = 1
    # With workers > 1: where the supervisor makes the workers' private directory
    # (refresh locks); None: the system's temporary directory ($TMPDIR, else /tmp).
    runtime_dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Management(_Section):
    # A second listener for probes and metrics (e.g. a port only the cluster reaches);
    # when set, /metrics is served there only.
    listen: Listen | None = None


HeaderName = Annotated[str, Pattern(r"^[A-Za-z0-9-]{1,64}$")]


@dataclass(frozen=True, kw_only=True)
class ForwardAuth(_Section):
    # /oauth2/auth hands out the Bearer (or the PAT): off unless a front proxy needs it.
    enabled: bool = False
    # Peers that may ask; a front proxy on the same host is a loopback peer.
    allowed_networks: list[IPNetwork] = field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]
    )
    listener: Literal["main", "management"] = "main"
    # Where the front proxy puts the original request's method and URI; nginx's by default
    # (Traefik: X-Forwarded-Method / X-Forwarded-Uri). No other header is read.
    method_header: HeaderName = "X-Original-Method"
    uri_header: HeaderName = "X-Original-URI"


@dataclass(frozen=True, kw_only=True)
class Log(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


@dataclass(frozen=True, kw_only=True)
class Settings(_Section):
    listen: Listen = field(default_factory=Listen)
    public_url: Annotated[str, Check(_public_origin)] = "http://localhost:8080"
    upstream: Upstream = field(default_factory=Upstream)
    auth: Auth = field(default_factory=Auth)
    session: Session = field(default_factory=Session)
    server: Server = field(default_factory=Server)
    management: Management = field(default_factory=Management)
    forward_auth: ForwardAuth = field(default_factory=ForwardAuth)
    log: Log = field(default_factory=Log)

    @property
    def is_local(self) -> bool:
        """A plain-http loopback public_url: a developer's machine."""
        parts = urlsplit(self.public_url)
        return parts.scheme == "http" and _is_loopback_host(parts.hostname or "")

    @property
    def cookie_secure(self) -> bool:
        if self.session.cookie_secure is None:
            # Browsers keep Secure cookies set over http://localhost, too.
            return not self.is_local or secure_prefix(self.session.cookie_name) is not None
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
    settings = _parse_section(Settings, raw, (), problems)
    if problems or settings is None:
        raise ConfigError([_named_source(p, from_env) for p in problems])
    problems = list(_cross_checks(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _read_yaml(path: Path | None, problems: list[Problem]) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml  # imported here: only a config file needs the parser (0.8 MB, 25 ms)

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
    # strings and the validator converts them, so a secret like "0123" keeps its zero.
    if not value.lstrip().startswith(("[", "{")):
        return value
    words = _plain_words(value)
    if words is not None:
        return words
    import yaml  # imported here: the usual inline list, "[key1, key2]", needs no parser

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.+/=-]+")
# Plain words that YAML 1.1 reads as booleans, null or something else than a string.
_YAML_NOT_STRINGS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "="})


def _plain_words(value: str) -> list[str] | None:
    """``[a, b]`` as YAML reads it when every item is a word YAML surely reads as a
    string (keys, scopes, networks); None for anything else (the caller asks YAML)."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    words = [word.strip() for word in text[1:-1].split(",")]
    if words == [""]:
        return []
    for word in words:
        if _PLAIN_WORD.fullmatch(word) is None or word.lower() in _YAML_NOT_STRINGS:
            return None
        # Numbers and dates start with a digit, sign or dot and contain no "/" or "=".
        if word[0] in "+-.0123456789" and "/" not in word and "=" not in word:
            return None
    return words


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


def _named_source(problem: Problem, from_env: Mapping[str, str]) -> Problem:
    key = problem.key
    source = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
    if source:
        return Problem(key, f"{problem.message} (set by {source})")
    return problem


def _cross_checks(settings: Settings) -> Iterator[Problem]:
    yield from _upstream_checks(settings.upstream)
    auth = settings.auth
    if auth.mode == "personal_access_token":
        pat = auth.personal_access_token
        if pat.token_id is None:
            yield _missing("auth.personal_access_token.token_id", "in personal_access_token mode")
        if pat.token is None:
            yield _missing("auth.personal_access_token.token", "in personal_access_token mode")
    if auth.mode in ("oauth2", "service"):
        yield from _oauth2_checks(settings)
    name = settings.session.cookie_name
    prefix = secure_prefix(name)
    if prefix is not None and not settings.cookie_secure:
        yield Problem(
            "session.cookie_secure",
            f"must be true with session.cookie_name {name!r}: browsers drop {prefix} "
            "cookies that are not Secure",
        )
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
    forward_auth = settings.forward_auth
    if forward_auth.listener == "management" and settings.management.listen is None:
        yield Problem(
            "forward_auth.listener",
            "management needs management.listen (a second listener for probes and metrics)",
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


def _upstream_checks(upstream: Upstream) -> Iterator[Problem]:
    parts = urlsplit(upstream.url)
    loopback = _is_loopback_host(parts.hostname or "")
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


def _oauth2_checks(settings: Settings) -> Iterator[Problem]:
    oauth2, mode = settings.auth.oauth2, settings.auth.mode
    if oauth2.client_id is None:
        yield _missing("auth.oauth2.client_id", f"in {mode} mode")
    if oauth2.client_secret is None:
        yield _missing("auth.oauth2.client_secret", f"in {mode} mode")
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


def _missing(key: str, when: str) -> Problem:
    """A required key that is not set: its variable, and where a secret can come from."""
    section, name = key.rsplit(".", 1)
    files = [f for path, k, f, _ in _SECRET_FILES if ".".join(path) == section and k == name]
    also = f" or {files[0]}" if files else ""
    return Problem(key, f"required {when}: set {env_name(key)} (or {name}{also} in the config)")


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


# --- the validator ----------------------------------------------------------------------
# Conversions follow pydantic's lax mode, which this module used before: environment
# values arrive as strings, so "9100" is a valid port and "off" a valid boolean; YAML
# values keep their type, so a number where a string belongs is a problem.

S = TypeVar("S", bound=_Section)


class _Invalid(ValueError):
    """The value at hand is unusable; the message never quotes a secret."""


class _Reported(Exception):
    """Problems inside the value at hand were already added to the list."""


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _parse_section(
    cls: type[S], data: object, key: tuple[str, ...], problems: list[Problem]
) -> S | None:
    if not isinstance(data, dict):
        problems.append(Problem(_dotted(key), "must be a mapping of settings"))
        return None
    before = len(problems)
    values: dict[str, Any] = {}
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name in names:
        if name not in data:
            continue  # the default applies
        try:
            values[name] = _value(hints[name], data[name], (*key, name), problems)
        except _Invalid as err:
            problems.append(Problem(_dotted((*key, name)), str(err)))
        except _Reported:
            pass
    for name in data:
        if name not in names:
            problems.append(
                Problem(_dotted((*key, str(name))), "unknown setting (check the spelling)")
            )
    return cls(**values) if len(problems) == before else None


def _hints(cls: type[_Section]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _value(kind: Any, value: object, key: tuple[str, ...], problems: list[Problem]) -> Any:
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(value)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        return _with_rules(_value(args[0], value, key, problems), kind.__metadata__)
    if origin in (UnionType, typing.Union):  # only "X | None" is used
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, key, problems)
    if origin is Literal:
        if value not in args:
            raise _Invalid("must be " + _one_of([str(a) for a in args]))
        return value
    if origin is list:
        return _list(args[0], value, key, problems)
    if isinstance(kind, type) and issubclass(kind, _Section):
        section = _parse_section(kind, value, key, problems)
        if section is None:
            raise _Reported
        return section
    raise TypeError(f"no conversion for {kind!r}")  # a mistake in this module


def _list(item: Any, value: object, key: tuple[str, ...], problems: list[Problem]) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid("must be a list")
    before = len(problems)
    items = []
    for position, element in enumerate(value):
        try:
            items.append(_value(item, element, (*key, str(position)), problems))
        except _Invalid as err:
            problems.append(Problem(_dotted((*key, str(position))), str(err)))
        except _Reported:
            pass
    if len(problems) != before:
        raise _Reported
    return items


def _with_rules(value: Any, rules: tuple[object, ...]) -> Any:
    for rule in rules:
        if isinstance(rule, Limits):
            _check_limits(value, rule)
        elif isinstance(rule, Pattern):
            if re.fullmatch(rule.regex, value) is None:  # "$" must not admit a newline
                raise _Invalid(f"must match the pattern {rule.regex!r}")
        elif isinstance(rule, Check):
            try:
                value = rule.check(value)
            except ValueError as err:
                raise _Invalid(str(err)) from None
    return value


def _check_limits(value: float, limits: Limits) -> None:
    if limits.ge is not None and not value >= limits.ge:
        raise _Invalid(f"must be at least {limits.ge:g}")
    if limits.gt is not None and not value > limits.gt:
        raise _Invalid(f"must be greater than {limits.gt:g}")
    if limits.le is not None and not value <= limits.le:
        raise _Invalid(f"must be at most {limits.le:g}")
    if limits.lt is not None and not value < limits.lt:
        raise _Invalid(f"must be less than {limits.lt:g}")


def _to_str(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a string")
    return value


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid("must be a boolean (true or false)")


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise _Invalid("must be a whole number")


def _to_float(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _Invalid("must be a number")


def _to_path(value: object) -> Path:
    return Path(_to_str(value))


def _to_secret(value: object) -> Secret:
    return Secret(_to_str(value))


def _to_network(value: object) -> IPNetwork:
    text = _to_str(value)
    try:
        return ipaddress.ip_network(text)  # strict: host bits set is a mistake
    except ValueError:
        raise _Invalid("must be an IPv4 or IPv6 network such as 10.0.0.0/8") from None


_SCALARS: dict[Any, Callable[[object], Any]] = {
    str: _to_str,
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    Path: _to_path,
    Secret: _to_secret,
    IPNetwork: _to_network,
}


def _one_of(choices: list[str]) -> str:
    quoted = [repr(c) for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _dotted(key: tuple[str, ...]) -> str:
    return ".".join(key) or "(top level)"
