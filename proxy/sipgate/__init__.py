"""Facts about sipgate's API the proxy ships as data: its operations and OAuth2 scopes."""
