"""Command line: run the proxy, check a configuration, or make a session key."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy import config, keys, log

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate-key":
        print(keys.generate_key())
        return 0
    try:
        settings = config.load(args.config)
    except config.ConfigError as err:
        for problem in err.problems:
            print(f"sipgate-auth-proxy: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"configuration ok ({settings.auth.mode} mode)")
        return 0
    log.setup(settings.log.level, settings.log.format)
    from proxy import server  # imported late: --check-config needs no aiohttp server

    return server.run(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipgate-auth-proxy",
        description="Authenticating reverse proxy in front of the sipgate REST API.",
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("generate-key", help="print a new random session key (base64)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
