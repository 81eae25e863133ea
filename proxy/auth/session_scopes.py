"""``auth.oauth2.enforce_scopes``: a session's request for an operation of sipgate's table
that its token has no scope for is answered here, 403 ``insufficient_scope`` with
RFC 6750's Bearer challenge, instead of by a round trip to sipgate.

This only answers early what sipgate would refuse: sipgate still checks the token
itself, so whatever passes here (an operation outside the table, one that declares no
scope, a path in a spelling the index does not read, a token that names no scopes)
is left to sipgate to decide.
"""

from __future__ import annotations

from aiohttp import web

from proxy.auth.clients.paths import canonical_segments
from proxy.errors import InsufficientScope
from proxy.oauth.tokens import TokenSet, unverified_payload
from proxy.sipgate.index import OperationIndex, sipgate_index
from proxy.upstream.target import path_and_query


def granted_scopes(tokens: TokenSet) -> frozenset[str]:
    """The token response's ``scope``, else the access token's ``scope`` claim, else its
    ``realm_access.roles`` (where sipgate's Keycloak lists them). Read unverified: it can
    only refuse locally what sipgate would refuse, never grant anything."""
    if tokens.scope:
        return frozenset(tokens.scope.split())
    claims = unverified_payload(tokens.access_token)
    scope = claims.get("scope")
    if isinstance(scope, str) and scope.strip():
        return frozenset(scope.split())
    realm = claims.get("realm_access")
    roles = realm.get("roles") if isinstance(realm, dict) else None
    return (
        frozenset(r for r in roles if isinstance(r, str))
        if isinstance(roles, list)
        else frozenset()
    )


class ScopeCheck:
    def __init__(self, index: OperationIndex | None = None) -> None:
        self._index = index or sipgate_index()

    def check(self, request: web.Request, tokens: TokenSet) -> None:
        """InsufficientScope when the token cannot reach the request's operation."""
        segments = canonical_segments(path_and_query(request.raw_path))
        operation = self._index.match(request.method, segments) if segments else None
        if operation is None or not operation.scopes:
            return
        granted = granted_scopes(tokens)
        if granted and not operation.granted_by(granted):
            raise InsufficientScope(None, operation.name, operation.operation_id, operation.scopes)
