"""What a configuration problem is: the key it is about and what is wrong with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def dotted(key: tuple[str, ...]) -> str:
    return ".".join(key) or "(top level)"


def named_source(problem: Problem, from_env: Mapping[str, str]) -> Problem:
    """The problem, naming the environment variable that set its key (or a section of it)."""
    key = problem.key
    source = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
    if source:
        return Problem(key, f"{problem.message} (set by {source})")
    return problem
