"""The processes a benchmark run starts: nginx (static upstream, over http and over https
with a certificate from a private CA), the upload sink, the proxy (one or two workers),
the bare aiohttp pass-through, Apache httpd + mod_auth_openidc.

Everything listens on 127.0.0.1 on free ports, writes only under the run's work directory
and is stopped by the ``ExitStack`` that started it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.processes import free_port as free_port  # re-exported for run.py
from tests.support.processes import wait_for_port
from tests.support.tls import LoopbackCertificates

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PYTHON = sys.executable
NGINX = "/usr/sbin/nginx"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")

# What the upstream answers to a small GET: 200 bytes of JSON, like GET /v2/account.
SMALL_JSON = (
    '{"company":"sipgate bench GmbH","mainProductType":"TEAM","logoUrl":"",'
    '"verified":true,"masterSipId":"1234567","domain":"sipgate.de","locale":"de_DE",'
    '"balance":{"amount":123450,"currency":"EUR"},"pad":"xx"}'
)
assert 195 <= len(SMALL_JSON) <= 205, len(SMALL_JSON)

# A JWT-shaped bearer: nginx refuses anything else, so every measured request proves
# the proxy (or Apache) really injected an access token.
BEARER_PATTERN = r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"

BIG_FILE_NAME = "1g.bin"
BIG_FILE_BYTES = 1 << 30


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list[psutil.Process]:
        """The server process and all its children (workers)."""
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: the children if there are any, else itself."""
        procs = self.processes()
        return procs[1:] or procs[:1]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for proc in reversed(self.processes()):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                self.process.wait(timeout=5)


def _spawn(
    stack: contextlib.ExitStack,
    name: str,
    args: list[str],
    port: int,
    work: Path,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    stop_signal: int = signal.SIGTERM,
) -> Server:
    log = work / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 (fixed programs, loopback targets)
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, port, log)
    stack.callback(server.stop, stop_signal)
    if wait:
        try:
            wait_for_port(port, process)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{name}: {err}; log {log}:\n{_tail(log)}") from None
    return server


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------- nginx upstream


def start_nginx(stack: contextlib.ExitStack, work: Path, big_file: bool = True) -> Server:
    """Static upstream: the small JSON on every path, a 1 GiB file under /files/."""
    nginx_dir = work / "nginx"
    if big_file:
        _write_big_file(nginx_dir / "files")
    nginx_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = nginx_dir / "nginx.conf"
    config.write_text(_nginx_config(nginx_dir, f"listen 127.0.0.1:{port} backlog=4096;"))
    return _spawn(stack, "nginx", [NGINX, "-c", str(config), "-p", str(nginx_dir)], port, work)


@dataclass(frozen=True)
class TlsUpstream:
    """nginx over https, as api.sipgate.com is: its certificate is signed by a private CA
    made for the run, which every client of it must be told to trust."""

    server: Server
    certificates: LoopbackCertificates

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    @property
    def dns_url(self) -> str:
        """The same server by its DNS name: mod_ssl checks a peer's name against DNS names
        only, never against an IP address in the certificate (AH02411 otherwise)."""
        return f"https://localhost:{self.server.port}"

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file


def start_tls_nginx(
    stack: contextlib.ExitStack, work: Path, certificates: LoopbackCertificates
) -> TlsUpstream:
    """The same answers and the same 1 GiB file as ``start_nginx``, over TLS."""
    nginx_dir = work / "nginx-tls"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    _write_big_file(work / "nginx" / "files")
    port = free_port()
    # TLS 1.2 and 1.3 only, as a public API offers; keep-alive makes handshakes rare.
    listen = f"""listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {certificates.cert_file};
        ssl_certificate_key {certificates.key_file};
        ssl_protocols TLSv1.2 TLSv1.3;"""
    config = nginx_dir / "nginx.conf"
    config.write_text(_nginx_config(nginx_dir, listen, files_root=work / "nginx"))
    args = [NGINX, "-c", str(config), "-p", str(nginx_dir)]
    return TlsUpstream(_spawn(stack, "nginx-tls", args, port, work), certificates)


def _write_big_file(files: Path) -> None:
    files.mkdir(parents=True, exist_ok=True)
    big = files / BIG_FILE_NAME
    # Written out, not sparse: reading a hole costs the kernel more than reading cached
    # pages (here 4 s against 0.15 s per GiB), which would cap every download.
    if not big.is_file() or big.stat().st_size != BIG_FILE_BYTES:
        block = bytes(8 << 20)
        with open(big, "wb") as f:
            for _ in range(BIG_FILE_BYTES // len(block)):
                f.write(block)


def _nginx_config(nginx_dir: Path, listen: str, files_root: Path | None = None) -> str:
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {nginx_dir}/body;
    proxy_temp_path {nginx_dir}/proxy;
    fastcgi_temp_path {nginx_dir}/fastcgi;
    uwsgi_temp_path {nginx_dir}/uwsgi;
    scgi_temp_path {nginx_dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    large_client_header_buffers 4 64k;
    sendfile on;
    tcp_nopush on;
    server {{
        {listen}
        location = /echo-authorization {{
            default_type text/plain;
            return 200 "$http_authorization";
        }}
        location /files/ {{
            if ($http_authorization !~ "{BEARER_PATTERN}") {{ return 401; }}
            root {files_root or nginx_dir};
            default_type application/octet-stream;
        }}
        location / {{
            if ($http_authorization !~ "{BEARER_PATTERN}") {{
                return 401 '{{"error":"no bearer token"}}';
            }}
            default_type application/json;
            return 200 '{SMALL_JSON}';
        }}
    }}
}}
"""


def big_file(work: Path) -> Path:
    return work / "nginx" / "files" / BIG_FILE_NAME


def start_sink(stack: contextlib.ExitStack, work: Path) -> Server:
    port = free_port()
    return _spawn(stack, "sink", [PYTHON, str(BENCH / "sink.py"), str(port)], port, work)


# ---------------------------------------------------------------------- the proxy


@dataclass(frozen=True)
class ProxySettings:
    issuer: str
    client_id: str
    client_secret: str
    session_key: str
    upstream: str
    workers: int = 1
    refresh_skew: float = 30
    port: int = 0
    ca_file: Path | None = None  # upstream.ca_file: the private CA of an https upstream

    def environment(self, port: int) -> dict[str, str]:
        trust = (
            {} if self.ca_file is None else {"SIPGATE_PROXY_UPSTREAM__CA_FILE": str(self.ca_file)}
        )
        return trust | {
            "SIPGATE_PROXY_LISTEN__HOST": "127.0.0.1",
            "SIPGATE_PROXY_LISTEN__PORT": str(port),
            "SIPGATE_PROXY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SIPGATE_PROXY_UPSTREAM__URL": self.upstream,
            "SIPGATE_PROXY_UPSTREAM__MAX_BODY_SIZE": str(4 << 30),
            "SIPGATE_PROXY_AUTH__MODE": "oauth2",
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": self.issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": self.client_id,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": self.client_secret,
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": str(self.refresh_skew),
            "SIPGATE_PROXY_SESSION__KEYS": f"[{self.session_key}]",
            "SIPGATE_PROXY_SERVER__WORKERS": str(self.workers),
            "SIPGATE_PROXY_LOG__LEVEL": "warning",
            "SIPGATE_PROXY_LOG__FORMAT": "json",
        }


def generate_session_key() -> str:
    result = subprocess.run(  # noqa: S603 (fixed programs, loopback targets)
        [str(Path(PYTHON).with_name("sipgate-auth-proxy")), "generate-key"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def start_proxy(
    stack: contextlib.ExitStack,
    work: Path,
    settings: ProxySettings,
    name: str = "proxy",
    source: Path = ROOT,
) -> tuple[Server, float]:
    """Start ``python -m proxy`` from ``source`` (a checkout: the one this file is in, or
    another to compare with); returns the server and the seconds until /readyz said 200."""
    port = settings.port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_PROXY_")}
    env |= settings.environment(port)
    log = work / f"{name}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 (fixed programs, loopback targets)
            [PYTHON, "-m", "proxy"],
            cwd=source,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, port, log, started)
    stack.callback(server.stop)
    ready = wait_ready(f"{server.url}/readyz", process, started)
    if ready is None:
        raise RuntimeError(f"{name} not ready; log {log}:\n{_tail(log)}")
    return server, ready


def wait_ready(
    url: str, process: subprocess.Popen[bytes], started: float, timeout: float = 20
) -> float | None:
    """Poll every 5 ms; seconds from ``started`` to the first 200."""
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.005)
    return None


def start_bare(
    stack: contextlib.ExitStack, work: Path, upstream: str, key: bytes, processes: int = 1
) -> Server:
    port = free_port()
    args = [PYTHON, str(BENCH / "bare_passthrough.py"), str(port), upstream]
    args += [base64.b64encode(key).decode(), str(processes)]
    return _spawn(stack, f"bare-{processes}", args, port, work)


def start_relay(stack: contextlib.ExitStack, work: Path, upstream: Server) -> Server:
    """The reference copy relay (bench/relays.py) in front of ``upstream``: no HTTP, no auth."""
    port = free_port()
    args = [PYTHON, str(BENCH / "relays.py"), str(port), str(upstream.port)]
    return _spawn(stack, f"relay-{upstream.name}", args, port, work)


# ---------------------------------------------------------------------- Apache + mod_auth_openidc

APACHE_MODULE_LIST = (
    "mpm_event",
    "authn_core",
    "authz_core",
    "authz_user",
    "headers",
    "proxy",
    "proxy_http",
    "auth_openidc",
)

REDIRECT_PATH = "/oidc-callback"


@dataclass(frozen=True)
class ApacheSettings:
    issuer: str
    client_id: str
    client_secret: str
    upstream: str  # the small JSON and /files/
    upload_upstream: str  # the sink, for POST /upload
    passphrase: str
    port: int
    extra: str = ""  # more directives (the refresh scenario adds its own)

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return self.public_url + REDIRECT_PATH


def apache_tls_proxy(ca_file: Path) -> str:
    """Directives for ``ApacheSettings.extra``: mod_proxy to an https upstream, verified
    against ``ca_file`` only, as the proxy does with ``upstream.ca_file``."""
    return f"""
LoadModule ssl_module {APACHE_MODULES}/mod_ssl.so
SSLProxyEngine on
SSLProxyVerify require
SSLProxyCACertificateFile {ca_file}
SSLProxyCheckPeerName on
"""


def apache_available() -> tuple[bool, str]:
    if not Path(APACHE).is_file():
        return False, "apache2 is not installed"
    if not (APACHE_MODULES / "mod_auth_openidc.so").is_file():
        return False, "libapache2-mod-auth-openidc is not installed"
    return True, ""


def apache_config(directory: Path, settings: ApacheSettings) -> str:
    modules = "\n".join(
        f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in APACHE_MODULE_LIST
    )
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    return f"""
ServerRoot {directory}
ServerName 127.0.0.1
Listen 127.0.0.1:{settings.port}
PidFile {directory}/httpd.pid
DefaultRuntimeDir {directory}/run
ErrorLog {directory}/error.log
LogLevel warn
{user}
{modules}

# Debian's mpm_event.conf defaults, written out so the run does not depend on /etc.
StartServers            2
MinSpareThreads         25
MaxSpareThreads         75
ThreadLimit             64
ThreadsPerChild         25
MaxRequestWorkers       150
MaxConnectionsPerChild  0

# Same conditions as nginx and the proxy: persistent connections without a request
# limit, large session cookies accepted (mod_auth_openidc's are chunked, ~4 KB each).
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
LimitRequestFieldSize 65536
LimitRequestLine 65536

OIDCProviderMetadataURL {settings.issuer}/.well-known/openid-configuration
OIDCClientID {settings.client_id}
OIDCClientSecret {settings.client_secret}
OIDCRedirectURI {settings.redirect_uri}
OIDCCryptoPassphrase {settings.passphrase}
OIDCScope "openid all"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_post
# The whole session in an encrypted, chunked cookie: stateless, like the proxy's cookie store.
OIDCSessionType client-cookie
OIDCSessionInactivityTimeout 86400
OIDCSessionMaxDuration 86400
# Pass nothing but the access token, and that only as an environment variable for
# RequestHeader below ("none" would drop the access token too).
OIDCPassClaimsAs environment
OIDCPassIDTokenAs payload
OIDCPassUserInfoAs json
{settings.extra}

ProxyPass {REDIRECT_PATH} !
ProxyPass /upload {settings.upload_upstream}/upload
ProxyPass / {settings.upstream}/
<Location />
    AuthType openid-connect
    Require valid-user
    RequestHeader set Authorization "Bearer %{{OIDC_access_token}}e" env=OIDC_access_token
    RequestHeader unset Cookie
</Location>
"""


def start_apache(
    stack: contextlib.ExitStack, work: Path, settings: ApacheSettings, name: str = "apache"
) -> Server:
    directory = work / name
    (directory / "run").mkdir(parents=True, exist_ok=True)
    config = directory / "httpd.conf"
    config.write_text(apache_config(directory, settings))
    if os.geteuid() == 0:  # children run as www-data and need the runtime directory
        shutil.chown(directory / "run", "www-data", "www-data")
    # SIGWINCH would be graceful; SIGTERM stops at once, which is what a benchmark wants.
    return _spawn(
        stack,
        name,
        [APACHE, "-f", str(config), "-DFOREGROUND"],
        settings.port,
        work,
        env={"APACHE_RUN_DIR": str(directory / "run"), "APACHE_LOG_DIR": str(directory)},
    )


def start_verifying_upstream(stack: contextlib.ExitStack, work: Path, jwks_url: str) -> Server:
    port = free_port()
    return _spawn(
        stack,
        "verifying-upstream",
        [PYTHON, str(BENCH / "verifying_upstream.py"), str(port), jwks_url],
        port,
        work,
    )
