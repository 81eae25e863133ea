"""Where settings come from, merged into one mapping: the YAML file, then the
``SIPGATE_PROXY_*`` environment over it, then ``*_file`` secrets (a Kubernetes secret
mounted as a file). Values stay as written; ``convert.py`` gives them their types."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxy.config.problems import ConfigError, Problem

ENV_PREFIX = "SIPGATE_PROXY_"

# (section path, secret key, file key, one value per line?)
SECRET_FILES = (
    (("auth", "oauth2"), "client_secret", "client_secret_file", False),
    (("auth", "personal_access_token"), "token", "token_file", False),
    (("session",), "keys", "keys_file", True),
    (("session",), "redis_url", "redis_url_file", False),
    (("session",), "redis_password", "redis_password_file", False),
    (("session",), "redis_sentinel_password", "redis_sentinel_password_file", False),
    (("forward_auth",), "secret", "secret_file", False),
)


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def read(path: Path | None, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged settings and, for each dotted key set from the environment, the
    variable that set it."""
    problems: list[Problem] = []
    raw = read_yaml(path, problems)
    from_env = overlay_environment(raw, environ, problems)
    read_secret_files(raw, problems)
    if problems:
        raise ConfigError(problems)
    return raw, from_env


def read_yaml(path: Path | None, problems: list[Problem]) -> dict[str, Any]:
    if path is None:
        return {}
    data = read_yaml_value(path, "--config", problems)
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem("--config", f"{path} must hold a mapping of settings"))
        return {}
    return data


def read_yaml_value(path: Path, key: str, problems: list[Problem]) -> Any:
    """The file's YAML document, or None with the problem (under ``key``) added."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        problems.append(Problem(key, f"cannot read {path}: {err.strerror}"))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(key, f"{path} is not UTF-8 text"))
        return None
    return parse_yaml(text, path, key, problems)


def parse_yaml(text: str, path: Path, key: str, problems: list[Problem]) -> Any:
    """The text's YAML document (read from ``path``), or None with the problem added."""
    import yaml  # imported here: only a config file needs the parser (0.8 MB, 25 ms)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problems.append(Problem(key, f"{path} is not valid YAML{where}"))
    return None


def overlay_environment(
    raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]
) -> dict[str, str]:
    """Apply SIPGATE_PROXY_* variables; return which dotted keys each one set."""
    from_env: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            problems.append(Problem(name, "malformed variable name"))
        elif _set(raw, path, parse_env_value(value), name, problems):
            from_env[".".join(path)] = name
    return from_env


def _set(
    raw: dict[str, Any], path: list[str], value: Any, name: str, problems: list[Problem]
) -> bool:
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            problems.append(Problem(name, f"{'.'.join(path)} is not a section"))
            return False
        node = child
    node[path[-1]] = value
    return True


def parse_env_value(value: str) -> Any:
    # Lists and mappings may be written inline (YAML flow style); scalars stay
    # strings and msgspec converts them, so a secret like "0123" keeps its zero.
    if not value.lstrip().startswith(("[", "{")):
        return value
    words = _plain_words(value)
    if words is not None:
        return words
    import yaml  # imported here: the usual inline list, "[key1, key2]", needs no parser

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.+/=-]+")
# Plain words that YAML 1.1 reads as booleans, null or something else than a string.
_YAML_NOT_STRINGS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "="})


def _plain_words(value: str) -> list[str] | None:
    """``[a, b]`` as YAML reads it when every item is a word YAML surely reads as a
    string (keys, scopes, networks); None for anything else (the caller asks YAML)."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    words = [word.strip() for word in text[1:-1].split(",")]
    if words == [""]:
        return []
    for word in words:
        if _PLAIN_WORD.fullmatch(word) is None or word.lower() in _YAML_NOT_STRINGS:
            return None
        # Numbers and dates start with a digit, sign or dot and contain no "/" or "=".
        if word[0] in "+-.0123456789" and "/" not in word and "=" not in word:
            return None
    return words


def read_secret_files(raw: dict[str, Any], problems: list[Problem]) -> None:
    for section_path, key, file_key, many in SECRET_FILES:
        section = _section(raw, section_path)
        if section is None or section.get(file_key) is None:
            continue
        dotted = ".".join((*section_path, file_key))
        if section.get(key):
            problems.append(Problem(dotted, f"set either {key} or {file_key}, not both"))
            continue
        lines = _secret_lines(Path(str(section.pop(file_key))), dotted, problems)
        if lines:
            section[key] = lines if many else lines[0]


def _secret_lines(path: Path, dotted: str, problems: list[Problem]) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        problems.append(Problem(dotted, f"cannot read the file: {reason}"))
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        problems.append(Problem(dotted, "the file is empty"))
    return lines


def _section(raw: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = raw
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
