"""Reloading without a restart (issue 24), against real proxy processes and signals:
SIGHUP applies the security settings and names every key that needs a restart; a
clients_file change applies within the documented second; the file is read off the event
loop, regular files only, at most 1 MiB."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.client_credentials import token_sha256
from tests.conftest import PAT_ENV
from tests.support.processes import ROOT, free_port, running
from tests.support.secrets import WATCH

KEEP_ID, KEEP_TOKEN = "token-Keep01", str(uuid.uuid4())
EDGE_ID, EDGE_TOKEN = "token-Edge01", str(uuid.uuid4())
NEW_PAT = "9b2d4c1e-7f3a-4e5b-8c6d-0a1b2c3d4e5f"  # the reloaded PAT: needs a restart
for _id, _token in ((KEEP_ID, KEEP_TOKEN), (EDGE_ID, EDGE_TOKEN)):
    WATCH.add(_token)
    WATCH.add(base64.b64encode(f"{_id}:{_token}".encode()).decode())
WATCH.add(NEW_PAT)
ANY = ["GET /v2/account"]


def entry(name: str, token_id: str, token: str) -> dict[str, Any]:
    return {
        "name": name,
        "token_id": token_id,
        "token_sha256": token_sha256(token),
        "allow": list(ANY),
    }


def basic(token_id: str, token: str) -> dict[str, str]:
    raw = base64.b64encode(f"{token_id}:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


KEEP, EDGE = basic(KEEP_ID, KEEP_TOKEN), basic(EDGE_ID, EDGE_TOKEN)


def status(port: int, path: str, headers: dict[str, str] | None = None, source: str = "") -> int:
    """A GET's status, sent from the loopback address ``source`` (127.0.0.1 by default)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=5, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def until(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> float:
    """Seconds until ``condition`` holds; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def answers(port: int, wanted: int, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    return lambda: status(port, "/v2/account", headers) == wanted


def logged(log: Path, text: str, times: int = 1) -> Callable[[], bool]:
    return lambda: log.read_text().count(text) >= times


def write_atomically(path: Path, text: str) -> None:
    """As Kubernetes updates a mounted Secret: a new file takes the path's place."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    fresh.replace(path)


@dataclass(frozen=True)
class Proxy:
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes]

    def hangup(self) -> None:
        self.process.send_signal(signal.SIGHUP)


@contextmanager
def proxy_with(tmp_path: Path, document: dict[str, Any]) -> Iterator[Proxy]:
    """A proxy process started from a YAML file, with an upstream double."""
    upstream_port, port = free_port(), free_port()
    document = {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {"url": f"http://127.0.0.1:{upstream_port}"},
        "log": {"level": "info"},
        **document,
    }
    path, log = tmp_path / "proxy.yaml", tmp_path / "proxy.log"
    path.write_text(yaml.safe_dump(document))
    env = {k: "" for k in PAT_ENV}  # the mode comes from the file
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy", "--config", str(path)], port, env, log=log) as process,
    ):
        yield Proxy(port, path, log, process)


def pat_auth(**auth: Any) -> dict[str, Any]:
    pat = {
        "token_id": PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"],
        "token": PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"],
    }
    return {"mode": "personal_access_token", "personal_access_token": pat, **auth}


# --- item 4: SIGHUP applies the security settings, names the rest -------------------------------


def test_sighup_applies_anonymous_and_networks_and_names_every_key_needing_a_restart(
    tmp_path: Path,
) -> None:
    edge = entry("edge", EDGE_ID, EDGE_TOKEN) | {"networks": ["127.0.0.0/8"]}
    clients = [entry("keep", KEEP_ID, KEEP_TOKEN), edge]
    before = pat_auth(anonymous="allow", allowed_client_networks=["127.0.0.0/8"], clients=clients)
    with proxy_with(tmp_path, {"auth": before}) as proxy:
        port, path, log = proxy.port, proxy.config, proxy.log
        assert status(port, "/v2/account") == 200  # anonymous, from loopback
        assert status(port, "/v2/account", KEEP, source="127.0.0.2") == 200
        assert status(port, "/v2/account", EDGE) == 200
        document = yaml.safe_load(path.read_text())
        after = document["auth"] | {
            "anonymous": "deny",
            "allowed_client_networks": ["127.0.0.1/32"],
        }
        after["clients"] = [clients[0], edge | {"networks": ["127.0.0.2/32"]}]
        after["personal_access_token"] = after["personal_access_token"] | {"token": NEW_PAT}
        document |= {"auth": after, "listen": document["listen"] | {"port": free_port()}}
        document["upstream"]["read_timeout"] = 7
        path.write_text(yaml.safe_dump(document))
        proxy.hangup()
        until(answers(port, 401))  # anonymous: deny
        assert status(port, "/v2/account", KEEP) == 200
        assert status(port, "/v2/account", KEEP, source="127.0.0.2") == 403  # the guard's networks
        assert status(port, "/v2/account", EDGE) == 403  # edge's own networks
        until(logged(log, "needs a restart"))
    text = log.read_text()
    restart = [line for line in text.splitlines() if "needs a restart" in line]
    assert len(restart) == 1
    assert "needs a restart: listen.port, upstream.read_timeout, " in restart[0]
    assert "auth.personal_access_token.token" in restart[0]
    for applied in ("auth.anonymous", "auth.allowed_client_networks", "auth.clients"):
        assert applied not in restart[0]
    assert NEW_PAT not in text
    assert EDGE_TOKEN not in text


# --- item 5: a changed clients_file applies within the second docs/clients.md promises -------

DOCUMENTED_DELAY = 1.0  # docs/clients.md: "the proxy applies a changed file within 1 s"


def test_a_changed_clients_file_applies_within_the_documented_delay(tmp_path: Path) -> None:
    clients_file = tmp_path / "clients.yaml"
    with_keep = json.dumps([entry("keep", KEEP_ID, KEEP_TOKEN), entry("edge", EDGE_ID, EDGE_TOKEN)])
    without = json.dumps([entry("edge", EDGE_ID, EDGE_TOKEN)])
    clients_file.write_text(with_keep)
    delays = []
    with proxy_with(tmp_path, {"auth": pat_auth(clients_file=str(clients_file))}) as proxy:
        for trial in range(6):  # revoked, restored, revoked, ...
            text, wanted = (without, 401) if trial % 2 == 0 else (with_keep, 200)
            time.sleep(0.3 * (trial % 3))  # at different points of the watcher's cycle
            write_atomically(clients_file, text)
            delays.append(until(answers(proxy.port, wanted, KEEP)))
    print(  # the figure docs/clients.md states: pytest -s shows it
        f"clients_file applied after min {min(delays):.2f} s, median "
        f"{statistics.median(delays):.2f} s, max {max(delays):.2f} s ({len(delays)} trials)"
    )
    assert max(delays) <= DOCUMENTED_DELAY


# --- item 6: regular files only, at most 1 MiB, read off the event loop -------------------------

CAP = 1024 * 1024
# /healthz answers within this while a clients_file loads. Before the fix: not until the
# read ended (2+ s for a file near the cap, never for a FIFO). After: the parse in its
# thread shares the GIL with the event loop, a few hundredths of a second per answer.
PROMPT = 1.0


def many_clients(count: int, last: dict[str, Any]) -> str:
    """A clients file of ``count`` clients (one YAML entry each, as new-client prints
    them), ``last`` at the end."""
    entries = [
        entry(f"app-{n:05d}", f"token-{n:06d}", f"t{n}") | {"networks": ["10.0.0.0/8"]}
        for n in range(count - 1)
    ]
    return yaml.safe_dump([*entries, last])


def not_a_regular_file(kind: str, tmp_path: Path) -> Path:
    if kind == "device":
        return Path("/dev/zero")  # read until MemoryError, once
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)  # no writer ever comes: an open without O_NONBLOCK waits forever
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("# " + "x" * (3 * CAP) + "\n[]\n")  # 3 MiB
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("fifo", "is not a regular file (a FIFO)"),
        ("device", "is not a regular file (a device)"),
        ("directory", "is not a regular file (a directory)"),
        ("large", "is larger than 1 MiB"),
    ],
)
def test_a_clients_file_that_is_no_small_regular_file_is_a_config_error_at_start(
    tmp_path: Path, kind: str, reason: str
) -> None:
    path = not_a_regular_file(kind, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **PAT_ENV}
    env |= {"SIPGATE_PROXY_AUTH__CLIENTS_FILE": str(path), "SIPGATE_PROXY_LISTEN__PORT": "0"}
    started = subprocess.run(
        # The code before the fix read /dev/zero until MemoryError: not the machine's.
        ["sh", "-c", 'ulimit -v 2097152 && exec "$0" -m proxy', sys.executable],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert started.returncode == 2
    error = started.stderr.decode()
    assert f"config error: auth.clients_file: {path} {reason}" in error
    assert "Traceback" not in error


def health_latencies(port: int, stop: threading.Event, seen: list[float]) -> None:
    """Times /healthz answers until ``stop``; a timeout counts as 5 s."""
    while not stop.is_set():
        start = time.monotonic()
        try:
            answered = status(port, "/healthz") == 200
        except OSError:
            answered = False
        seen.append(time.monotonic() - start if answered else 5.0)
        time.sleep(0.01)


@contextmanager
def probing(port: int) -> Iterator[list[float]]:
    """/healthz asked again and again while the block runs: how long each answer took."""
    seen: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=health_latencies, args=(port, stop, seen))
    prober.start()
    try:
        yield seen
    finally:
        stop.set()
        prober.join(timeout=10)


def test_a_fifo_or_an_oversized_clients_file_keeps_the_old_list_and_probes_answer(
    tmp_path: Path,
) -> None:
    clients_file = tmp_path / "clients.yaml"
    clients_file.write_text(json.dumps([entry("keep", KEEP_ID, KEEP_TOKEN)]))
    with proxy_with(tmp_path, {"auth": pat_auth(clients_file=str(clients_file))}) as proxy:
        for kind in ("fifo", "large"):
            with probing(proxy.port) as latencies:
                not_a_regular_file(kind, tmp_path).replace(clients_file)
                proxy.hangup()  # SIGHUP reads it, and so does the watcher: neither waits
                until(logged(proxy.log, k_reason(kind), times=2))
                assert status(proxy.port, "/v2/account", KEEP) == 200  # the old list stays
            assert max(latencies) < PROMPT, latencies
    text = proxy.log.read_text()
    assert "SIGHUP: configuration not reloaded, nothing changed: auth.clients_file" in text
    assert "clients not reloaded, the old list stays: auth.clients_file" in text


def k_reason(kind: str) -> str:
    return "(a FIFO)" if kind == "fifo" else "is larger than 1 MiB"


def test_probes_answer_while_a_large_clients_file_is_loaded(tmp_path: Path) -> None:
    clients_file = tmp_path / "clients.yaml"
    clients_file.write_text(json.dumps([entry("edge", EDGE_ID, EDGE_TOKEN)]))
    large = many_clients(5500, entry("keep", KEEP_ID, KEEP_TOKEN))
    assert 0.9 * CAP < len(large) < CAP  # just under the cap: seconds of parsing
    with proxy_with(tmp_path, {"auth": pat_auth(clients_file=str(clients_file))}) as proxy:
        assert status(proxy.port, "/v2/account", KEEP) == 401
        with probing(proxy.port) as latencies:
            write_atomically(clients_file, large)
            loaded = until(answers(proxy.port, 200, KEEP), timeout=30)
    print(
        f"{len(large)} bytes loaded in {loaded:.2f} s; /healthz took up to {max(latencies):.3f} s"
    )
    assert loaded > PROMPT  # a read on the event loop would have held /healthz longer
    assert max(latencies) < PROMPT, f"/healthz took up to {max(latencies):.2f} s"
