"""``session.store: redis`` resolved: one server, a Sentinel-watched primary, or a Cluster.

A key that does not apply to the chosen ``session.redis_mode`` is a problem, not
silently ignored: a sentinel password set on a standalone store is a mistake to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from proxy.config.checks import upstream_ca_problem
from proxy.config.problems import Problem
from proxy.config.secret import Secret
from proxy.config.session_schema import Session
from proxy.config.sources import env_name


@dataclass(frozen=True)
class RedisServer:
    """A server, or in a cluster the seed node: the URL carries credentials and TLS."""

    url: Secret  # redis://, rediss:// (TLS) or unix://
    cluster: bool
    ca_file: Path | None = None


@dataclass(frozen=True)
class RedisAuth:
    username: str | None
    password: Secret | None
    tls: bool
    ca_file: Path | None


@dataclass(frozen=True)
class RedisSentinels:
    addresses: tuple[tuple[str, int], ...]
    master: str  # the name the sentinels monitor it under
    sentinels: RedisAuth  # to ask the sentinels
    nodes: RedisAuth  # to talk to the primary they name


@dataclass(frozen=True)
class RedisStore:
    where: RedisServer | RedisSentinels
    lock_ttl: float  # seconds a refresh holds the cross-replica lock before renewing it


_SENTINEL_ONLY = (
    "redis_sentinels",
    "redis_sentinel_master",
    "redis_sentinel_username",
    "redis_sentinel_password",
    "redis_sentinel_tls",
    "redis_sentinel_tls_ca_file",
    "redis_username",
    "redis_password",
    "redis_tls",
)


def resolve_redis(session: Session, problems: list[Problem]) -> RedisStore | None:
    before = len(problems)
    problems.extend(_unused(session))
    if session.redis_mode == "sentinel":
        where: RedisServer | RedisSentinels | None = _sentinels(session, problems)
    else:
        where = _server(session, problems)
    if where is None or len(problems) > before:
        return None
    return RedisStore(where, session.redis_lock_ttl)


def _unused(session: Session) -> list[Problem]:
    mode = session.redis_mode
    if mode == "sentinel":
        if session.redis_url is None:
            return []
        why = "not used with redis_mode: sentinel (the sentinels name the primary)"
        return [Problem("session.redis_url", why)]
    why = f"only with redis_mode: sentinel (with {mode}, redis_url carries credentials and TLS)"
    return [Problem(f"session.{key}", why) for key in _SENTINEL_ONLY if getattr(session, key)]


def _server(session: Session, problems: list[Problem]) -> RedisServer | None:
    url, cluster = session.redis_url, session.redis_mode == "cluster"
    if url is None:
        seed = " (any node of the cluster)" if cluster else ""
        problems.append(
            Problem(
                "session.redis_url",
                f"required with store: redis{seed} (set {env_name('session.redis_url')} or "
                "session.redis_url_file)",
            )
        )
        return None
    parts = urlsplit(url.get_secret_value())
    problem = _url_problem(parts.scheme, parts.path, cluster)
    if problem is not None:
        problems.append(Problem("session.redis_url", problem))
        return None
    ca_file = _ca_file(
        session.redis_tls_ca_file,
        parts.scheme == "rediss",
        "session.redis_tls_ca_file",
        "a rediss:// URL",
        problems,
    )
    return RedisServer(url, cluster, ca_file)


def _url_problem(scheme: str, path: str, cluster: bool) -> str | None:
    if not cluster:
        if scheme in ("redis", "rediss", "unix"):
            return None
        return "must be a redis://, rediss:// or unix:// URL"
    if scheme not in ("redis", "rediss"):
        return "must be a redis:// or rediss:// URL of a cluster node"
    if path not in ("", "/", "/0"):
        return "a cluster has only database 0"
    return None


def _sentinels(session: Session, problems: list[Problem]) -> RedisSentinels | None:
    addresses = tuple(_host_port(address) for address in session.redis_sentinels)
    if not addresses:
        problems.append(
            Problem(
                "session.redis_sentinels",
                "required with redis_mode: sentinel: the sentinels as host:port "
                f"(set {env_name('session.redis_sentinels')}, e.g. [sentinel-0:26379])",
            )
        )
    master = session.redis_sentinel_master
    if not master:
        problems.append(
            Problem(
                "session.redis_sentinel_master",
                "required with redis_mode: sentinel: the name the sentinels monitor the "
                f"primary under (set {env_name('session.redis_sentinel_master')})",
            )
        )
    s = session
    sentinels = _auth(
        s.redis_sentinel_username, s.redis_sentinel_password, s.redis_sentinel_tls,
        s.redis_sentinel_tls_ca_file, "redis_sentinel_tls", problems,
    )  # fmt: skip
    nodes = _auth(
        s.redis_username, s.redis_password, s.redis_tls, s.redis_tls_ca_file, "redis_tls",
        problems,
    )  # fmt: skip
    if not addresses or not master:
        return None
    return RedisSentinels(addresses, master, sentinels, nodes)


def _auth(
    username: str | None,
    password: Secret | None,
    tls: bool,
    ca_file: Path | None,
    tls_key: str,
    problems: list[Problem],
) -> RedisAuth:
    """``tls_key``: the TLS switch's name; its CA file is ``<tls_key>_ca_file``."""
    ca = _ca_file(ca_file, tls, f"session.{tls_key}_ca_file", f"{tls_key}: true", problems)
    return RedisAuth(username, password, tls, ca)


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(f"//{address}")  # the schema checked it is host:port
    return parts.hostname or "", parts.port or 0


def _ca_file(
    path: Path | None, tls: bool, key: str, needs: str, problems: list[Problem]
) -> Path | None:
    if path is None:
        return None
    problem = upstream_ca_problem(path) if tls else f"only with {needs}"
    if problem is not None:
        problems.append(Problem(key, problem))
    return path
