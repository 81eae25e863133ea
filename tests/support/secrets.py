"""Every secret the test suite hands out or sees, and every log line the proxy writes,
so one test at the end can prove that none of the first appears in the second."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

from proxy.ops.log import JsonFormatter

MIN_LENGTH = 12


class SecretWatch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.secrets: set[str] = set()
        self.lines: list[str] = []
        self._formatter = JsonFormatter()

    def add(self, value: str | None) -> None:
        if value and len(value) >= MIN_LENGTH:
            self.secrets.add(value)
            scheme, _, credential = value.partition(" ")
            if scheme.lower() in ("bearer", "basic") and credential:
                self.secrets.add(credential)

    def add_idp_state(self, state_file: Path) -> None:
        """Codes, refresh tokens, grants and sessions the IdP issued (its state file)."""
        if not state_file.exists():
            return
        for entry in json.loads(state_file.read_text()).get("entries", []):
            self.add(str(entry.get("id", "")))

    def emit(self, record: logging.LogRecord) -> None:
        line = self._formatter.format(record)
        if record.exc_info and record.exc_info[1] is not None:
            line += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.lines.append(line)

    def leaks(self) -> list[tuple[str, str]]:
        """(fragment, line) pairs: a secret's whole value, head, tail or JWT signature."""
        found = []
        for secret in self.secrets:
            fragments = {secret, secret[: MIN_LENGTH * 2], secret[-MIN_LENGTH * 2 :]}
            if secret.count(".") == 2:
                fragments.add(secret.rsplit(".", 1)[1])
            for line in self.lines:
                for fragment in fragments:
                    if len(fragment) >= MIN_LENGTH and fragment in line:
                        found.append((fragment[:8] + "…", line[:200]))
        return found


WATCH = SecretWatch()
