"""The shared modes' client list: ``auth.clients`` plus ``auth.clients_file`` (a YAML
list in the same format, or a mapping with a ``clients`` list: a mounted Secret), and
the rules that span the whole list. Read at load and again on every reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from proxy.config.auth_schema import Auth, Client
from proxy.config.convert import section
from proxy.config.problems import ConfigError, Problem
from proxy.config.small_file import MIB, read_small_text
from proxy.config.sources import parse_yaml

SHARED_MODES = ("personal_access_token", "service")
FILE_KEY = "auth.clients_file"
# Read again while the proxy serves: ~5,000 clients, about 1.5 s of parsing.
MAX_FILE_SIZE = MIB


def all_clients(auth: Auth) -> tuple[Client, ...]:
    """The configured clients and those in the file; ConfigError naming every problem."""
    from_file = read_clients_file(auth.clients_file) if auth.clients_file else ()
    clients = (*auth.clients, *from_file)
    problems = list(_list_checks(auth, clients))
    if problems:
        raise ConfigError(problems)
    return clients


def read_clients_file(path: Path) -> tuple[Client, ...]:
    problems: list[Problem] = []
    text = read_small_text(path, FILE_KEY, MAX_FILE_SIZE, problems)
    data = parse_yaml(text, path, FILE_KEY, problems) if text is not None else None
    if isinstance(data, dict) and set(data) == {"clients"}:
        data = data["clients"]
    if data is not None and not isinstance(data, list):
        problems.append(Problem(FILE_KEY, f"{path} must hold a list of clients"))
    clients = [
        section(Client, item, ("auth", "clients_file", str(n)), problems)
        for n, item in enumerate(data if isinstance(data, list) else [])
    ]
    if problems:
        raise ConfigError(problems)
    return tuple(c for c in clients if c is not None)


def _list_checks(auth: Auth, clients: tuple[Client, ...]) -> Iterator[Problem]:
    if clients and auth.mode not in SHARED_MODES:
        yield Problem(
            "auth.clients",
            "clients are for the shared modes (personal_access_token, service); "
            "in oauth2 mode every user has their own login",
        )
    for field in ("name", "token_id"):
        seen: set[str] = set()
        for client in clients:
            value = getattr(client, field)
            if value in seen:
                yield Problem("auth.clients", f"two clients share the {field} {value!r}")
            seen.add(value)
