"""Issue 27: the documentation site builds strictly (a broken link fails it), and README
is a landing page that reaches the demo, the PAT quick start and the configuration
reference in one click each."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = ROOT / ".venv" / "bin" / "mkdocs"
README_LIMIT = 250
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _build(where: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`make docs`'s command in ``where``."""
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    security = (tmp_path / "site" / "security" / "index.html").read_text(encoding="utf-8")
    assert "Who can reach the proxy" in security  # SECURITY.md is included, not copied
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    for name in ("mkdocs.yml", "SECURITY.md", "CHANGELOG.md", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, copy / name)
    with (copy / "docs" / "modes.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the old page](moved-away.md).\n")
    built = _build(copy, tmp_path / "site")
    assert built.returncode != 0
    assert "moved-away.md" in built.stderr


def test_readme_is_a_landing_page_one_click_from_what_a_newcomer_needs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_LIMIT
    links = set(LINK.findall(text))
    local = {link for link in links if "://" not in link}
    assert [link for link in local if not (ROOT / link).exists()] == []
    for needed in (
        "docs/quickstart/demo.md",
        "docs/quickstart/personal-access-token.md",
        "docs/reference/configuration.md",
        "LICENSE",
        "CHANGELOG.md",
    ):
        assert needed in links, needed
    # the two set-up commands and the demo come first
    first_block = text[text.index("```sh") : text.index("```", text.index("```sh") + 5)]
    assert all(command in first_block for command in ("make run", "make test", "make demo"))
