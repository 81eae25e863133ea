"""sipgate-auth-proxy: an authenticating reverse proxy in front of the sipgate REST API."""

__version__ = "0.1.0"
