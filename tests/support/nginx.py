"""Debian's nginx in front of the proxy's forward-auth endpoint, as README shows it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import wait_for_port

NGINX = "/usr/sbin/nginx"

AUTH_REQUEST_SITE = """
    location / {{
        auth_request /_sipgate_auth;
        auth_request_set $sipgate_authorization $upstream_http_authorization;
        auth_request_set $sipgate_cookie $upstream_http_set_cookie;
        add_header Set-Cookie $sipgate_cookie;
        proxy_set_header Authorization $sipgate_authorization;
        proxy_pass {upstream};
    }}
    location = /_sipgate_auth {{
        internal;
        proxy_pass {proxy}/oauth2/auth;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
    }}
"""


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
