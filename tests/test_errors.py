"""The error tree of proxy/errors.py: each class its status and code, every 503 with
Retry-After, and the drawing (the generated docs/reference/errors.md) naming every code
there is, with what to do."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.errors import ProxyError, ServiceUnavailable


def tree() -> list[type[ProxyError]]:
    found: list[type[ProxyError]] = []
    pending: list[type[ProxyError]] = [ProxyError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_has_its_own_code_and_an_error_status() -> None:
    codes = [cls.code for cls in tree()]
    assert len(codes) == len(set(codes))
    assert all(400 <= cls.status < 600 for cls in tree())


def test_every_service_unavailable_says_when_to_retry() -> None:
    unavailable = [cls for cls in tree() if issubclass(cls, ServiceUnavailable)]
    assert {cls.__name__ for cls in unavailable} >= {
        "IdPUnavailable",
        "StoreUnavailable",
        "ServiceIdentityMissing",
    }
    for cls in unavailable:
        response = cls().to_response()
        assert response.status == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.text is not None
        assert json.loads(response.text)["error"] == cls.code


def test_the_drawn_tree_names_every_class() -> None:
    drawing = (Path(__file__).parents[1] / "docs" / "reference" / "errors.md").read_text()
    for cls in tree():
        assert f"`{cls.code}` | {cls.status} | {cls.message} | {cls.what_to_do} |" in drawing
