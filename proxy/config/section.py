"""What every section of the schema is built from: the Struct base and the ``Check`` rule
(in a module of its own, so that a section may live outside schema.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import msgspec

if TYPE_CHECKING:
    IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
else:
    # msgspec takes one custom type per field: the base class both families share.
    IPNetwork = ipaddress._BaseNetwork


@dataclass(frozen=True)
class Check:
    """A rule msgspec cannot state: returns the value (possibly normalised) or raises
    ValueError with the problem."""

    check: Callable[[Any], Any]


Positive = Annotated[float, msgspec.Meta(gt=0)]

LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]


def loopback() -> list[IPNetwork]:
    return [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def model_dump(self) -> dict[str, Any]:
        """The settings as plain data, secrets masked; named as pydantic named it."""
        data: dict[str, Any] = msgspec.to_builtins(self, enc_hook=str)
        return data
