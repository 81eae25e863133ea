"""sipgate-auth-proxy: an authenticating reverse proxy in front of the sipgate REST API."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source of truth: pyproject.toml's version, as the installed package records it.
    __version__ = version("sipgate-auth-proxy")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
