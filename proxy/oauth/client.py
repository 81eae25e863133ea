"""The OAuth2 client side of sipgate's Keycloak: authorize URL, code exchange, refresh,
revocation, end-session, JWKS. Knows HTTP and the protocol; knows nothing of cookies.
Its failures are the tree in proxy/oauth/errors.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from proxy.config import OAuth2Client
from proxy.oauth.endpoints import Endpoints, endpoints_from_discovery, issuer_of, keycloak_endpoints
from proxy.oauth.errors import BadAnswer, IdPTimeout, IdPUnreachable, TokenError


class OAuthClient:
    def __init__(
        self, client: OAuth2Client, redirect_uri: str, http: Callable[[], aiohttp.ClientSession]
    ) -> None:
        self._settings = settings = client.settings
        self._client_id = client.client_id
        self._secret = client.client_secret.get_secret_value()
        self.redirect_uri = redirect_uri
        self._http = http
        self.issuer = issuer_of(settings)
        self._endpoints: Endpoints | None = None
        if not settings.discovery:
            self._endpoints = keycloak_endpoints(self.issuer)

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def scopes(self) -> list[str]:
        return list(self._settings.scopes)

    async def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            self._endpoints = endpoints_from_discovery(self.issuer, await self._get_json(url))
        return self._endpoints

    async def authorize_url(self, state: str, challenge: str | None, nonce: str | None) -> str:
        params = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self._settings.scopes),
            "state": state,
        }
        if challenge is not None:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        if nonce is not None:
            params["nonce"] = nonce
        return f"{(await self.endpoints()).authorization}?{urlencode(params, quote_via=quote)}"

    async def exchange_code(self, code: str, verifier: str | None) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        return await self._token_request(form)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def jwks(self) -> dict[str, Any]:
        return await self._get_json((await self.endpoints()).jwks)

    async def revoke(self, refresh_token: str) -> bool:
        """Revoke at the IdP: RFC 7009 first, Keycloak's legacy logout when that is missing."""
        endpoints = await self.endpoints()
        if endpoints.revocation:
            form = {"token": refresh_token, "token_type_hint": "refresh_token"}
            status = await self._post_status(endpoints.revocation, form)
            if status == 200:
                return True
            if status not in (404, 405, 501):
                return False
        if endpoints.legacy_logout:
            status = await self._post_status(
                endpoints.legacy_logout, {"refresh_token": refresh_token}
            )
            return status in (200, 204)
        return False

    async def end_session_url(self, post_logout_redirect: str, id_token: str | None) -> str | None:
        endpoint = (await self.endpoints()).end_session
        if endpoint is None:
            return None
        params = {"client_id": self._client_id, "post_logout_redirect_uri": post_logout_redirect}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{endpoint}?{urlencode(params, quote_via=quote)}"

    # --- HTTP -------------------------------------------------------------------------

    def _authenticated(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        headers = {"Accept": "application/json"}
        if self._settings.client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: form-encode id and secret before Basic encoding.
            pair = f"{quote(self._client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            return {**form, "client_id": self._client_id}, headers
        return {**form, "client_id": self._client_id, "client_secret": self._secret}, headers

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        body, headers = self._authenticated(form)
        url = (await self.endpoints()).token
        try:
            async with self._http().post(url, data=body, headers=headers) as response:
                status, text = response.status, await _read_text(response)
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise IdPTimeout("token endpoint did not answer in time") from None
        except aiohttp.ClientError:
            raise IdPUnreachable("token endpoint unreachable") from None
        document = _json_object(text)
        if status == 200 and document is not None:
            return document
        if 400 <= status < 500 and document is not None and isinstance(document.get("error"), str):
            raise TokenError(document["error"], status)
        raise BadAnswer(f"token endpoint answered HTTP {status}")

    async def _post_status(self, url: str, form: dict[str, str]) -> int:
        body, headers = self._authenticated(form)
        try:
            async with self._http().post(url, data=body, headers=headers) as response:
                await _read_text(response)
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            raise IdPUnreachable("IdP unreachable") from None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http().get(url, headers={"Accept": "application/json"}) as response:
                status, text = response.status, await _read_text(response)
        except (aiohttp.ClientError, TimeoutError):
            raise IdPUnreachable("IdP unreachable") from None
        document = _json_object(text)
        if status != 200 or document is None:
            raise BadAnswer(f"IdP answered HTTP {status}")
        return document


MAX_IDP_RESPONSE = 1024 * 1024


async def _read_text(response: aiohttp.ClientResponse) -> str:
    """The whole answer, at most 1 MiB, decoded leniently: an IdP's error page need not be
    valid UTF-8. Read to the end: a token answer arrives in several TCP segments or TLS
    records, and one read returns only what has arrived so far."""
    if (response.content_length or 0) > MAX_IDP_RESPONSE:
        raise BadAnswer("IdP answer too large")
    data = bytearray()
    async for piece in response.content.iter_any():
        data += piece
        if len(data) > MAX_IDP_RESPONSE:
            raise BadAnswer("IdP answer too large")
    return data.decode("utf-8", "replace")


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None
