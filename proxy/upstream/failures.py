"""Why the upstream could not answer, as one word an operator can act on, and the log
line that says so with the upstream's host (never its path, query or a credential).

    timeout           connect or read timeout (504): upstream.connect_timeout / read_timeout
    dns               the host name does not resolve
    refused           nothing listens on the host and port
    tls_verification  the certificate is not trusted: upstream.ca_file
    tls               another TLS handshake failure (protocol, cipher)
    reset             the connection was reset or closed before a whole answer
    other             anything else
"""

from __future__ import annotations

import logging
import socket
import ssl

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)


def failure_cause(err: BaseException) -> str:
    if isinstance(err, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return "tls_verification"
    if isinstance(err, aiohttp.ClientSSLError):
        cause = err.__cause__ or getattr(err, "os_error", None)
        return "tls_verification" if isinstance(cause, ssl.SSLCertVerificationError) else "tls"
    return _os_cause(err)


def _os_cause(err: BaseException) -> str:
    if isinstance(err, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "reset"  # closed before (all of) the answer
    os_error = getattr(err, "os_error", None) or err.__cause__ or err
    if isinstance(os_error, socket.gaierror):
        return "dns"
    if isinstance(os_error, ConnectionRefusedError):
        return "refused"
    if isinstance(os_error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    return "other"


def upstream_host(url: str) -> str:
    """``host:port`` of the upstream URL: no user info, path or query."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


def log_failure(host: str, cause: str, err: BaseException) -> None:
    detail = ""
    if cause.startswith("tls"):
        # the one failure fixed in config: the TLS library's reason names it
        detail = f" (TLS handshake failed: {err.__cause__ or err})"
    log.warning(
        "upstream %s failed: %s%s",
        host,
        cause,
        detail,
        extra={"upstream_host": host, "cause": cause},
    )
