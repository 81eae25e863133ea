"""Command line: run the proxy, check a configuration, make a session key or a client
credential, or look up sipgate's scopes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy import __version__, config
from proxy.crypto import keys
from proxy.ops import log

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate-key":
        print(keys.generate_key())
        return 0
    if args.command == "new-client":
        return _new_client(args.name, args.allow, args.network, args.scope)
    if args.command == "scopes":
        return _scopes(args.scope, args.operation)
    if args.command == "config-schema":
        return _config_schema()
    try:
        settings = config.load(args.config)
    except config.ConfigError as err:
        for problem in err.problems:
            print(f"sipgate-auth-proxy: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"configuration ok ({settings.auth.mode} mode)")
        return 0
    if args.command == "end-sessions":
        return _end_sessions(settings, args.subject)
    log.setup(settings.log.level, settings.log.format)
    from proxy import server  # imported late: --check-config needs no aiohttp server

    return server.run(settings, load=lambda: config.load(args.config))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipgate-auth-proxy",
        description="Authenticating reverse proxy in front of the sipgate REST API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("generate-key", help="print a new random session key (base64)")
    end = commands.add_parser(
        "end-sessions", help="end every session of one user (Redis store): a stolen cookie dies"
    )
    end.add_argument("subject", help="the user's subject (sub), as /oauth2/userinfo shows it")
    client = commands.add_parser(
        "new-client",
        help="issue an app its own credential for a shared mode: prints the auth.clients "
        "entry (stdout) and, once, the credential to give the app (stderr)",
    )
    client.add_argument("name", help="[a-z0-9-]{1,40}: the app's name in logs and metrics")
    client.add_argument(
        "--allow", action="append", default=[], metavar="RULE", help='e.g. "GET /v2/history/**"'
    )
    client.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="CIDR",
        help="the credential works only from this network, e.g. 10.1.0.0/16; repeat for "
        "several (the entry's networks). Without it, from anywhere "
        "auth.allowed_client_networks lets a client in; others get 403 client_network_refused",
    )
    client.add_argument(
        "--scope", action="append", default=[], metavar="SCOPE", help="e.g. history:read"
    )
    scopes = commands.add_parser(
        "scopes",
        help="sipgate's scopes and how many operations each grants; with SCOPE, its "
        "operations; with --operation, which operation a request is and what grants it",
    )
    scopes.add_argument("scope", nargs="?", help="e.g. history:read")
    scopes.add_argument("--operation", metavar='"METHOD /path"', help='"PUT /v2/calls/1/muted"')
    commands.add_parser(
        "config-schema",
        help="print the configuration's JSON Schema (for editors: yaml-language-server)",
    )
    return parser


def _config_schema() -> int:
    import json

    from proxy.config.json_schema import config_schema

    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


def _new_client(name: str, allow: list[str], networks: list[str], scopes: list[str]) -> int:
    from proxy.config.client_credentials import ClientProblem, new_client

    try:
        entry, token_id, token = new_client(name, allow, networks, scopes)
    except ClientProblem as err:
        print(f"sipgate-auth-proxy: new-client: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print(entry, end="")
    print(
        f"give the app this credential (shown once, stored nowhere):\n"
        f"  token_id: {token_id}\n  token:    {token}",
        file=sys.stderr,
    )
    return 0


def _scopes(scope: str | None, operation: str | None) -> int:
    from proxy.auth.clients.paths import canonical_segments
    from proxy.config.rules import known_scope
    from proxy.sipgate import listing

    if operation is None:
        try:
            lines = listing.scope_operations(known_scope(scope)) if scope else None
        except ValueError as err:
            print(f"sipgate-auth-proxy: scopes: {scope}: {err}", file=sys.stderr)
            return EXIT_CONFIG
        print("\n".join(lines if lines is not None else listing.scope_counts()))
        return 0
    method, _, path = operation.strip().partition(" ")
    segments = canonical_segments(path.strip())
    if segments is None:
        print("sipgate-auth-proxy: scopes: not a path the client gate admits", file=sys.stderr)
        return EXIT_CONFIG
    line = listing.operation_line(method, segments)
    print(line or "not an operation of sipgate's table: no scope grants it, an allow rule may")
    return 0 if line else 1


def _end_sessions(settings: config.Settings, subject: str) -> int:
    store = settings.store
    if not isinstance(store, config.RedisStore):
        print(
            "sipgate-auth-proxy: end-sessions needs session.store: redis (cookie sessions "
            "live only in browsers; rotate session.keys to end them all)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    import asyncio

    from proxy.crypto.sealing import KeyRing
    from proxy.errors import StoreUnavailable
    from proxy.session.redis_backend import RedisBackend
    from proxy.session.redis_connection import connect

    async def end() -> int:
        redis = connect(store)
        keys = KeyRing(keys_from(settings))
        sessions = RedisBackend(redis.client, keys, settings.session.cookie_name)
        try:
            return await sessions.end_subject(subject)
        finally:
            await redis.aclose()

    try:
        ended = asyncio.run(end())
    except StoreUnavailable:
        print("sipgate-auth-proxy: Redis is not reachable", file=sys.stderr)
        return 1
    print(f"ended {ended} session(s)")
    return 0


def keys_from(settings: config.Settings) -> list[bytes]:
    return [keys.decode_key(k.get_secret_value()) for k in settings.session.keys] or [
        keys.decode_key(keys.generate_key())  # no keys: sessions are found by id alone
    ]


if __name__ == "__main__":
    sys.exit(main())
