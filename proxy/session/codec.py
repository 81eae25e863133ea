"""Token set ⇄ compact bytes, small enough that a sipgate session fits few cookies.

JWTs are stored as their decoded parts (header JSON, payload JSON, signature bytes)
instead of base64url text: a quarter smaller before compression, and the JSON of the
access, refresh and ID tokens repeats the same issuer, audience and subject, which zlib
(primed with a dictionary of Keycloak claim names) then stores once.

    format 1: b"\\x01" | zlib( field* )      field = tag (1) | length (2, BE) | bytes
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from proxy.crypto import b64
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet

FORMAT = b"\x01"
MAX_PLAINTEXT = 64 * 1024  # refuse to inflate beyond this: no decompression bombs
_ZDICT = (
    b'{"alg":"RS256","typ" : "JWT","kid" : "{"exp":,"iat":,"auth_time":,"jti":"'
    b'","iss":"https://login.sipgate.com/auth/realms/sipgate-apps","aud":"account",'
    b'"sub":"","typ":"Bearer","typ":"Refresh","typ":"ID","azp":"","session_state":"'
    b'","acr":"1","allowed-origins":[],"realm_access":{"roles":["offline_access",'
    b'"uma_authorization"]},"resource_access":{},"scope":"openid all profile email",'
    b'"sid":"","email_verified":false,"nonce":"","at_hash":"'
)
_ACCESS, _REFRESH, _ID, _EXPIRES, _REFRESH_EXPIRES, _SCOPE, _SUBJECT, _SEALED, _CREATED = range(
    1, 10
)
_ISSUED = 10  # optional: sessions sealed before it was added have none
_REJECTED = 11  # optional, empty: present when tokens.rejected_after_refresh
_RAW, _JWT = b"\x00", b"\x01"


@dataclass(frozen=True)
class StoredSession:
    tokens: TokenSet
    created: float  # first login of this session
    sealed_at: float  # when this value was written: bounds how old a cookie can be


class MalformedSession(ValueError):
    pass


def encode(session: StoredSession) -> bytes:
    tokens = session.tokens
    fields = [
        (_ACCESS, _pack_token(tokens.access_token)),
        (_EXPIRES, struct.pack(">d", tokens.expires_at)),
        (_REFRESH_EXPIRES, struct.pack(">d", tokens.refresh_expires_at)),
        (_SCOPE, tokens.scope.encode()),
        (_SUBJECT, tokens.subject.encode()),
        (_SEALED, struct.pack(">d", session.sealed_at)),
        (_CREATED, struct.pack(">d", session.created)),
    ]
    if tokens.refresh_token is not None:
        fields.append((_REFRESH, _pack_token(tokens.refresh_token)))
    if tokens.id_token is not None:
        fields.append((_ID, _pack_token(tokens.id_token)))
    if tokens.issued_at is not None:
        fields.append((_ISSUED, struct.pack(">d", tokens.issued_at)))
    if tokens.rejected_after_refresh:
        fields.append((_REJECTED, b""))
    body = b"".join(_field(tag, data) for tag, data in fields)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return FORMAT + compressor.compress(body) + compressor.flush()


def decode(data: bytes) -> StoredSession:
    if data[:1] != FORMAT:
        raise MalformedSession("unknown format")
    inflater = zlib.decompressobj(-15, zdict=_ZDICT)
    try:
        body = inflater.decompress(data[1:], MAX_PLAINTEXT)
    except zlib.error:
        raise MalformedSession("not deflate data") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise MalformedSession("too large or truncated")
    fields = _parse_fields(body)
    try:
        tokens = TokenSet(
            access_token=_unpack_token(fields[_ACCESS]),
            refresh_token=_unpack_token(fields[_REFRESH]) if _REFRESH in fields else None,
            id_token=_unpack_token(fields[_ID]) if _ID in fields else None,
            expires_at=_double(fields[_EXPIRES]),
            refresh_expires_at=_double(fields[_REFRESH_EXPIRES]),
            scope=fields[_SCOPE].decode(),
            subject=fields[_SUBJECT].decode(),
            issued_at=_double(fields[_ISSUED]) if _ISSUED in fields else None,
            rejected_after_refresh=_REJECTED in fields,
        )
        return StoredSession(tokens, _double(fields[_CREATED]), _double(fields[_SEALED]))
    except (KeyError, UnicodeDecodeError, struct.error):
        raise MalformedSession("missing or malformed field") from None


def _field(tag: int, data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("field too long for a session cookie")
    return struct.pack(">BH", tag, len(data)) + data


def _parse_fields(body: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    offset = 0
    while offset < len(body):
        if offset + 3 > len(body):
            raise MalformedSession("truncated field header")
        tag, length = struct.unpack_from(">BH", body, offset)
        offset += 3
        if offset + length > len(body) or tag in fields:
            raise MalformedSession("truncated or repeated field")
        fields[tag] = body[offset : offset + length]
        offset += length
    return fields


def _pack_token(token: str) -> bytes:
    segments = token.split(".")
    if len(segments) == 3:
        decoded = [b64.decode(s) for s in segments]
        raw = [r for r in decoded if r is not None]
        # Only when decoding is lossless: re-encoding must give the very same token.
        if len(raw) == 3 and ".".join(b64.encode(r) for r in raw) == token:
            return _JWT + b"".join(struct.pack(">H", len(r)) + r for r in raw)
    return _RAW + token.encode()


def _unpack_token(data: bytes) -> str:
    kind, rest = data[:1], data[1:]
    if kind == _RAW:
        return rest.decode()
    if kind != _JWT:
        raise MalformedSession("unknown token packing")
    segments = []
    for _ in range(3):
        if len(rest) < 2:
            raise MalformedSession("truncated token")
        (length,) = struct.unpack_from(">H", rest)
        if len(rest) < 2 + length:
            raise MalformedSession("truncated token")
        segments.append(b64.encode(rest[2 : 2 + length]))
        rest = rest[2 + length :]
    if rest:
        raise MalformedSession("trailing token bytes")
    return ".".join(segments)


def _double(data: bytes) -> float:
    (value,) = struct.unpack(">d", data)
    return float(value)


def open_sealed(keys: KeyRing, sealed: bytes, purpose: bytes) -> StoredSession | None:
    """Open and decode a sealed session; None for anything tampered, foreign or malformed."""
    plaintext = keys.open(sealed, purpose)
    if plaintext is None:
        return None
    try:
        return decode(plaintext)
    except MalformedSession:
        return None


def seal(keys: KeyRing, stored: StoredSession, purpose: bytes) -> bytes:
    return keys.seal(encode(stored), purpose)
