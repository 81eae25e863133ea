"""What the proxy reads of a verified event: its name and call id, for the app's headers,
the access log and the metrics. Nothing else: ``from`` and ``to`` are phone numbers,
personal data the proxy never logs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

KNOWN = frozenset({"newCall", "answer", "hangup", "dtmf"})
_TOKEN = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # a header value and a log field as is
MAX_FIELDS = 1000


@dataclass(frozen=True)
class Event:
    name: str | None = None
    call_id: str | None = None

    @property
    def label(self) -> str:
        """A bounded metrics label."""
        if self.name is None:
            return "unknown"
        return self.name if self.name in KNOWN else "other"


def read_event(body: bytes) -> Event:
    """From the form-encoded body (sipgate's, verified); odd values are left out."""
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FIELDS)
    except ValueError:  # more fields than any event has
        return Event()
    return Event(_token(fields.get("event")), _token(fields.get("callId")))


def _token(values: list[str] | None) -> str | None:
    if not values or _TOKEN.fullmatch(values[0]) is None:
        return None
    return values[0]
