"""The per-stream socket options a test asks for (iperf3's -w, -N, -M, -S), for both ends.

iperf3 applies them to every data socket (``iperf_tcp_connect``, ``iperf_tcp_accept``,
``iperf_udp_*``): ``-w`` as SO_SNDBUF/SO_RCVBUF, ``-N`` as TCP_NODELAY, ``-M`` as TCP_MAXSEG,
``-S`` as IP_TOS (IPv4) or IPV6_TCLASS (IPv6). A value the kernel refuses is an error, never
silently dropped.
"""

from __future__ import annotations

import socket

from ..proto.iperf3 import BenchParams

__all__ = ["OptionRefused", "apply_stream_options", "set_tos"]


TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


class OptionRefused(OSError):
    """The kernel refused a socket option a test asked for; ``option`` says which
    (``window``, ``nodelay``, ``mss``, ``tos``, ``congestion control``)."""

    def __init__(self, option: str, value: int | str, exc: OSError) -> None:
        super().__init__(exc.errno, f"cannot set {option} {value}: {exc.strerror or exc}")
        self.option = option


def apply_stream_options(sock: socket.socket, params: BenchParams) -> None:
    """Set the options ``params`` asks for on one data socket (OptionRefused if the kernel
    refuses one)."""
    tcp = params.protocol == "tcp"
    settings: list[tuple[str, int, int, int]] = []
    if params.window:
        settings.append(("window", socket.SOL_SOCKET, socket.SO_SNDBUF, params.window))
        settings.append(("window", socket.SOL_SOCKET, socket.SO_RCVBUF, params.window))
    if params.nodelay and tcp:
        settings.append(("nodelay", socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
    if params.mss and tcp:
        settings.append(("mss", socket.IPPROTO_TCP, socket.TCP_MAXSEG, params.mss))
    for option, level, name, value in settings:
        try:
            sock.setsockopt(level, name, value)
        except OSError as exc:
            raise OptionRefused(option, value, exc) from exc
    if params.tos:
        try:
            set_tos(sock, params.tos)
        except OSError as exc:
            raise OptionRefused("tos", params.tos, exc) from exc
    if params.congestion and tcp:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, params.congestion.encode())
        except OSError as exc:
            raise OptionRefused("congestion control", params.congestion, exc) from exc


def set_tos(sock: socket.socket, tos: int) -> None:
    """IP_TOS on IPv4; on IPv6 both IPV6_TCLASS and IP_TOS (an IPv4 peer of a dual-stack
    socket is reached through the IPv4 option), as iperf3's ``iptos`` handling does."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
        peer = _peer_host(sock)
        if peer.startswith("::ffff:") or not peer:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


def _peer_host(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return ""
