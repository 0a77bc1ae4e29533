"""Where the admin tools' probes may go: the operator's network policy.

Every signed-in user of the app writes `waha_servers.api_url`, and the admin tools
(`monitor`, `servers test`, `sessions reconcile --live`) then connect there from the
operator's network. So each probe's host is resolved once, every address it
resolves to is checked, and the connection goes only to a checked address (no
second look-up that could answer differently).

Refused always, before any connection: link-local (169.254.0.0/16, fe80::/10:
cloud metadata services live there), unspecified (0.0.0.0/8, ::), multicast and
broadcast. Allowed unless the operator denies them in `WAHA_DB_PROBE_DENY` (a
comma-separated list of `loopback`, `private`, `public`): loopback (127.0.0.0/8,
::1), private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 shared, fc00::/7
unique local), and the rest (public). Self-hosted WAHA often lives on a private
network, hence the default; an operator whose servers are all public sets
`WAHA_DB_PROBE_DENY=private,loopback`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from waha_db.errors import UserError

ENVIRONMENT_VARIABLE = "WAHA_DB_PROBE_DENY"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused whatever the operator says: nothing of WAHA's lives there, and some of it answers anyone.
ALWAYS_REFUSED = {
    "link-local": ("169.254.0.0/16", "fe80::/10"),
    "unspecified": ("0.0.0.0/8", "::/128"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
    "broadcast": ("255.255.255.255/32",),
}
# Allowed unless denied; what is in neither list is public.
DENIABLE = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"),
}
CATEGORIES = ("loopback", "private", "public")
_NETWORKS = [
    (category, ipaddress.ip_network(network))
    for table in (ALWAYS_REFUSED, DENIABLE)
    for category, networks in table.items()
    for network in networks
]


class PolicyError(UserError):
    """The network policy given by the operator cannot be read."""


def category(address: Address) -> str:
    """`link-local`, `unspecified`, `multicast`, `broadcast`, `loopback`, `private` or `public`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:169.254.169.254 goes where 169.254.169.254 goes
    for name, network in _NETWORKS:
        if address.version == network.version and address in network:
            return name
    return "public"


@dataclass(frozen=True)
class NetworkPolicy:
    """The categories of address a probe may not connect to, besides those always refused."""

    denied: frozenset[str] = frozenset()

    def refusal(self, address: Address) -> str | None:
        """Why a probe may not connect to `address` (the category's words), or None when it may."""
        found = category(address)
        if found in ALWAYS_REFUSED:
            return f"{found} address, never probed"
        if found in self.denied:
            return f"{found} address, denied by {ENVIRONMENT_VARIABLE}"
        return None

    def describe(self) -> str:
        refused = ", ".join(ALWAYS_REFUSED)
        denied = ", ".join(sorted(self.denied)) or "nothing else"
        return f"probes never go to {refused} addresses; denied by {ENVIRONMENT_VARIABLE}: {denied}"


def parse_policy(text: str | None) -> NetworkPolicy:
    """`private,loopback` -> the policy that denies both; empty or None denies nothing more."""
    words = [word.strip().lower() for word in (text or "").split(",") if word.strip()]
    unknown = [word for word in words if word not in CATEGORIES]
    if unknown:
        raise PolicyError(
            f"{ENVIRONMENT_VARIABLE}={text!r}: {', '.join(unknown)} is not a kind of address; "
            f"use a comma-separated list of {', '.join(CATEGORIES)} (for example {ENVIRONMENT_VARIABLE}=private,loopback), "
            "or leave it empty"
        )
    return NetworkPolicy(frozenset(words))


def policy_from_environment(environment: Mapping[str, str] | None = None) -> NetworkPolicy:
    """The operator's policy, from WAHA_DB_PROBE_DENY."""
    return parse_policy((os.environ if environment is None else environment).get(ENVIRONMENT_VARIABLE))
