"""Classic BPF: tcpdump filter syntax compiled by the system libpcap (ctypes), run in the kernel.

libpcap is used only as a compiler (``pcap_open_dead`` + ``pcap_compile``) and, for files, as
the user-space interpreter (``pcap_offline_filter``); capture itself never goes through it.
Programs are plain tuples ``(code, jt, jf, k)``, the layout of ``struct sock_filter``
(linux/filter.h), so they can be packed for ``SO_ATTACH_FILTER`` or compared with
``tcpdump -dd``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import threading
from collections.abc import Sequence

from .._errors import MissingDependency, SocketkitError

__all__ = [
    "Instruction",
    "FilterError",
    "OfflineFilter",
    "attach",
    "compile_filter",
    "for_cooked_socket",
    "with_loopback_dedup",
]

#: One classic BPF instruction: (code, jt, jf, k), as in ``struct sock_filter``.
Instruction = tuple[int, int, int, int]

# linux/filter.h ancillary offsets ("SKF_AD_*"): loads from these read socket metadata.
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
PACKET_OUTGOING = 4  # linux/if_packet.h: a copy of a packet this host sent
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SLL2_HDR_LEN = 20  # LINKTYPE_LINUX_SLL2 header, synthesised in user space for "any"
DEFAULT_SNAPLEN = 262144  # tcpdump's default (-s 0 means this too)

_LIBPCAP_HINT = (
    "filters need the system libpcap: install the Debian package libpcap0.8 "
    "(apt-get install libpcap0.8)"
)
_PCAP_ERRBUF_SIZE = 256
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF

# BPF opcode fields (linux/bpf_common.h)
_BPF_LD, _BPF_LDX = 0x00, 0x01
_BPF_ABS, _BPF_IND, _BPF_MSH = 0x20, 0x40, 0xA0
_BPF_W, _BPF_H, _BPF_B = 0x00, 0x08, 0x10
_BPF_RET, _BPF_K = 0x06, 0x00
_BPF_JMP, _BPF_JEQ = 0x05, 0x10


class FilterError(SocketkitError, ValueError):
    """A filter expression did not compile; the message is libpcap's."""


class _BpfInsn(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgram(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn)))


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _PktHdr(ctypes.Structure):
    _fields_ = (("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32))


_lib: ctypes.CDLL | None = None
_lock = threading.Lock()  # pcap_compile is not thread-safe in old libpcaps


def _libpcap() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    names = [ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = (
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgram),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        )
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = (
            ctypes.POINTER(_BpfProgram),
            ctypes.POINTER(_PktHdr),
            ctypes.c_char_p,
        )
        _lib = lib
        return lib
    raise MissingDependency(_LIBPCAP_HINT)


def compile_filter(
    expression: str, linktype: int, *, snaplen: int = DEFAULT_SNAPLEN, optimize: bool = True
) -> list[Instruction]:
    """Compile a tcpdump filter expression for ``linktype`` (a LINKTYPE_/DLT_ value).

    Returns:
        the program as ``(code, jt, jf, k)`` tuples; accepting returns keep ``snaplen`` bytes.
    Raises:
        FilterError: the expression has a syntax error (libpcap's message).
        MissingDependency: libpcap is not installed (names the Debian package).
    """
    lib = _libpcap()
    with _lock:
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise FilterError(f"libpcap cannot open a dead handle for link type {linktype}")
        try:
            prog = _BpfProgram()
            rc = lib.pcap_compile(
                handle, ctypes.byref(prog), expression.encode(), int(optimize),
                _PCAP_NETMASK_UNKNOWN,
            )  # fmt: skip
            if rc != 0:
                message = (lib.pcap_geterr(handle) or b"syntax error").decode(errors="replace")
                raise FilterError(f"bad filter {expression!r}: {message}")
            try:
                return [
                    (prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                     prog.bf_insns[i].k)
                    for i in range(prog.bf_len)
                ]  # fmt: skip
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)


def accept_all(snaplen: int) -> list[Instruction]:
    """The program that keeps every packet, truncated to ``snaplen`` bytes in the kernel."""
    return [(_BPF_RET | _BPF_K, 0, 0, snaplen)]


def with_loopback_dedup(program: Sequence[Instruction], lo_ifindex: int) -> list[Instruction]:
    """Prefix ``program`` so the kernel drops the outgoing copy of packets on ``lo``.

    On loopback every packet passes a packet socket twice (PACKET_OUTGOING, then
    PACKET_HOST); libpcap removes the first in user space. Here the kernel does it, so the
    duplicate never reaches Python and counts stay exact. Outgoing packets on other
    interfaces are kept (they appear only once).
    """
    off = SKF_AD_OFF & 0xFFFFFFFF
    prefix: list[Instruction] = [
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, off + SKF_AD_PKTTYPE),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 3, PACKET_OUTGOING),
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, off + SKF_AD_IFINDEX),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, 0, 1, lo_ifindex),
        (_BPF_RET | _BPF_K, 0, 0, 0),
    ]
    return prefix + list(program)


#: ``-Q`` directions, as tcpdump names them
DIRECTIONS = ("in", "out", "inout")


def with_direction(program: Sequence[Instruction], direction: str) -> list[Instruction]:
    """Prefix ``program`` so the kernel keeps only packets received (``"in"``) or sent
    (``"out"``, packet type PACKET_OUTGOING) by this host; ``"inout"`` keeps both. On ``lo``
    (whose outgoing copy :func:`with_loopback_dedup` drops) ``in`` keeps every packet and
    ``out`` none, as tcpdump ``-Q`` there."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if direction == "inout":
        return list(program)
    off = SKF_AD_OFF & 0xFFFFFFFF
    jump_true, jump_false = (0, 1) if direction == "in" else (1, 0)
    prefix: list[Instruction] = [
        (_BPF_LD | _BPF_W | _BPF_ABS, 0, 0, off + SKF_AD_PKTTYPE),
        (_BPF_JMP | _BPF_JEQ | _BPF_K, jump_true, jump_false, PACKET_OUTGOING),
        (_BPF_RET | _BPF_K, 0, 0, 0),
    ]
    return prefix + list(program)


def for_cooked_socket(program: Sequence[Instruction]) -> list[Instruction] | None:
    """Rewrite a program compiled for LINKTYPE_LINUX_SLL2 to run on a ``SOCK_DGRAM`` socket.

    A cooked socket's packets start at the network header; the SLL2 header exists only in the
    file. Loads past the header move back by its length; the protocol, interface index and
    packet type fields become ancillary loads (as libpcap does). Returns ``None`` when the
    program reads other header fields: the caller then filters in user space.
    """
    out: list[Instruction] = []
    for code, jt, jf, k in program:
        cls = code & 0x07
        mode = code & 0xE0
        if cls in (_BPF_LD, _BPF_LDX) and mode in (_BPF_ABS, _BPF_IND, _BPF_MSH):
            if k >= SLL2_HDR_LEN:
                k -= SLL2_HDR_LEN
            elif mode == _BPF_ABS and cls == _BPF_LD:
                size = code & 0x18
                ancillary = {
                    (0, _BPF_H): SKF_AD_PROTOCOL,
                    (4, _BPF_W): SKF_AD_IFINDEX,
                    (10, _BPF_B): SKF_AD_PKTTYPE,
                }.get((k, size))
                if ancillary is None:
                    return None
                code = _BPF_LD | _BPF_W | _BPF_ABS
                k = (SKF_AD_OFF & 0xFFFFFFFF) + ancillary
            else:
                return None
        out.append((code, jt, jf, k))
    return out


def pack(program: Sequence[Instruction]) -> bytes:
    """The instructions as the kernel's ``struct sock_filter`` array."""
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


def attach(sock: socket.socket, program: Sequence[Instruction]) -> None:
    """Attach ``program`` to ``sock`` with ``SO_ATTACH_FILTER`` (the kernel runs it)."""
    code = ctypes.create_string_buffer(pack(program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class OfflineFilter:
    """A compiled filter run in user space (``pcap_offline_filter``), for reading files."""

    def __init__(self, expression: str, linktype: int, *, snaplen: int = DEFAULT_SNAPLEN) -> None:
        self.expression = expression
        program = compile_filter(expression, linktype, snaplen=snaplen)
        self._lib = _libpcap()
        self._insns = (_BpfInsn * len(program))(*(_BpfInsn(*insn) for insn in program))
        self._prog = _BpfProgram(len(program), self._insns)
        self._hdr = _PktHdr()

    def matches(self, data: bytes, orig_len: int | None = None) -> bool:
        """Whether the packet passes the filter (``orig_len`` defaults to ``len(data)``)."""
        self._hdr.caplen = len(data)
        self._hdr.len = len(data) if orig_len is None else orig_len
        return bool(
            self._lib.pcap_offline_filter(ctypes.byref(self._prog), ctypes.byref(self._hdr), data)
        )
