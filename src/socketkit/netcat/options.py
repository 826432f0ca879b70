"""Everything a ``connect`` or ``listen`` session is configured with, in one frozen record.

The CLI fills it from argparse; library users may build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .eof import EofPolicy
from .limits import DEFAULT_MAX_CONNS, DEFAULT_MAX_PER_SOURCE

__all__ = ["NetcatOptions", "TlsOptions"]


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings (``--tls`` and friends). Verification is on unless ``insecure``."""

    ca_file: str | None = None
    insecure: bool = False
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    cert_file: str | None = None
    key_file: str | None = None
    #: listen: require client certificates signed by this CA (mutual TLS).
    client_ca_file: str | None = None
    #: connect: trust exactly the certificate with this SHA-256 fingerprint (``AA:BB:…``,
    #: upper case), instead of a CA and the name.
    pin: str | None = None


@dataclass(frozen=True)
class NetcatOptions:
    """One netcat session's settings. Times are seconds; ``None`` means no limit."""

    host: str | None = None
    port: int = 0
    unix_path: str | None = None
    udp: bool = False
    family: int = 0  # 0 (any), 4 or 6
    numeric: bool = False
    source_host: str | None = None
    source_port: int | None = None
    connect_timeout: float | None = None
    idle_timeout: float | None = None
    policy: EofPolicy = field(default_factory=EofPolicy)
    send_only: bool = False
    recv_only: bool = False
    crlf: bool = False
    hex_dump: str | None = None  # None, "-" (stderr) or a path
    output: str | None = None
    keep_open: bool = False
    #: listen -k: sessions at once, in all and from one source address (None: no limit).
    max_conns: int | None = DEFAULT_MAX_CONNS
    max_per_source: int | None = DEFAULT_MAX_PER_SOURCE
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    broker: bool = False
    chat: bool = False
    exec_argv: tuple[str, ...] | None = None
    sh_exec: str | None = None
    tls: TlsOptions | None = None
    verbose: bool = False
    json: bool = False
    #: UDP listen: a peer's session ends after this many idle seconds.
    udp_session_idle: float = 60.0
    #: listen -u: the multicast group to join, the senders to accept (source-specific; empty:
    #: any), the interface to join on (a name, an index or a local address).
    multicast_group: str | None = None
    multicast_sources: tuple[str, ...] = ()
    multicast_interface: str | None = None
    #: connect -u: TTL / hop limit of multicast datagrams, and whether this host's own
    #: members get them too (``None``: the kernel's defaults, 1 and on).
    multicast_ttl: int | None = None
    multicast_loop: bool | None = None
    force_copy: bool = False

    @property
    def executes(self) -> bool:
        return self.exec_argv is not None or self.sh_exec is not None
