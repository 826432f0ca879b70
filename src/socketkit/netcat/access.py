"""``--allow``/``--deny``: which peers may connect, by address or CIDR, enforced right after
``accept`` (or at a UDP peer's first datagram), before any byte of theirs is read."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .._errors import AddressError

__all__ = ["AccessList"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_entry(text: str, origin: str) -> Network:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise AddressError(f"{origin}: not an address or CIDR: {text.strip()!r}") from exc
    return net


def _entries(values: Iterable[str], option: str) -> list[Network]:
    """Each value is an address, a CIDR, a comma-separated list, or ``@FILE`` / a path of a
    file with one entry per line (``#`` starts a comment)."""
    nets: list[Network] = []
    for value in values:
        if value.startswith("@") or ("/" in value and not _looks_like_cidr(value)):
            path = value[1:] if value.startswith("@") else value
            try:
                with open(path, encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
            except OSError as exc:
                raise OSError(f"cannot read {option} file {path}: {exc.strerror}") from exc
            for number, line in enumerate(lines, 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    nets.append(_parse_entry(entry, f"{path}:{number}"))
            continue
        for part in value.split(","):
            if part.strip():
                nets.append(_parse_entry(part, option))
    return nets


def _looks_like_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


class AccessList:
    """Allow and deny lists. A peer is admitted if it matches an allow entry (or there are
    none) and matches no deny entry. Unix-socket peers have no address and are always admitted.
    IPv4-mapped IPv6 peers (``::ffff:a.b.c.d``) are checked as the IPv4 address."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = _entries(allow, "--allow")
        self.deny = _entries(deny, "--deny")

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def admits(self, host: str | None) -> bool:
        if host is None or not self.active:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True  # not an IP peer (Unix socket)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if self.allow and not any(addr in net for net in self.allow):
            return False
        return not any(addr in net for net in self.deny)
