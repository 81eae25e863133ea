"""The command line as a user runs it: exit codes, messages, key generation, a real run."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp

from tests.conftest import PAT_ENV
from tests.support.processes import ROOT, free_port, running


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_PROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_exits_0_when_valid() -> None:
    result = run_cli("--config", "config.example.yaml", "--check-config", env=PAT_ENV)
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


def test_example_config_without_credentials_exits_2_with_a_line_per_missing_key() -> None:
    result = run_cli("--config", "config.example.yaml")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID" in lines[0]
    assert "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN " in lines[1]


def test_invalid_config_names_key_and_hides_secret(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("listen: {port: http}\n")
    result = run_cli("--config", str(file), "--check-config", env=PAT_ENV)
    assert result.returncode == 2
    assert "listen.port" in result.stderr
    assert PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"] not in result.stderr


def test_generate_key_prints_32_random_bytes() -> None:
    first, second = run_cli("generate-key"), run_cli("generate-key")
    assert first.returncode == 0
    assert len(base64.b64decode(first.stdout.strip())) == 32
    assert first.stdout != second.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "sipgate-auth-proxy"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "--check-config" in result.stdout


def project_version() -> str:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    version: str = pyproject["project"]["version"]
    return version


def test_version_is_the_projects() -> None:
    script = Path(sys.executable).parent / "sipgate-auth-proxy"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"sipgate-auth-proxy {project_version()}\n"


async def test_running_proxy_forwards_account_request_with_pat(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
    }
    args = ["-m", "proxy", "--config", "config.example.yaml"]
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(args, proxy_port, env, log=tmp_path / "proxy.log"),
    ):
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{proxy_port}/v2/account") as resp:
                echoed = await resp.json()
    token_id = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"]
    token = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"]
    expected = "Basic " + base64.b64encode(f"{token_id}:{token}".encode()).decode()
    assert echoed["raw_path"] == "/v2/account"
    assert ["Authorization", expected] in echoed["headers"]
    log = (tmp_path / "proxy.log").read_text()
    assert f"sipgate-auth-proxy {project_version()} listening on" in log
    assert token not in log


def test_new_client_help_explains_network() -> None:
    result = run_cli("new-client", "--help")
    assert result.returncode == 0
    # argparse wraps the help text: compare without line breaks
    help_text = " ".join(result.stdout.split())
    assert "--network CIDR the credential works only from this network" in help_text
    assert "auth.allowed_client_networks" in help_text
