"""The tracing section: off by default, an OTLP/HTTP URL when on, the SDK required then,
collector headers kept secret."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from proxy import config
from proxy.config.tracing import SDK_MODULES
from tests.test_config import PAT, problems

ENDPOINT = "SIPGATE_PROXY_TRACING__OTLP_ENDPOINT"


def test_endpoint_written_as_null_is_off(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tracing: {otlp_endpoint: null}\n")
    assert not config.load(path, PAT).tracing.enabled


def test_tracing_is_off_by_default() -> None:
    tracing = config.load(None, PAT).tracing
    assert not tracing.enabled
    assert (tracing.service_name, tracing.sample_ratio, tracing.headers) == (
        "sipgate-auth-proxy",
        1.0,
        {},
    )


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://collector.example/", "https://collector.example/v1/traces"),
        ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"),
        ("https://otlp.example/custom/path", "https://otlp.example/custom/path"),
    ],
)
def test_bare_collector_origin_gets_the_traces_path(given: str, used: str) -> None:
    assert config.load(None, {**PAT, ENDPOINT: given}).tracing.otlp_endpoint == used


@pytest.mark.parametrize(
    "endpoint",
    ["grpc://collector:4317", "collector:4318", "http://user:pw@collector:4318", "http://c/?a=1"],
)
def test_endpoint_that_is_no_http_url_is_refused(endpoint: str) -> None:
    (problem,) = problems(env={**PAT, ENDPOINT: endpoint})
    assert problem.startswith("tracing.otlp_endpoint: must ")
    assert f"set by {ENDPOINT}" in problem


def test_endpoint_without_the_sdk_names_the_key_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SDK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    (problem,) = problems(env={**PAT, ENDPOINT: "http://127.0.0.1:4318"})
    assert problem.startswith("tracing.otlp_endpoint: needs the OpenTelemetry SDK")
    assert "pip install 'sipgate-auth-proxy[tracing]'" in problem


def test_collector_headers_are_secret_and_set_from_the_environment() -> None:
    env = {
        **PAT,
        ENDPOINT: "https://collector.example",
        "SIPGATE_PROXY_TRACING__HEADERS": "{x-api-key: collector-secret-123}",
    }
    tracing = config.load(None, env).tracing
    assert tracing.headers["x-api-key"].get_secret_value() == "collector-secret-123"
    assert "collector-secret-123" not in repr(tracing) + str(tracing.model_dump())


def test_collector_headers_in_clear_to_a_remote_collector_are_refused() -> None:
    env = {
        **PAT,
        ENDPOINT: "http://collector:4318",
        "SIPGATE_PROXY_TRACING__HEADERS": "{x-api-key: collector-secret-123}",
    }
    (problem,) = problems(env=env)
    assert problem.startswith("tracing.headers: would travel in clear")
    assert "collector-secret-123" not in problem


@pytest.mark.parametrize(("key", "value"), [("SAMPLE_RATIO", "1.5"), ("SERVICE_NAME", "x" * 129)])
def test_sample_ratio_and_service_name_are_checked(key: str, value: str) -> None:
    (problem,) = problems(env={**PAT, f"SIPGATE_PROXY_TRACING__{key}": value})
    assert problem.startswith(f"tracing.{key.lower()}: ")
