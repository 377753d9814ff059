"""Whether a host names this machine, read the way the resolver reads it.

The fail-closed settings refuse addresses that only work on a laptop. A text comparison with
`127.0.0.1` misses what `getaddrinfo` and `inet_aton` accept as the same address: `127.1`,
`2130706433`, `0x7f000001`, `0177.0.0.1`, `::ffff:127.0.0.1`, `0.0.0.0` (which a client
reaches as this machine), `LocalHost.`. Names are not looked up: a setting is read before
the network may be up, and a name that resolves to loopback only on some nodes is a
deployment's own choice.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names every resolver (or /etc/hosts as distributions ship it) maps to loopback.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def parse_ip(host: str) -> IPAddress | None:
    """The address a numeric host stands for (IPv4-mapped IPv6 as IPv4), or None for a name."""
    text = host.strip().strip("[]").split("%", 1)[0]  # brackets of a URL, an IPv6 zone
    address: IPAddress
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        try:
            # inet_aton's forms: a.b.c.d, a.b.c, a.b, a, each part decimal, octal or hex.
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_local_name(host: str) -> bool:
    name = host.strip().rstrip(".").lower()
    return name in LOCAL_NAMES or name.endswith(".localhost")


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a name or an address in any spelling) is this machine's loopback."""
    if not host:
        return False
    address = parse_ip(host)
    return address.is_loopback if address is not None else _is_local_name(host)


def is_this_machine(host: str | None) -> bool:
    """Whether a client connecting to `host` reaches this machine: loopback or unspecified."""
    if not host:
        return False
    address = parse_ip(host)
    if address is not None and address.is_unspecified:
        return True
    return is_loopback(host)
