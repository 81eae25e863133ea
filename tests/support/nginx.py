"""Debian's nginx in front of the proxy's forward-auth endpoint, configured with the very
text the documentation shows: the recipe is read from docs/deployment/forward-auth.md, so
the two cannot drift apart."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import wait_for_port
from tests.support.secrets import WATCH

NGINX = "/usr/sbin/nginx"
RECIPES = Path(__file__).resolve().parents[2] / "docs" / "deployment" / "forward-auth.md"
# The addresses the recipes use, replaced by the test's own.
RECIPE_UPSTREAM = "https://api.sipgate.com"
RECIPE_PROXY = "http://127.0.0.1:8080"
# The front proxy's secret (forward_auth.secret) in the recipes, and the tests' own.
RECIPE_SECRET = "REPLACE-WITH-forward_auth.secret"
FRONT_SECRET = "front-proxy-secret-for-the-tests-0123456789abcdef"
WATCH.add(FRONT_SECRET)  # no log line of the suite may hold it (test_log_hygiene)


def recipe_block(language: str, nth: int = 0) -> str:
    """The ``nth`` fenced block in ``language`` of the forward-auth page (the recipes were
    README's before issue 27)."""
    text = RECIPES.read_text(encoding="utf-8")
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    return str(blocks[nth])


def auth_request_site(upstream: str, proxy: str) -> str:
    """The documented nginx recipe, pointed at this test's upstream and proxy."""
    site = recipe_block("nginx")
    assert RECIPE_UPSTREAM in site, "the forward-auth recipe changed shape"
    assert RECIPE_PROXY in site, "the forward-auth recipe changed shape"
    assert RECIPE_SECRET in site, "the forward-auth recipe changed shape"
    site = site.replace(RECIPE_UPSTREAM, upstream).replace(RECIPE_PROXY, proxy)
    return site.replace(RECIPE_SECRET, FRONT_SECRET)


def nginx_available() -> tuple[bool, str]:
    if shutil.which(NGINX) is None:
        return False, "Debian nginx is not installed"
    return True, ""


@contextmanager
def nginx(work: Path, port: int, site: str) -> Iterator[subprocess.Popen[bytes]]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "nginx.conf"
    config.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {site}
    }}
}}
"""
    )
    with open(work / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(work)], stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_for_port(port, process)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=10)


def error_log(work: Path) -> str:
    path = work / "error.log"
    return path.read_text(errors="replace") if path.exists() else ""
