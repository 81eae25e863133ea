"""Issue 27: the references in docs/ are generated from the code and cannot drift from it.

The configuration, error and metric pages and docs/config.schema.json are what
scripts/docs/reference.py makes from proxy/config, proxy/errors.py and the metrics
registry; these tests fail when a committed page differs ("run make docs-reference"), when
a key, code or series is missing from its page or the page names one the code lacks, and
when the Helm chart's schema for ``config`` says something the proxy's schema does not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest
import yaml

from proxy.config.section import Section
from scripts.docs import config_reference
from scripts.docs.errors_metrics import tree
from scripts.docs.reference import DOCS, REGENERATE, stale
from tests.conftest import ProxyFactory

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = DOCS / "config.schema.json"
CHART_SCHEMA = ROOT / "helm" / "sipgate-auth-proxy" / "values.schema.json"
KEY_CELL = re.compile(r"^\| `([^`]+)`", re.MULTILINE)
SCHEMA_LINE = "# yaml-language-server: $schema=docs/config.schema.json"


def _page(name: str) -> str:
    return (DOCS / "reference" / name).read_text(encoding="utf-8")


def test_the_committed_references_are_what_the_code_makes() -> None:
    assert list(stale()) == [], f"run {REGENERATE}"


def _schema_keys(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> set[str]:
    """Every leaf key of the JSON Schema, dotted as the reference writes them."""
    node = _resolve(schema, node)
    found: set[str] = set()
    for name, child in node.get("properties", {}).items():
        target = _resolve(schema, child)
        if "properties" in target:
            found |= _schema_keys(schema, target, f"{prefix}{name}.")
        elif "properties" in _resolve(schema, target.get("items", {})):
            found |= _schema_keys(schema, target["items"], f"{prefix}{name}[].")
        else:
            found.add(prefix + name)
    return found


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The node itself, or what its $ref (or an optional's one non-null branch) names."""
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rpartition("/")[2]])
    branches = [b for b in node.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1 and "$ref" in branches[0]:
        return _resolve(schema, branches[0])
    return node


def test_the_configuration_page_names_every_key_of_the_schema_and_no_other() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    on_page = KEY_CELL.findall(_page("configuration.md"))
    assert len(on_page) == len(set(on_page))
    assert set(on_page) == _schema_keys(schema, schema)
    # the keys this issue names, and the secret files next to their secrets
    for key in (
        "webhooks.forward_to",
        "forward_auth.secret_file",
        "server.max_header_bytes",
        "server.header_timeout",
        "server.keepalive_timeout",
        "server.max_connections",
        "tracing.trust_incoming",
        "auth.clients[].scopes",
        "auth.oauth2.enforce_scopes",
        "session.keys_file",
        "session.redis_sentinel_password_file",
    ):
        assert key in on_page
    assert "`SIPGATE_PROXY_SERVER__MAX_HEADER_BYTES`" in _page("configuration.md")


def test_every_key_has_a_description_in_the_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    undescribed = [
        f"{section}.{name}"
        for section, definition in schema["$defs"].items()
        for name, prop in definition["properties"].items()
        if "$ref" not in prop and not prop.get("description")
    ]
    assert undescribed == []


def test_a_key_without_a_description_stops_the_generator() -> None:
    class Bare(Section, frozen=True, kw_only=True):
        """A section with one undescribed key."""

        described: Annotated[int, msgspec.Meta(description="said")] = 1
        silent: int = 2

    with pytest.raises(config_reference.Undescribed, match="silent"):
        config_reference.keys(Bare)


def test_the_error_page_has_every_code_of_the_tree_with_what_to_do() -> None:
    rows = re.findall(
        r"^\| (?:&nbsp;)*`(\w+)` \| (\d{3}) \| ([^|]+) \| ([^|]+) \|$",
        _page("errors.md"),
        re.MULTILINE,
    )
    classes = [cls for _, cls in tree()]
    assert [(code, int(status)) for code, status, _, _ in rows] == [
        (cls.code, cls.status) for cls in classes
    ]
    assert all(what.strip() for _, _, _, what in rows)
    assert {"client_not_allowed", "insufficient_scope", "app_timeout"} <= {r[0] for r in rows}


async def test_the_metrics_page_lists_every_series_a_running_proxy_exposes(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/metrics")) as resp:
            assert resp.status == 200
            exposed = await resp.text()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposed, re.MULTILINE))
    page = _page("metrics.md")
    listed = dict(re.findall(r"^\| `(\w+)`[^|]* \| (\w+) \|", page, re.MULTILINE))
    # the text format shows an info as a gauge; *_created is prometheus_client's own
    # series beside an unlabelled counter or histogram (the page says so)
    as_exposed = {name: kind.replace("info", "gauge") for name, kind in listed.items()}
    created = {n for n in families if n.endswith("_created")}
    assert as_exposed == {n: k for n, k in families.items() if n not in created}
    assert "_created" in page
    assert "| `sipgate_proxy_policy_denied_total` | counter | `client`, `reason` |" in page


def test_config_schema_prints_the_committed_schema() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "proxy", "config-schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    ).stdout
    assert printed == SCHEMA_FILE.read_text(encoding="utf-8")
    schema = json.loads(printed)
    oauth2 = schema["$defs"]["OAuth2"]["properties"]
    assert oauth2["client_secret"]["anyOf"][0] == {"type": "string"}  # a secret: a string
    assert oauth2["client_secret_file"]["type"] == "string"
    assert "\\Z" not in printed  # editors use ECMAScript patterns: $ ends the text


def test_config_example_names_the_schema_and_passes_it() -> None:
    example = ROOT / "config.example.yaml"
    first = example.read_text(encoding="utf-8").splitlines()[0]
    assert first == SCHEMA_LINE
    target = (example.parent / first.partition("$schema=")[2]).resolve()
    assert target == SCHEMA_FILE
    validator = jsonschema.Draft202012Validator(json.loads(target.read_text(encoding="utf-8")))
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(document)] == []
    # and it does check: a misspelt key, a wrong type, a value outside a Literal
    for wrong in ({"listen": {"prot": 1}}, {"listen": {"port": "x"}}, {"log": {"level": "loud"}}):
        assert list(validator.iter_errors(wrong)), wrong


def _types(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node admits (an integer is a number too); empty: any."""
    if "$ref" in node:
        return _types(schema, _resolve(schema, node))
    if "enum" in node:
        found = {type(v).__name__.replace("str", "string") for v in node["enum"]}
    else:
        kinds = node.get("type", [])
        found = set(kinds if isinstance(kinds, list) else [kinds])
    for branch in node.get("anyOf", []):
        found |= _types(schema, branch)
    return found | ({"integer"} if "number" in found else set())


BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _disagreements(
    schema: dict[str, Any], chart: dict[str, Any], proxy: dict[str, Any], path: str
) -> list[str]:
    problems: list[str] = []
    proxy = _resolve(schema, proxy)
    for name, chart_child in chart.get("properties", {}).items():
        key = f"{path}{name}"
        if name not in proxy.get("properties", {}):
            problems.append(f"{key}: not a key of the proxy's schema")
            continue
        problems += _node_disagreements(schema, chart_child, proxy["properties"][name], key)
    return problems


def _node_disagreements(
    schema: dict[str, Any], chart: dict[str, Any], proxy: dict[str, Any], key: str
) -> list[str]:
    problems: list[str] = []
    target = _resolve(schema, proxy)
    plain = [b for b in proxy.get("anyOf", []) if b.get("type") != "null"]
    inner = plain[0] if len(plain) == 1 and "$ref" not in plain[0] else target
    chart_types = (
        set(chart["type"])
        if isinstance(chart.get("type"), list)
        else ({chart["type"]} if "type" in chart else set())
    )
    admitted = _types(schema, proxy)
    if chart_types - admitted:
        problems.append(f"{key}: the chart admits {sorted(chart_types - admitted)}")
    if "enum" in chart and "enum" in inner and set(chart["enum"]) != set(inner["enum"]):
        problems.append(f"{key}: the chart's choices {chart['enum']} differ")
    problems += [
        f"{key}: {bound} {chart[bound]} in the chart, {inner[bound]} in the proxy"
        for bound in BOUNDS
        if bound in chart and bound in inner and chart[bound] != inner[bound]
    ]
    if "properties" in chart:
        problems += _disagreements(schema, chart, target, key + ".")
    if isinstance(chart.get("items"), dict) and "items" in inner:
        problems += _node_disagreements(schema, chart["items"], inner["items"], key + "[]")
    return problems


def test_the_charts_config_schema_agrees_with_the_proxys() -> None:
    """The chart's ``values.schema.json`` ``config`` part agrees with the proxy's schema
    when, for every key the chart's part names (through ``properties`` and ``items``, at
    any depth):

    - the key exists at the same path in the proxy's schema (``*_file`` keys included);
    - every JSON type the chart admits there the proxy admits too (an integer is a
      number; the chart's ``null`` needs a key the proxy lets be unset);
    - a chart ``enum`` has exactly the proxy's choices where the proxy has a Literal
      (where a ``Check`` rule decides, as for scope names, the chart may list the values:
      tests/test_scopes.py holds that list to sipgate's);
    - a bound both state (minimum, maximum, exclusive ones) is the same number.

    The chart may say less (no type for a key it refuses, no bound, no pattern: its
    patterns admit the empty string that stands for "unset" in values.yaml) and may leave
    keys out; the proxy's loader checks the rendered configuration (test_packaging)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    chart = json.loads(CHART_SCHEMA.read_text(encoding="utf-8"))["properties"]["config"]
    assert _disagreements(schema, chart, schema, "config.") == []
    # the comparison does compare: a key and a type the proxy does not have are named
    wrong = {
        "properties": {"listen": {"properties": {"prot": {}}}, "public_url": {"type": "integer"}}
    }
    assert sorted(_disagreements(schema, wrong, schema, "")) == [
        "listen.prot: not a key of the proxy's schema",
        "public_url: the chart admits ['integer']",
    ]
