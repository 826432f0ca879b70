"""The socket error queue (``IP_RECVERR``/``IPV6_RECVERR``, ip(7), ipv6(7)): ICMP errors about
packets we sent, with the address of the router that sent them, readable without privilege."""

from __future__ import annotations

import socket
import struct

__all__ = ["enable", "read_error"]

IP_RECVERR, IPV6_RECVERR = 11, 25
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
_EXTERR = struct.Struct("IBBBBII")  # struct sock_extended_err (linux/errqueue.h)


def enable(sock: socket.socket, ipv6: bool) -> None:
    """Queue ICMP errors on ``sock`` instead of dropping them."""
    if ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def read_error(sock: socket.socket) -> tuple[str, int, int, bytes] | None:
    """(offender address, ICMP type, code, start of our packet) from the error queue, or None
    when it is empty (never blocks). For ICMP datagram sockets the data is our echo header.
    Reading an entry also clears the socket's pending error (``SO_ERROR``) for it."""
    try:
        data, ancdata, _flags, _addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        return None
    for _level, _kind, value in ancdata:
        if len(value) < _EXTERR.size + 8:
            continue
        _errno, origin, kind, code, _pad, _info, _data = _EXTERR.unpack_from(value)
        if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
            continue
        offender = value[_EXTERR.size :]
        family = struct.unpack_from("H", offender)[0]
        if family == socket.AF_INET6:
            addr = socket.inet_ntop(socket.AF_INET6, offender[8:24])
        else:
            addr = socket.inet_ntop(socket.AF_INET, offender[4:8])
        return addr, kind, code, data[:8]
    return None
