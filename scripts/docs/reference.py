"""The generated reference pages in docs/reference/ and the committed JSON Schema, from
the code: ``python -m scripts.docs.reference`` (``make docs-reference``) writes them,
``--check`` names the ones that differ (tests/test_docs_reference.py runs it).

- configuration.md: every key of ``proxy/config`` (scripts/docs/config_reference.py);
- errors.md: every class of ``proxy/errors.py``'s tree;
- metrics.md: every series of ``proxy/ops/metrics.py``'s registry;
- docs/config.schema.json: what ``sipgate-auth-proxy config-schema`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from proxy.config.json_schema import config_schema
from scripts.docs import config_reference
from scripts.docs.errors_metrics import errors_page, metrics_page

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "make docs-reference"
MARK = (
    "<!-- Generated from the code by scripts/docs/reference.py: edit the code, then run "
    f"`{REGENERATE}`. -->"
)


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def configuration_page() -> str:
    keys = config_reference.keys()
    lines = [
        "# Configuration reference",
        "",
        MARK,
        "",
        f"All {len(keys)} keys of the configuration file, section by section. Every key "
        "can also be set from the environment: `SIPGATE_PROXY_` and the key's path in "
        "upper case, joined by `__` (the variable is under each key). The environment wins "
        "over the file. Lists and mappings are written inline in a variable "
        "(`SIPGATE_PROXY_AUTH__OAUTH2__SCOPES='[all, openid]'`); entries of a list "
        "(`auth.clients[]`) are set with the whole list. Each secret has a `*_file` key "
        "that reads it from a file (a mounted secret).",
        "",
        "`sipgate-auth-proxy --config FILE --check-config` checks a file without starting "
        "(exit 0 ok, 2 invalid), with every rule that spans keys. Editors complete and "
        "check keys with the [JSON Schema](../config.schema.json) "
        "(`sipgate-auth-proxy config-schema` prints it; `config.example.yaml` names it for "
        "the YAML language server).",
        "",
    ]
    for name, doc in config_reference.sections():
        rows = [k for k in keys if k.dotted.rpartition(".")[0] == name]
        if not rows:
            continue
        depth = 2 if name.count(".") == 0 else 3
        lines += [f"{'#' * depth} {'`' + name + '`' if name else 'Top level'}", "", doc, ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        lines += [_row(k) for k in rows]
        lines.append("")
    return "\n".join(lines)


def _row(key: config_reference.Key) -> str:
    name = f"`{key.dotted}`" + (f"<br>`{key.env}`" if key.env else "")
    kind = "<br>".join([key.kind, *key.constraints])
    return "| " + " | ".join(_cell(c) for c in (name, kind, key.default, key.description)) + " |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


PAGES: dict[str, Callable[[], str]] = {
    "reference/configuration.md": configuration_page,
    "reference/errors.md": lambda: errors_page(MARK),
    "reference/metrics.md": lambda: metrics_page(MARK),
    "config.schema.json": schema_text,
}


def stale() -> Iterator[str]:
    """The generated files whose committed text differs from what the code makes."""
    for name, make in PAGES.items():
        path = DOCS / name
        if not path.is_file() or path.read_text(encoding="utf-8") != make():
            yield f"docs/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only name what differs")
    args = parser.parse_args(argv)
    if args.check:
        differ = list(stale())
        for name in differ:
            print(f"{name} differs from the code: run {REGENERATE}", file=sys.stderr)
        return 1 if differ else 0
    for name, make in PAGES.items():
        path = DOCS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(), encoding="utf-8")
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
