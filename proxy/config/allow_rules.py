"""What a client may call (``auth.clients[].allow``): rules ``"METHOD[,METHOD…] PATH"``.

In a rule's path, ``*`` stands for exactly one segment and a final ``**`` for the rest (one
segment or more). Methods compare exactly (HTTP methods are case-sensitive: ``get`` is not
``GET``). Rules are matched against a path's segments in its one canonical spelling
(``auth/clients/paths.py``). Here because the configuration checks rules when it loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_METHOD = re.compile(r"[A-Z]{1,16}\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()+,;=:@-]+\Z")  # a literal rule segment


@dataclass(frozen=True)
class AllowRule:
    methods: frozenset[str]
    segments: tuple[str, ...]  # literal segments, "*" (one) or a final "**" (the rest)

    def allows(self, method: str, path: tuple[str, ...]) -> bool:
        if method not in self.methods:
            return False
        rule = self.segments
        if rule and rule[-1] == "**":
            head = rule[:-1]
            return len(path) > len(head) and _same(head, path[: len(head)])
        return len(path) == len(rule) and _same(rule, path)


def _same(rule: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return all(want == "*" or want == got for want, got in zip(rule, path, strict=True))


def parse_rule(text: str) -> AllowRule:
    """``"GET,HEAD /v2/history/**"``; ValueError naming what is wrong."""
    methods_text, space, path = text.strip().partition(" ")
    if not space or not path.startswith("/"):
        raise ValueError(f"{text!r}: expected 'METHOD[,METHOD] /path'")
    methods = methods_text.split(",")
    if not all(_METHOD.match(m) for m in methods):
        raise ValueError(f"{text!r}: methods are upper-case names joined by ','")
    segments = tuple(path.strip()[1:].split("/"))
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**" and not last:
            raise ValueError(f"{text!r}: '**' may only end a path")
        if segment not in ("*", "**") and not _SEGMENT.match(segment):
            raise ValueError(f"{text!r}: segment {segment!r} is not a plain path segment")
    return AllowRule(frozenset(methods), segments)
