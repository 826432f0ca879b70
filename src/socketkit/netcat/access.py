"""``--allow``/``--deny``: which peers may connect, by address or CIDR, enforced right after
``accept`` (or at a UDP peer's first datagram), before any byte of theirs is read.

An IPv4 peer has two spellings: ``10.1.1.1`` on an IPv4 socket and ``::ffff:10.1.1.1`` (an
IPv4-mapped IPv6 address, RFC 4291 §2.5.5.2) on a dual-stack one. A peer matches a rule if
either spelling does, so ``10.0.0.0/8`` and ``::ffff:10.0.0.0/104`` are the same rule and
neither can be bypassed by the socket family the listener happens to use.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Iterable

from .._errors import AddressError

__all__ = ["AccessList", "check_rule"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The IPv4-mapped prefix ``::ffff:0:0/96``.
_MAPPED = int(ipaddress.IPv6Address("::ffff:0.0.0.0"))


def _parse_entry(text: str, origin: str) -> Network:
    entry = text.strip()
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError as exc:
        raise AddressError(f"{origin}: not an address or CIDR: {entry!r}") from exc


def _parse_list(value: str, origin: str) -> list[Network]:
    """A comma-separated list of addresses and CIDRs; an empty item is an error."""
    return [_parse_entry(part, origin) for part in value.split(",")]


def _entries(values: Iterable[str], option: str) -> list[Network]:
    """Each value is an address, a CIDR, a comma-separated list of them, or ``@FILE``: a file
    with entries (or comma-separated lists) one per line, ``#`` starting a comment."""
    nets: list[Network] = []
    for value in values:
        if not value.startswith("@"):
            nets.extend(_parse_list(value, option))
            continue
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a UTF-8 text file"
            raise OSError(f"cannot read {option} file {path}: {reason}") from exc
        for number, line in enumerate(lines, 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                nets.extend(_parse_list(entry, f"{option} file {path}:{number}"))
    return nets


def check_rule(value: str) -> str:
    """argparse ``type=`` for ``--allow``/``--deny``: a malformed address list is a usage
    error before anything starts. ``@FILE`` is read later (a missing file is a local-file
    error, exit 9)."""
    if value.startswith("@"):
        if len(value) == 1:
            raise argparse.ArgumentTypeError("'@' needs a file name: @FILE")
        return value
    try:
        _parse_list(value, "rule")
    except AddressError as exc:
        message = str(exc).split(": ", 1)[1]
        if "," in value:
            message += f" in {value!r}"
        elif value.startswith(("/", ".")):
            message += " (a file of rules is written @FILE)"
        raise argparse.ArgumentTypeError(message) from None
    return value


def _spellings(addr: Address) -> tuple[Address, ...]:
    """The address and, for IPv4, its IPv4-mapped IPv6 form (and the reverse)."""
    if isinstance(addr, ipaddress.IPv4Address):
        return addr, ipaddress.IPv6Address(_MAPPED | int(addr))
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return addr, mapped
    return (addr,)


class AccessList:
    """Allow and deny lists. A peer is admitted if it matches an allow entry (or there are
    none) and matches no deny entry. Unix-socket peers have no address and are always admitted;
    a peer address that cannot be parsed is refused (fail closed). An IPv4 peer matches rules
    written as IPv4 or as IPv4-mapped IPv6 (``::ffff:a.b.c.d``), whichever way it arrived."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        allow = tuple(allow)
        self.allow = _entries(allow, "--allow")
        self.deny = _entries(deny, "--deny")
        if allow and not self.allow:
            # An allow list that names nobody (an empty file, only comments) must not read as
            # "no allow list": that would admit everyone. Say so rather than deny all quietly.
            raise AddressError(
                f"--allow {' '.join(allow)} names no address, so nobody could connect: list "
                "at least one, or leave --allow out"
            )

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def admits(self, host: str | None) -> bool:
        if host is None or not self.active:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        forms = _spellings(addr)
        if self.allow and not _matches(forms, self.allow):
            return False
        return not _matches(forms, self.deny)


def _matches(forms: tuple[Address, ...], nets: list[Network]) -> bool:
    return any(form in net for form in forms for net in nets if form.version == net.version)
