"""What a worker's lock file holds: the outcome of one refresh, sealed with the session
keys and bound to the refresh token's digest ``k`` (no token in clear on disk).

    ok       the new token set
    dead     the IdP refused the refresh token
    failed   the IdP could not answer (``timed out``: it may have rotated the token unheard)

each with the time until which it stands. Bytes that do not open (tampered, torn by a
concurrent write, foreign) or an outcome past its time are no outcome.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.crypto.sealing import KeyRing, context
from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Outcome, RefreshFailed
from proxy.session import codec as session_codec
from proxy.session.codec import MalformedSession, StoredSession

OK, DEAD, FAILED, FAILED_TIMEOUT = b"o", b"d", b"f", b"t"
_HEADER = struct.Struct(">cd")  # kind, valid until (unix seconds)


@dataclass(frozen=True)
class Record:
    kind: bytes
    until: float
    tokens: TokenSet | None = None

    def use(self) -> TokenSet:
        """The token set this outcome holds; a failure is raised as the refresh's own."""
        if self.tokens is not None:
            return self.tokens
        if self.kind == DEAD:
            raise RefreshFailed(Outcome.FATAL, "refresh token already refused by the IdP")
        timed_out = self.kind == FAILED_TIMEOUT
        reason = "backing off" if timed_out else "refresh by another worker failed"
        raise RefreshFailed(Outcome.TRANSIENT, reason, timed_out=timed_out)


def seal(keys: KeyRing, k: str, record: Record, now: float) -> bytes:
    plaintext = _HEADER.pack(record.kind, record.until)
    if record.tokens is not None:
        plaintext += session_codec.encode(StoredSession(record.tokens, 0.0, now))
    return keys.seal(plaintext, context("refresh-outcome", k))


def open_sealed(keys: KeyRing, k: str, sealed: bytes, now: float) -> Record | None:
    """The outcome while it stands; None if there is none or it does not open."""
    plaintext = keys.open(sealed, context("refresh-outcome", k)) if sealed else None
    if plaintext is None or len(plaintext) < _HEADER.size:
        return None
    kind, until = _HEADER.unpack_from(plaintext)
    if until < now:
        return None
    if kind != OK:
        return Record(kind, until)
    try:
        stored = session_codec.decode(plaintext[_HEADER.size :])
    except MalformedSession:
        return None
    return Record(kind, until, stored.tokens)
