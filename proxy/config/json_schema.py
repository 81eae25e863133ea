"""The configuration's JSON Schema (``sipgate-auth-proxy config-schema``), for editors
(the YAML language server) and for the Helm chart's schema to agree with.

msgspec writes it from ``Document``, with each field's description and limits; the types
msgspec does not know are written as strings, as they are written in YAML, and every
``*_file`` secret key (``sources.SECRET_FILES``) is added beside its secret. What the
schema cannot say (the ``Check`` rules, the rules that span keys, what a mode requires)
``--check-config`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from proxy.config.schema import Document
from proxy.config.secret import Secret
from proxy.config.section import IPNetwork
from proxy.config.sources import SECRET_FILES

DIALECT = "https://json-schema.org/draft/2020-12/schema"
DESCRIPTION = (
    "sipgate-auth-proxy's configuration file; every key can also be set from the "
    "environment (SIPGATE_PROXY_SECTION__KEY). --check-config checks what a schema cannot."
)
_STRINGS: dict[Any, dict[str, str]] = {
    Secret: {"type": "string"},
    Path: {"type": "string"},
    IPNetwork: {"type": "string", "description": "an IPv4 or IPv6 network, e.g. 10.0.0.0/8"},
}


def config_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(Document, schema_hook=_string_types)
    for section_path, key, file_key, many in SECRET_FILES:
        properties = _section(schema, section_path)["properties"]
        properties[file_key] = {"description": file_key_description(key, many), "type": "string"}
    _patterns(schema)
    schema["$defs"]["Document"]["description"] = DESCRIPTION
    return {"$schema": DIALECT, "title": "sipgate-auth-proxy configuration", **schema}


def file_key_description(key: str, many: bool) -> str:
    what = "one value per line" if many else "its first line"
    return f"a file holding {key} ({what}), e.g. a mounted secret; instead of {key}"


def _patterns(node: Any) -> None:
    """``\\Z`` (end of text, what msgspec's Python patterns use) as ``$``: editors match
    with ECMAScript regular expressions, where ``$`` without the m flag is the end."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            node["pattern"] = node["pattern"].replace("\\Z", "$")
        for value in node.values():
            _patterns(value)
    elif isinstance(node, list):
        for value in node:
            _patterns(value)


def _string_types(kind: Any) -> dict[str, str]:
    if kind in _STRINGS:
        return dict(_STRINGS[kind])
    raise NotImplementedError  # msgspec then names the type it cannot describe


def _section(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The definition of the section at ``path`` (e.g. ``("auth", "oauth2")``)."""
    definition = _definition(schema, schema)
    for part in path:
        definition = _definition(schema, definition["properties"][part])
    return definition


def _definition(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    name = node["$ref"].rpartition("/")[2]
    found: dict[str, Any] = schema["$defs"][name]
    return found
