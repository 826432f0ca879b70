"""TCP_INFO (Linux ``struct tcp_info``, include/uapi/linux/tcp.h): RTT, cwnd, retransmits,
send window; and the connection's congestion control (TCP_CONGESTION)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["TcpInfo", "congestion_control", "read_tcp_info"]

#: ``struct tcp_info`` up to ``tcpi_total_retrans`` (104 bytes): 8 u8 fields, then u32s.
_LAYOUT = struct.Struct("=8B24I")
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
#: ``tcpi_snd_wnd`` (Linux 5.4 on): the u32 at this offset, after the u64 rate and byte
#: counters that follow ``tcpi_total_retrans``; a shorter answer (an older kernel) has none.
_SND_WND_AT = 228
_WANT = _SND_WND_AT + 4


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The kernel's view of one TCP connection (RTTs in microseconds, cwnd in bytes)."""

    rtt_us: int
    rttvar_us: int
    snd_cwnd_bytes: int
    pmtu: int
    total_retrans: int
    unacked: int
    snd_wnd: int = 0  # the peer's advertised receive window, bytes (0: not known)


def read_tcp_info(sock: socket.socket) -> TcpInfo | None:
    """TCP_INFO for ``sock``, or None where the platform has none (not Linux, closed)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _WANT)
    except OSError:
        return None
    if len(raw) < _LAYOUT.size:
        return None
    f = _LAYOUT.unpack_from(raw)
    u32 = f[8:]
    # u32 order: rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent
    # last_ack_sent last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh
    # snd_cwnd advmss reordering rcv_rtt rcv_space total_retrans
    snd_mss = u32[2]
    return TcpInfo(
        rtt_us=u32[15],
        rttvar_us=u32[16],
        snd_cwnd_bytes=u32[18] * snd_mss,
        pmtu=u32[13],
        total_retrans=u32[23],
        unacked=u32[4],
        snd_wnd=struct.unpack_from("=I", raw, _SND_WND_AT)[0] if len(raw) >= _WANT else 0,
    )


def congestion_control(sock: socket.socket) -> str:
    """The congestion control algorithm of ``sock`` ("cubic", "bbr"), or "" if unknown."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, 16)
    except OSError:
        return ""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")
