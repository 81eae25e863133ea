"""No token, cookie, client secret or PAT in any log line of the whole test run.

Runs last (see conftest.py); the watch collected every secret the suite issued or saw:
the PAT, the client secret, every Authorization header the upstream received, every
cookie the proxy set, every code, refresh token, grant and session the IdP issued.
"""

from tests.support.secrets import WATCH


def test_no_secret_in_any_log_line() -> None:
    assert WATCH.lines, "no log line was captured: the watch is not attached"
    assert WATCH.secrets
    assert WATCH.leaks() == []
