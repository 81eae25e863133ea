"""Real Redis topologies on loopback, made of Debian's redis-server and redis-sentinel:
a 3-primary Cluster (``redis-cli --cluster create``) and a Sentinel set (1 primary,
1 replica, 3 sentinels) whose primary a test can kill by PID.

Both set passwords, the sentinels a different one from the data nodes', so a test shows
the proxy keeps the two apart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port
from tests.support.redis_server import REDIS
from tests.support.redis_server import Node as BaseNode
from tests.support.tls import LoopbackCertificates

SENTINEL = "/usr/bin/redis-sentinel"
REDIS_CLI = "/usr/bin/redis-cli"
MASTER = "sessions"
NODE_PASSWORD = "node-password-7d3f0c"
SENTINEL_PASSWORD = "sentinel-password-91be2a"


def topologies_available() -> tuple[bool, str]:
    missing = [tool for tool in (REDIS, SENTINEL, REDIS_CLI) if shutil.which(tool) is None]
    if missing:
        return False, f"Debian's {', '.join(missing)} is not installed"
    return True, ""


def cli(port: int, *args: str, login: tuple[str, ...] = ("-a", NODE_PASSWORD)) -> str:
    """One redis-cli command against a loopback node; its output."""
    command = [REDIS_CLI, "-p", str(port), "--no-auth-warning", *login, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


@dataclass(frozen=True)
class Tls:
    """A node's certificate and the CA file it trusts for the nodes it dials."""

    certificates: LoopbackCertificates
    trusts: Path

    def directives(self, port: int) -> list[tuple[str, str]]:
        c = self.certificates
        return [("port", "0"), ("tls-port", str(port)), ("tls-cert-file", str(c.cert_file)),
                ("tls-key-file", str(c.key_file)), ("tls-ca-cert-file", str(self.trusts)),
                ("tls-auth-clients", "no"), ("tls-replication", "yes")]  # fmt: skip

    def server_args(self, port: int) -> list[str]:
        return [arg for name, value in self.directives(port) for arg in (f"--{name}", value)]

    def client_args(self) -> tuple[str, ...]:
        return ("--tls", "--cacert", str(self.certificates.ca_file))


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and _free(port + 10000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Node(BaseNode):
    """A node of a topology, with what redis-cli needs to log in to it."""

    def __init__(self, binary: str, work: Path, port: int, args: list[str]) -> None:
        super().__init__(binary, work, port, args)
        self.login: tuple[str, ...] = ("-a", NODE_PASSWORD)  # redis-cli's

    def cli(self, *args: str) -> str:
        return cli(self.port, *args, login=self.login)


def _data_node(work: Path, port: int, extra: list[str], tls: Tls | None = None) -> Node:
    listen = tls.server_args(port) if tls else ["--port", str(port)]
    args = [
        *listen, "--bind", "127.0.0.1", "--dir", str(work), "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--requirepass", NODE_PASSWORD, "--masterauth", NODE_PASSWORD,
        *extra,
    ]  # fmt: skip
    node = Node(REDIS, work, port, args)
    node.login += tls.client_args() if tls else ()
    return node


CLUSTER_NODE = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000"]  # fmt: skip


class RedisClusterOf3:
    def __init__(self, work: Path) -> None:
        ports = [_cluster_port() for _ in range(3)]
        self.nodes = [_data_node(work / str(port), port, CLUSTER_NODE) for port in ports]

    @property
    def url(self) -> str:
        """A seed: one node; the client finds the others."""
        return f"redis://:{NODE_PASSWORD}@127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        self.nodes[0].cli("--cluster", "create", *addresses, "--cluster-replicas", "0",
            "--cluster-yes")  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def node_of(self, key: str) -> int:
        """The port of the primary that serves the key's hash slot."""
        slot = int(self.nodes[0].cli("cluster", "keyslot", key))
        for line in self.nodes[0].cli("cluster", "nodes").splitlines():
            # <id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for slots in fields[8:]:
                low, _, high = slots.partition("-")
                if int(low) <= slot <= int(high or low):
                    return port
        raise RuntimeError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSet:
    """1 primary + 1 replica, watched by 3 sentinels (quorum 2) under MASTER; with
    ``tls`` (the data nodes', the sentinels'), everything speaks TLS only."""

    def __init__(self, work: Path, tls: tuple[Tls, Tls] | None = None) -> None:
        primary_port, replica_port = free_port(), free_port()
        self.tls = tls
        nodes_tls = tls[0] if tls else None
        self.primary = _data_node(work / "primary", primary_port, [], nodes_tls)
        self.replica = _data_node(
            work / "replica", replica_port, ["--replicaof", "127.0.0.1", str(primary_port)],
            nodes_tls,
        )  # fmt: skip
        self.sentinels = [
            self._sentinel(work / f"sentinel-{i}", free_port(), primary_port) for i in range(3)
        ]

    def _sentinel(self, work: Path, port: int, primary_port: int) -> Node:
        work.mkdir(parents=True, exist_ok=True)
        tls = self.tls[1] if self.tls else None
        directives = tls.directives(port) if tls else [("port", str(port))]
        listen = "".join(f"{name} {value}\n" for name, value in directives)
        (work / "sentinel.conf").write_text(
            f"{listen}bind 127.0.0.1\ndir {work}\n"
            f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel auth-pass {MASTER} {NODE_PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        node = Node(SENTINEL, work, port, [str(work / "sentinel.conf")])
        node.login = ("-a", SENTINEL_PASSWORD, *(tls.client_args() if tls else ()))
        return node

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    def start(self) -> None:
        for node in (self.primary, self.replica, *self.sentinels):
            node.start()
        self.wait_until(lambda: "master_link_status:up" in self.replica.cli("info"))
        self.wait_until(lambda: self._known_sentinels() >= 2)

    def primary_port(self) -> int:
        answer = self.sentinels[0].cli("sentinel", "get-master-addr-by-name", MASTER)
        return int(answer.split()[1])

    def _known_sentinels(self) -> int:
        fields = self.sentinels[0].cli("sentinel", "master", MASTER).split()
        return int(fields[fields.index("num-other-sentinels") + 1])

    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Sentinel set did not get there in time")

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.primary):
            node.stop()
