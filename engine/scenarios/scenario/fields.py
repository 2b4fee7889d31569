"""The field types of scenario files: names, addresses, prefixes, endpoints, keys, ports,
sizes and check conditions, each a constrained ``Annotated`` type whose validator turns a
bad value into a message saying what was expected and what was given::

    >>> parse_endpoint("[2001:db8::1]:80")
    (IPv6Address('2001:db8::1'), 80)
    >>> _endpoint(" 192.0.2.1:8080 "), _endpoint("[2001:DB8:0::1]:80")
    ('192.0.2.1:8080', '[2001:db8::1]:80')
    >>> endpoint_version(_endpoint("[::ffff:192.0.2.1]:80")), address_version("10.0.0.0/8")
    (6, 4)

The schema (``schema``) builds its sections from them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from engine.errors import HashKeyError, shown
from engine.packet.toeplitz import parse_key
from engine.scenarios.scenario.checks import parse_check
from engine.scenarios.scenario.limits import MAX_TEXT


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address, got {shown(value)}") from None


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"expected an address prefix like 198.51.100.0/24, "
                         f"got {shown(value)}") from None


def parse_endpoint(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``"192.0.2.1:80"`` or ``"[2001:db8::1]:80"`` → (address, port). ValueError otherwise."""
    text = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    if match is None:
        raise ValueError(f"expected ADDRESS:PORT like 192.0.2.1:80 or [2001:db8::1]:80, "
                         f"got {shown(value)}")
    host, port = (match.group(1), match.group(2)) if match.group(1) else (
        match.group(3), match.group(4))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address before the port, "
                         f"got {shown(host)}") from None
    if not 1 <= int(port) <= 65535:  # port 0 is reserved: no TCP or UDP flow uses it
        raise ValueError(f"expected a port 1-65535, got {int(port)}")
    return address, int(port)


def _endpoint(value: str) -> str:
    address, port = parse_endpoint(value)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def address_version(value: str) -> int:
    """The IP version of an ``IPAddress`` or ``Prefix`` value, without parsing it again:
    the validators write it as ``ipaddress`` does, IPv6 always with a colon, IPv4 never."""
    return 6 if ":" in value else 4


def endpoint_version(value: str) -> int:
    """The IP version of an ``Endpoint`` value, without parsing it again: the validator
    writes IPv6 as ``[ADDRESS]:PORT`` and IPv4 as ``ADDRESS:PORT``."""
    return 6 if value.startswith("[") else 4


def _key(value: str) -> str:
    try:
        parse_key(value)
    except HashKeyError as error:
        expected = error.expected if error.code != "key_hex" else (
            f"microsoft, symmetric, random:SEED or a hex key of {error.expected}")
        raise ValueError(f"expected {expected}, got {shown(value)}") from None
    return value.strip()


def _check(value: str | int | float) -> str | int | float:
    parse_check(value)
    return value


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
IPAddress = Annotated[str, Field(max_length=64, description="an IPv4 or IPv6 address"),
                      AfterValidator(_address)]
Prefix = Annotated[str, Field(max_length=64, description="an address prefix, e.g. 10.0.0.0/8"),
                   AfterValidator(_network)]
Endpoint = Annotated[str, Field(max_length=70,
                                description="ADDRESS:PORT, IPv6 as [ADDRESS]:PORT"),
                     AfterValidator(_endpoint)]
KeySpec = Annotated[str, Field(max_length=200,
                               description="microsoft, symmetric, random:SEED or 40+ hex bytes"),
                    AfterValidator(_key)]
Port = Annotated[int, Field(ge=0, le=65535)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Bytes = Annotated[int, Field(ge=0, le=100_000_000, description="bytes")]
CheckSpec = Annotated[str | int | float, AfterValidator(_check)]
HashTypeName = Literal["tcp-ipv4", "udp-ipv4", "ipv4", "tcp-ipv6", "udp-ipv6", "ipv6"]
