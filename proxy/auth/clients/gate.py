"""The shared modes' gate: which app this is, and whether it may make this call.

Decisions, in this order, each a JSON error that never reaches sipgate:
malformed Authorization → 400; no, unknown or wrong credential → 401 (without any:
``auth.anonymous: allow`` lets it pass, as before clients existed); outside the client's
``networks`` → 403; a path in a spelling with two readings (``paths.py``) → 403
``forbidden_by_policy``; an operation of sipgate's table that none of its ``scopes``
grants and no ``allow`` rule opens → 403 ``insufficient_scope``; any other call no rule
opens → 403 ``forbidden_by_policy``; over its rate → 429.

The token is compared as its SHA-256 against every client's, in constant time and
without stopping early: an unknown token id costs the same as a wrong token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from proxy import request_state as state
from proxy.auth.clients.credentials import Presented, presented_credential
from proxy.auth.clients.paths import canonical_segments
from proxy.auth.clients.rate_limit import TokenBucket
from proxy.auth.headless_clients import ClientNetworks
from proxy.clock import Clock
from proxy.config import Client
from proxy.config.allow_rules import AllowRule, parse_rule
from proxy.errors import (
    ClientNetworkRefused,
    ForbiddenByPolicy,
    InsufficientScope,
    InvalidClientCredentials,
    RateLimited,
)
from proxy.sipgate.index import OperationIndex, sipgate_index
from proxy.sipgate.operations import granted_operations
from proxy.upstream.target import path_and_query


@dataclass(frozen=True)
class KnownClient:
    name: str
    token_id: bytes
    token_digest: bytes  # SHA-256 of the token; the token itself is never kept
    rules: tuple[AllowRule, ...]
    scopes: tuple[str, ...]
    granted: frozenset[int]  # the table's operations (Operation.index) the scopes grant
    networks: ClientNetworks | None
    bucket: TokenBucket | None
    rate: tuple[int, float] | None  # the bucket's settings: a reload keeps an unchanged one


def known(client: Client, clock: Clock = time.monotonic) -> KnownClient:
    limit = client.rate_limit
    return KnownClient(
        client.name,
        client.token_id.encode(),
        bytes.fromhex(client.token_sha256),
        tuple(parse_rule(rule) for rule in client.allow),
        tuple(client.scopes),
        granted_operations(frozenset(client.scopes)),
        ClientNetworks(client.networks) if client.networks is not None else None,
        TokenBucket(limit.requests, limit.per, clock) if limit is not None else None,
        (limit.requests, limit.per) if limit is not None else None,
    )


def _kept_bucket(new: KnownClient, old: KnownClient | None) -> KnownClient:
    if old is None or old.rate != new.rate:
        return new
    return dataclasses.replace(new, bucket=old.bucket)


class ClientGate:
    def __init__(self, clients: Sequence[KnownClient], anonymous: bool) -> None:
        self._clients = tuple(clients)
        self.anonymous = anonymous  # auth.anonymous: allow (SIGHUP may change it)
        self._operations: OperationIndex = sipgate_index()

    def replace(self, clients: Sequence[KnownClient]) -> None:
        """A reloaded list (SIGHUP, a changed clients_file): the next request sees it. A
        client whose rate limit is unchanged keeps its bucket: a reload is no new burst."""
        old = {client.token_id: client for client in self._clients}
        self._clients = tuple(_kept_bucket(client, old.get(client.token_id)) for client in clients)

    @property
    def names(self) -> list[str]:
        return [client.name for client in self._clients]

    def admit(self, request: web.Request) -> None:
        """Raises the first decision that refuses the request; notes the client."""
        presented = presented_credential(request)
        if presented is None and self.anonymous:
            return
        client = self._identify(presented) if presented is not None else None
        if client is None:
            request[state.POLICY_DENIED] = "credentials"
            raise InvalidClientCredentials()
        request[state.CLIENT] = client.name
        self._check(request, client)

    def _identify(self, presented: Presented) -> KnownClient | None:
        digest = hashlib.sha256(presented.token.encode("utf-8", "replace")).digest()
        wanted_id = (presented.token_id or "").encode("utf-8", "replace")
        found = None
        for client in self._clients:  # every one, whatever matched: constant time
            same_token = hmac.compare_digest(digest, client.token_digest)
            same_id = presented.token_id is None or hmac.compare_digest(wanted_id, client.token_id)
            if same_token and same_id:
                found = client
        return found

    def _check(self, request: web.Request, client: KnownClient) -> None:
        if client.networks is not None and not client.networks.allows(request.remote):
            request[state.POLICY_DENIED] = "network"
            raise ClientNetworkRefused()
        path = path_and_query(request.raw_path)
        segments = canonical_segments(path)
        if segments is None or not self._permits(request, client, segments):
            request[state.POLICY_DENIED] = "policy"
            raise ForbiddenByPolicy(client.name, request.method, path.split("?", 1)[0])
        wait = client.bucket.take() if client.bucket is not None else None
        if wait is not None:
            request[state.POLICY_DENIED] = "rate_limit"
            raise RateLimited(wait)

    def _permits(self, request: web.Request, client: KnownClient, path: tuple[str, ...]) -> bool:
        """An allow rule or a granted operation; InsufficientScope for an operation of
        the table that the client's scopes do not grant."""
        method = request.method
        if any(rule.allows(method, path) for rule in client.rules):
            return True
        if not client.scopes:
            return False
        operation = self._operations.match(method, path)
        if operation is None:
            return False  # not in sipgate's table: only an allow rule opens it
        if operation.index in client.granted:
            return True
        request[state.POLICY_DENIED] = "scope"
        raise InsufficientScope(
            client.name, operation.name, operation.operation_id, operation.scopes
        )
