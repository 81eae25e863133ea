"""Defaults that follow from another key, applied once the document is converted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from proxy.config.schema import Document

# Browsers refuse a __Host- cookie with a Domain, so a sibling subdomain cannot plant one
# (cookie tossing); they also refuse it without Secure, which https always allows.
HTTPS_COOKIE_NAME = "__Host-sipgate_proxy"


def with_derived_defaults(document: Document, raw: Mapping[str, Any]) -> Document:
    """``session.cookie_name`` is ``__Host-sipgate_proxy`` behind an ``https://``
    public_url, unless it is set (kept as written) or ``session.cookie_secure`` is false."""
    session = raw.get("session")
    named = isinstance(session, dict) and session.get("cookie_name") is not None
    https = urlsplit(document.public_url).scheme == "https"
    if named or not https or document.session.cookie_secure is False:
        return document
    secure_name = msgspec.structs.replace(document.session, cookie_name=HTTPS_COOKIE_NAME)
    return msgspec.structs.replace(document, session=secure_name)
