"""proxy.config.convert: values into the schema's types by msgspec, every problem named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config import Listen, OAuth2, PersonalAccessToken, Secret, Upstream
from proxy.config.auth_schema import Service
from proxy.config.convert import section
from proxy.config.problems import Problem
from proxy.config.schema import Document, ForwardAuth
from proxy.config.session_schema import Session


def converted(cls: type[Any], data: dict[str, Any]) -> Any:
    problems: list[Problem] = []
    result = section(cls, data, (), problems)
    assert problems == []
    return result


def problems_of(cls: type[Any], data: object) -> list[str]:
    problems: list[Problem] = []
    assert section(cls, data, ("x",), problems) is None
    return [str(p) for p in problems]


@pytest.mark.parametrize(
    ("written", "expected"),
    [("8080", 8080), (" 9100 ", 9100), ("9100.0", 9100), (9000, 9000), (9000.0, 9000)],
)
def test_port_converts_when_written_as_a_number_or_a_string(written: object, expected: int) -> None:
    assert converted(Listen, {"port": written}).port == expected


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("1", True),
        (1, True),
        ("false", False),
        ("Off", False),
        ("no", False),
        ("0", False),
        (False, False),
    ],
)
def test_boolean_converts_when_spelled_as_the_environment_does(
    written: object, expected: bool
) -> None:
    assert converted(Upstream, {"forward_cookies": written}).forward_cookies is expected


def test_strings_convert_to_the_types_msgspec_does_not_know() -> None:
    service = converted(Service, {"state_file": "/var/lib/x"})
    assert service.state_file == Path("/var/lib/x")
    pat = converted(PersonalAccessToken, {"token": "0123"})
    assert pat.token == Secret("0123")  # a secret stays a string: its zero is kept
    forward_auth = converted(ForwardAuth, {"allowed_networks": ["10.0.0.0/8", "::1/128"]})
    assert [str(n) for n in forward_auth.allowed_networks] == ["10.0.0.0/8", "::1/128"]


def test_checks_normalise_when_the_value_is_valid() -> None:
    assert converted(Upstream, {"url": "https://api.example/"}).url == "https://api.example"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"port": "80.5"}, "x.port: must be a whole number"),
        ({"port": True}, "x.port: must be a whole number"),
        ({"port": 70000}, "x.port: must be at most 65535"),
        ({"port": -1}, "x.port: must be at least 0"),
        ({"host": 5}, "x.host: must be a string"),
        ({"host": None}, "x.host: must be a string"),
        ({"hots": "a"}, "x.hots: unknown setting (check the spelling)"),
    ],
)
def test_problem_names_key_and_rule_when_a_value_is_refused(
    data: dict[str, Any], expected: str
) -> None:
    assert problems_of(Listen, data) == [expected]


def test_pattern_refuses_a_trailing_newline() -> None:
    found = problems_of(PersonalAccessToken, {"token_id": "token-AB12cd\n"})
    assert found == ["x.token_id: must match the pattern '^token-[A-Za-z0-9]{6}$'"]


def test_literal_problem_lists_the_choices() -> None:
    assert problems_of(OAuth2, {"client_auth": "jwt"}) == [
        "x.client_auth: must be 'client_secret_post' or 'client_secret_basic'"
    ]


def test_every_bad_list_item_is_named_when_several_are_bad() -> None:
    assert problems_of(OAuth2, {"scopes": ["all", 1, None]}) == [
        "x.scopes.1: must be a string",
        "x.scopes.2: must be a string",
    ]
    assert problems_of(ForwardAuth, {"allowed_networks": ["10.0.0.1/8", 5]}) == [
        "x.allowed_networks.0: must be an IPv4 or IPv6 network such as 10.0.0.0/8",
        "x.allowed_networks.1: must be a string",
    ]


def test_list_checks_run_when_every_item_converted() -> None:
    (found,) = problems_of(Session, {"keys": ["not-a-key"]})
    assert found.startswith("x.keys: key #1: ")
    assert "not-a-key" not in found


def test_problems_follow_the_schema_order_and_unknown_keys_come_last() -> None:
    data = {"typo": 1, "forward_cookies": "maybe", "connect_timeout": 0}
    assert problems_of(Upstream, data) == [
        "x.connect_timeout: must be greater than 0",
        "x.forward_cookies: must be a boolean (true or false)",
        "x.typo: unknown setting (check the spelling)",
    ]


def test_nested_sections_are_walked_and_none_keeps_an_optional_section_off() -> None:
    document = converted(Document, {"management": {"listen": {"port": "9090"}}})
    assert document.management.listen == Listen(port=9090)
    assert converted(Document, {"management": {"listen": None}}).management.listen is None
    assert problems_of(Document, {"listen": 5}) == ["x.listen: must be a mapping of settings"]
