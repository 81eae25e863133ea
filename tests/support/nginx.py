"""Debian's nginx in front of the proxy's forward-auth endpoint, configured with the very
text README shows: the recipe is read from README, so the two cannot drift apart."""

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
README = Path(__file__).resolve().parents[2] / "README.md"
FORWARD_AUTH_SECTION = "### Forward auth for nginx and Traefik"
# The addresses README's recipes use, replaced by the test's own.
README_UPSTREAM = "https://api.sipgate.com"
README_PROXY = "http://127.0.0.1:8080"
# The front proxy's secret (forward_auth.secret) in README's recipes, and the tests' own.
README_SECRET = "REPLACE-WITH-forward_auth.secret"
FRONT_SECRET = "front-proxy-secret-for-the-tests-0123456789abcdef"
WATCH.add(FRONT_SECRET)  # no log line of the suite may hold it (test_log_hygiene)


def readme_block(language: str, nth: int = 0) -> str:
    """The ``nth`` fenced block in ``language`` of README's forward-auth section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(FORWARD_AUTH_SECTION) :]
    section = section[: section.find("\n## ", 1)]
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    return str(blocks[nth])


def auth_request_site(upstream: str, proxy: str) -> str:
    """README's nginx recipe, pointed at this test's upstream and proxy."""
    site = readme_block("nginx")
    assert README_UPSTREAM in site, "README recipe changed shape"
    assert README_PROXY in site, "README recipe changed shape"
    assert README_SECRET in site, "README recipe changed shape"
    site = site.replace(README_UPSTREAM, upstream).replace(README_PROXY, proxy)
    return site.replace(README_SECRET, FRONT_SECRET)


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
