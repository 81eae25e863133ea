"""What a serving process loads: only what its mode needs, so every worker stays small.

The configuration is validated without pydantic (about 10 MB of RSS per worker) and read without
a YAML parser when it comes from the environment alone; the Redis client, PyJWT and the
service-mode modules load only in the modes that use them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxy import config
from proxy.config.sources import parse_env_value
from proxy.crypto.keys import generate_key
from tests.support.processes import ROOT, free_port

# Runs in a fresh interpreter: serve as `python -m proxy` does, and once /readyz answers
# 200, print the names of every module loaded, then stop the way Kubernetes does.
SERVE_AND_LIST_MODULES = """
import json, os, signal, socket, sys, threading, time

def report_when_ready(port):
    request = b"GET /readyz HTTP/1.1\\r\\nHost: proxy\\r\\nConnection: close\\r\\n\\r\\n"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(request)
                if conn.recv(16).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        time.sleep(0.02)
    print(json.dumps(sorted(list(sys.modules))), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_when_ready, args=(int(sys.argv[1]),), daemon=True).start()
from proxy.cli import main
sys.exit(main([]))
"""

# Loaded by no serving process configured like the benchmark (environment only, inline
# key list, cookie sessions, one worker).
NOT_LOADED = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "multiprocessing",
    "jwt",
    "redis",
    "proxy.session.redis_backend",
    "proxy.refresh.redis",
    "proxy.auth.service_identity",
    "proxy.auth.identity_state",
    "proxy.auth.service",
    "proxy.login.service_routes",
    # tracing is off unless tracing.otlp_endpoint is set
    "opentelemetry",
    "google.protobuf",
    "proxy.tracing",
)

MODES = {
    "oauth2": {
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/auth/realms/test",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "client",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "client-secret",
    },
    "personal_access_token": {
        "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID": "token-AB12cd",
        "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN": "pat-secret",
    },
}


def serving_modules(mode: str, extra: dict[str, str] | None = None) -> set[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_PROXY_")}
    env |= MODES[mode] | {
        "PYTHONPATH": str(ROOT),
        "SIPGATE_PROXY_AUTH__MODE": mode,
        "SIPGATE_PROXY_LISTEN__PORT": str(port),
        "SIPGATE_PROXY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SIPGATE_PROXY_UPSTREAM__URL": "http://127.0.0.1:9",
        "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}, {generate_key()}]",
        "SIPGATE_PROXY_SERVER__WORKERS": "1",
        "SIPGATE_PROXY_LOG__LEVEL": "warning",
        **(extra or {}),
    }
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return set(modules)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_serving_loads_no_module_its_mode_does_not_use(mode: str) -> None:
    modules = serving_modules(mode)
    assert {"proxy.app", "proxy.server", "aiohttp.web"} <= modules  # it did serve
    unexpected = sorted(
        name for name in modules if any(name == n or name.startswith(n + ".") for n in NOT_LOADED)
    )
    assert unexpected == []


def test_tracing_loads_opentelemetry_when_an_endpoint_is_set() -> None:
    """The other side of NOT_LOADED's "opentelemetry": the check sees it when it is there."""
    endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"  # nobody listens: no matter
    modules = serving_modules(
        "personal_access_token", {"SIPGATE_PROXY_TRACING__OTLP_ENDPOINT": endpoint}
    )
    assert {"proxy.tracing", "opentelemetry.sdk.trace"} <= modules


# --- inline lists from the environment are read as YAML reads them, without YAML --------

KEY = generate_key()


@pytest.mark.parametrize(
    "value",
    [
        f"[{KEY}]",
        f"[{KEY}, {generate_key()}]",
        "[all, openid]",
        "[10.0.0.0/8, 192.168.0.0/16]",
        "[]",
        "[ ]",
        "[a=b, ./x, -abc/, +ab/=, _x]",
        # YAML reads these as something else than strings: it decides.
        "[123, 1_000, 0x1f, 1e3, 1.5, .inf]",
        "[2001-01-01]",
        "[Yes, no, TRUE, off, null, NULL]",
        "[yEs, y, o]",
        "[=]",
        "[a,]",
        "[https://app.example, http://127.0.0.1:3000]",
        "[10.0.0.0/8, ::1/128]",
        "['quoted', \"double\"]",
        "{a: b}",
        "{a]",
    ],
)
def test_inline_values_read_as_yaml_reads_them(value: str) -> None:
    try:
        expected = yaml.safe_load(value)
    except yaml.YAMLError:
        expected = value  # not YAML: kept as written, validation names the key
    assert parse_env_value(value) == expected


# --- the validator that took pydantic's place -----------------------------------------

OAUTH = {
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "client",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "client-secret",
}


def problems(path: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, {**OAUTH, **(env or {})})
    return [str(p) for p in caught.value.problems]


def test_environment_strings_convert_to_the_settings_types() -> None:
    settings = config.load(
        None,
        {
            **OAUTH,
            "SIPGATE_PROXY_LISTEN__PORT": " 9100 ",
            "SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT": "2.5",
            "SIPGATE_PROXY_UPSTREAM__FORWARD_COOKIES": "TRUE",
            "SIPGATE_PROXY_AUTH__OAUTH2__PKCE": "off",
            "SIPGATE_PROXY_AUTH__ALLOWED_CLIENT_NETWORKS": "[10.0.0.0/8]",
            "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": "/var/lib/proxy/state",
            "SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT": "9090",
        },
    )
    assert settings.listen.port == 9100
    assert settings.upstream.read_timeout == 2.5
    assert settings.upstream.forward_cookies is True
    assert settings.auth.oauth2.pkce is False
    assert [str(n) for n in settings.auth.allowed_client_networks] == ["10.0.0.0/8"]
    assert settings.auth.service.state_file == Path("/var/lib/proxy/state")
    assert settings.management.listen == config.Listen(host="127.0.0.1", port=9090)
    assert settings.auth.oauth2.client_secret == config.Secret("client-secret")


def test_file_values_keep_their_yaml_types(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "listen: 5\n"
        "upstream: {connect_timeout: 0, forward_cookies: maybe, max_body_size: 1.5}\n"
        "auth:\n  mode: kerberos\n  oauth2: {issuer: 123, scopes: all}\n"
        "  allowed_client_networks: [10.0.0.0/8, 10.0.0.1/8]\n"
    )
    assert problems(file) == [
        "listen: must be a mapping of settings",
        "upstream.connect_timeout: must be greater than 0",
        "upstream.max_body_size: must be a whole number",
        "upstream.forward_cookies: must be a boolean (true or false)",
        "auth.mode: must be 'oauth2', 'personal_access_token' or 'service'",
        "auth.oauth2.issuer: must be a string",
        "auth.oauth2.scopes: must be a list",
        "auth.allowed_client_networks.1: must be an IPv4 or IPv6 network such as 10.0.0.0/8",
    ]


def test_settings_are_frozen() -> None:
    settings = config.load(None, OAUTH)
    with pytest.raises(AttributeError):
        settings.listen.port = 1  # type: ignore[misc]
