"""Start and drive the test OpenID provider in ``tests/idp`` from pytest.

The provider is ``oidc-provider`` (npm, v9) configured like sipgate's Keycloak: issuer
``http://127.0.0.1:PORT/auth/realms/REALM``, endpoints under ``protocol/openid-connect``,
JWT access tokens padded to sipgate's size, opaque refresh tokens of sipgate's length,
refresh-token rotation with grant revocation on replay. See ``tests/idp/README.md``.

Plain functions and classes, no fixtures: the conftest wraps them. Everything here blocks
(subprocess and ``urllib``); that is fine from async tests because the IdP is another
process, and every call is short.

State (grants, refresh tokens, browser sessions at the IdP, stats) is kept in a JSON file
in the work directory, so ``stop()`` then ``start()`` brings the IdP back on the same port
with everything it had: that is how a test simulates "IdP down, then back". For an IdP that
is up but failing, use ``set_faults()`` (503 / dropped connection / delay on the token
endpoint, or a missing revocation endpoint).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

ROOT = Path(__file__).resolve().parents[2]
IDP_DIR = ROOT / "tests" / "idp"
SERVER_JS = IDP_DIR / "server.mjs"
MIN_NODE_MAJOR = 20

AuthMethod = Literal["client_secret_post", "client_secret_basic", "any"]

# Selectors of the IdP's pages (they follow Keycloak's login theme ids).
LOGIN_FORM = "#kc-form-login"
USERNAME_INPUT = "#username"
PASSWORD_INPUT = "#password"
LOGIN_BUTTON = "#kc-login"
CONSENT_FORM = "#kc-form-consent"
CONSENT_ACCEPT = "#kc-form-consent #kc-login"
CONSENT_DENY = "#kc-cancel"
LOGOUT_BUTTON = "#kc-logout"
LOGIN_PATH_PART = "/login-actions/authenticate/"
CONSENT_PATH_PART = "/login-actions/consent/"


class IdPError(RuntimeError):
    """The test IdP could not be started or answered an admin call badly."""


def find_node() -> str | None:
    """The ``node`` binary: ``$SIPGATE_TEST_NODE`` if set, else the one on ``PATH``."""
    return os.environ.get("SIPGATE_TEST_NODE") or shutil.which("node")


def idp_available() -> tuple[bool, str]:
    """Whether the test IdP can run here, and why not (for a skip reason)."""
    node = find_node()
    if node is None:
        return False, "node (>= 20) is not installed"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"node does not run: {exc}"
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        return False, f"node {version} is too old (need >= {MIN_NODE_MAJOR})"
    if not (IDP_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return False, "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp`"
    return True, f"node {version}"


@dataclass(frozen=True)
class IdPConfig:
    """What the test IdP is started with (written to a JSON file for ``server.mjs``)."""

    client_id: str
    client_secret: str
    redirect_uris: Sequence[str]
    # None: any URI on the origin of a redirect URI is allowed after logout
    post_logout_redirect_uris: Sequence[str] | None = None
    # "any": Basic and form credentials both accepted, as Keycloak does; a strict method
    # makes the token and revocation endpoints answer 401 invalid_client to the other one
    token_endpoint_auth_method: AuthMethod = "any"
    pkce_required: bool = True
    auto_consent: bool = True
    realm: str = "sipgate-apps"
    access_ttl: int = 300
    refresh_ttl: int = 30 * 24 * 3600
    id_ttl: int = 300
    session_ttl: int = 30 * 24 * 3600
    audience: str = "https://api.sipgate.com"
    resource_scope: str = "all balance:read history:read"
    access_token_min_bytes: int = 1193
    access_token_padding: Literal["repeat", "random"] = "repeat"
    refresh_token_bytes: int = 1141
    log_requests: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def server_config(self, state_file: Path) -> dict[str, Any]:
        post_logout = self.post_logout_redirect_uris
        return {
            "host": "127.0.0.1",
            "realm": self.realm,
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": list(self.redirect_uris),
                "post_logout_redirect_uris": None if post_logout is None else list(post_logout),
                "token_endpoint_auth_method": self.token_endpoint_auth_method,
            },
            "pkce_required": self.pkce_required,
            "auto_consent": self.auto_consent,
            "audience": self.audience,
            "resource_scope": self.resource_scope,
            "ttl": {
                "access": self.access_ttl,
                "refresh": self.refresh_ttl,
                "id": self.id_ttl,
                "session": self.session_ttl,
                "grant": max(self.refresh_ttl, self.session_ttl) * 2,
            },
            "access_token_min_bytes": self.access_token_min_bytes,
            "access_token_padding": self.access_token_padding,
            "refresh_token_bytes": self.refresh_token_bytes,
            "state_file": str(state_file),
            "log_requests": self.log_requests,
            **self.extra,
        }


@dataclass(frozen=True)
class Faults:
    """Fault injection on the IdP (see ``RunningIdP.set_faults``)."""

    token_status: int | None = None
    token_drop: bool = False
    token_delay_ms: int = 0
    count: int | None = None
    revoke_enabled: bool = True
    access_token_bytes: int | None = None


class RunningIdP:
    """One test IdP process; ``start()`` / ``stop()`` as often as needed, same port."""

    def __init__(
        self,
        workdir: Path,
        config: IdPConfig,
        *,
        node: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.node = node or find_node() or "node"
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "idp-config.json"
        self.state_path = self.workdir / "idp-state.json"
        self.log_path = self.workdir / "idp.log"
        self.port = 0
        self.issuer = ""
        self.start_attempts = 0  # how many spawns it took in total (retries included)
        self._process: subprocess.Popen[bytes] | None = None
        self.config_path.write_text(json.dumps(config.server_config(self.state_path), indent=2))

    # ------------------------------------------------------------------ URLs

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _oidc(self, name: str) -> str:
        return f"{self.issuer}/protocol/openid-connect/{name}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        return self._oidc("auth")

    @property
    def token_endpoint(self) -> str:
        return self._oidc("token")

    @property
    def jwks_uri(self) -> str:
        return self._oidc("certs")

    @property
    def userinfo_endpoint(self) -> str:
        return self._oidc("userinfo")

    @property
    def end_session_endpoint(self) -> str:
        return self._oidc("logout")

    @property
    def revocation_endpoint(self) -> str:
        return self._oidc("revoke")

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_challenge: str | None = None,
        scope: str = "all openid",
        nonce: str | None = None,
        client_id: str | None = None,
    ) -> str:
        params = {
            "client_id": client_id or self.config.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        }
        if code_challenge is not None:
            params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        if nonce is not None:
            params["nonce"] = nonce
        return f"{self.authorization_endpoint}?{urllib.parse.urlencode(params)}"

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start (or start again, on the same port, with the saved state).

        Waits for the ``READY`` line; a start that does not get there in
        ``start_timeout`` seconds is killed and tried once more.
        """
        if self.running:
            return
        try:
            self._spawn_and_wait()
        except IdPError as first:
            self._kill()
            try:
                self._spawn_and_wait()
            except IdPError as second:
                self._kill()
                raise IdPError(f"{second} (first attempt: {first})") from second

    def _spawn_and_wait(self) -> None:
        self.start_attempts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start attempt {self.start_attempts} ---\n".encode())
            log.flush()
            offset = log.tell()
            self._process = subprocess.Popen(
                [
                    self.node,
                    str(SERVER_JS),
                    "--config",
                    str(self.config_path),
                    "--port",
                    str(self.port),
                ],
                cwd=IDP_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            text = self._log_since(offset)
            ready = re.search(r"^READY (\S+)$", text, re.MULTILINE)
            if ready:
                self.issuer = ready.group(1)
                self.port = urllib.parse.urlsplit(self.issuer).port or 0
                return
            if self._process.poll() is not None:
                raise IdPError(
                    f"test IdP exited with {self._process.returncode} before READY; "
                    f"log {self.log_path}:\n{text[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise IdPError(
                    f"test IdP not READY after {self.start_timeout}s; log {self.log_path}:\n"
                    f"{text[-2000:]}"
                )
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM; state is saved). Connections are then refused."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        else:
            process.wait()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()

    def crash(self) -> None:
        """SIGKILL: like ``stop`` but without a clean shutdown (state is saved anyway)."""
        self._kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RunningIdP:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ admin API

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise IdPError(f"{method} {path}: HTTP {response.status}: {payload[:200]!r}")
            return json.loads(payload)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise IdPError(f"{method} {path} failed: {exc}") from exc
        finally:
            connection.close()

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._request(method, f"/__admin/{path}", data)

    def stats(self) -> dict[str, Any]:
        """Counts since start or the last reset (kept across restarts).

        ``{"token": {grant_type: {outcome: n}}, "token_auth": {method: n},
        "revocation": {outcome: n}, "legacy_logout": {outcome: n},
        "end_session": n, "authorization": n, "logins": {username: n}}``; an outcome is
        ``success``, an OAuth error code (``invalid_grant``, ``invalid_client``, …) or
        ``injected_503`` / ``injected_drop`` for injected faults.
        """
        result: dict[str, Any] = self._admin("GET", "stats")
        return result

    def token_calls(self, grant_type: str, outcome: str | None = None) -> int:
        """Token endpoint calls of one grant type (all outcomes, or one)."""
        by_outcome: dict[str, int] = self.stats()["token"].get(grant_type, {})
        if outcome is None:
            return sum(by_outcome.values())
        return by_outcome.get(outcome, 0)

    def reset_stats(self) -> None:
        self._admin("POST", "stats/reset", {})

    def revoke_subject(self, sub: str, *, sessions: bool = False) -> int:
        """Revoke every grant (and so every token) of ``sub``; with ``sessions`` also the
        user's login sessions at the IdP (the next login then shows the form again).
        Returns the number of grants revoked."""
        result = self._admin("POST", "revoke-subject", {"sub": sub, "sessions": sessions})
        return int(result["grants"])

    def revoke_refresh_token(self, refresh_token: str, *, sessions: bool = False) -> bool:
        """Revoke the grant a refresh token belongs to; False if the IdP does not know it."""
        result = self._admin(
            "POST", "revoke-refresh-token", {"refresh_token": refresh_token, "sessions": sessions}
        )
        return bool(result["revoked"])

    def grants(self) -> list[dict[str, str]]:
        """Live grants as ``[{"id": …, "sub": …}]``."""
        result: list[dict[str, str]] = self._admin("GET", "grants")
        return result

    def set_faults(
        self,
        *,
        token_status: int | None = None,
        token_drop: bool = False,
        token_delay_ms: int = 0,
        count: int | None = None,
        revoke_enabled: bool = True,
        access_token_bytes: int | None = None,
    ) -> None:
        """Make the token endpoint fail: answer ``token_status`` (e.g. 503, text/html),
        or drop the connection, after ``token_delay_ms``; for the next ``count`` token
        requests only, or until cleared (``count=None``). ``revoke_enabled=False`` makes
        the revocation endpoint answer 404, as if the IdP had none. ``access_token_bytes``
        pads access tokens issued from now on to that size with incompressible characters.
        Replaces the previous settings; a restart clears them."""
        faults = Faults(
            token_status, token_drop, token_delay_ms, count, revoke_enabled, access_token_bytes
        )
        self._admin("POST", "faults", asdict(faults))

    def clear_faults(self) -> None:
        self._admin("POST", "faults", {})

    def discovery(self) -> dict[str, Any]:
        path = urllib.parse.urlsplit(self.discovery_url).path
        result: dict[str, Any] = self._request("GET", path)
        return result


def start_idp(
    tmp_dir: Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: Sequence[str],
    access_ttl: int = 300,
    refresh_ttl: int = 30 * 24 * 3600,
    realm: str = "sipgate-apps",
    **options: Any,
) -> RunningIdP:
    """Start a test IdP whose files (config, state, log ``idp.log``) go to ``tmp_dir/idp``.

    ``options`` are further ``IdPConfig`` fields (``token_endpoint_auth_method``,
    ``pkce_required``, ``post_logout_redirect_uris``, ``id_ttl``, ``auto_consent``, …).
    """
    config = IdPConfig(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=list(redirect_uris),
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        realm=realm,
        **options,
    )
    idp = RunningIdP(Path(tmp_dir) / "idp", config)
    idp.start()
    return idp


class BrowserPage(Protocol):
    """The part of ``playwright.async_api.Page`` that ``browser_login`` uses."""

    @property
    def url(self) -> str: ...

    def wait_for_selector(
        self, selector: str, *, timeout: float | None = None
    ) -> Awaitable[object]: ...

    def fill(
        self, selector: str, value: str, *, timeout: float | None = None
    ) -> Awaitable[None]: ...

    def click(self, selector: str, *, timeout: float | None = None) -> Awaitable[None]: ...

    def wait_for_url(
        self, url: Callable[[str], bool], *, timeout: float | None = None
    ) -> Awaitable[None]: ...


async def browser_login(
    page: BrowserPage,
    username: str,
    password: str = "test-password",
    *,
    timeout_ms: float = 15_000,
) -> None:
    """Log in on the IdP's pages once ``page`` has been sent to the authorize URL.

    Fills the login form (any username; it becomes the ``sub``; any non-empty password),
    accepts the consent page if one is shown (only with ``auto_consent=False``; the
    login form is skipped when the browser still has a session at the IdP but consent is
    needed), and returns once the browser has left the IdP's pages (normally: it is on
    the client's redirect URI, or wherever that redirected to). With a live IdP session
    and nothing to consent to, the IdP shows no page at all: do not call this then.
    """
    await page.wait_for_selector(f"{LOGIN_FORM}, {CONSENT_FORM}", timeout=timeout_ms)
    if LOGIN_PATH_PART in page.url:
        await page.fill(USERNAME_INPUT, username, timeout=timeout_ms)
        await page.fill(PASSWORD_INPUT, password, timeout=timeout_ms)
        await page.click(LOGIN_BUTTON, timeout=timeout_ms)
        await page.wait_for_url(lambda url: LOGIN_PATH_PART not in url, timeout=timeout_ms)
    if CONSENT_PATH_PART in page.url:
        await page.click(CONSENT_ACCEPT, timeout=timeout_ms)
        await page.wait_for_url(lambda url: CONSENT_PATH_PART not in url, timeout=timeout_ms)
