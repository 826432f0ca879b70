"""The iperf3 control protocol, sans-I/O: cookie, state bytes, length-prefixed JSON.

Facts from esnet/iperf ``src/iperf_api.h``, ``iperf_api.c``, ``iperf_client_api.c`` and
``iperf_server_api.c`` (see docs/bench.md):

* the client opens the control connection and sends a 37-byte cookie (36 characters of
  ``a-z2-7`` and a NUL); data streams send the same cookie on their own connections;
* every state is one signed byte; ``SERVER_ERROR`` is followed by two big-endian 32-bit
  integers (``i_errno``, ``errno``);
* JSON messages are a 4-byte big-endian length followed by the text (no NUL);
* stream ids go 1, 3, 4, 5, ... (2 is skipped on purpose by ``iperf_add_stream``).

:class:`ClientConnection` and :class:`ServerConnection` are h11-style state machines: bytes
in (``receive_data``), events out (``next_event``), and ``send_*`` methods returning bytes.
Every transition is in :data:`_TRANSITIONS`. The peer breaking the protocol raises
:class:`~socketkit.RemoteProtocolError`; calling a ``send_*`` out of turn raises
:class:`~socketkit.LocalProtocolError`.
"""

from __future__ import annotations

import enum
import json
import math
import re
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "COOKIE_ALPHABET",
    "COOKIE_SIZE",
    "DEFAULT_PORT",
    "DEFAULT_TCP_LEN",
    "DEFAULT_UDP_LEN",
    "MAX_PARAMS_JSON",
    "MAX_RESULTS_JSON",
    "NEED_DATA",
    "ClientConnection",
    "CookieReceived",
    "JsonReceived",
    "Phase",
    "ServerConnection",
    "ServerErrorReceived",
    "State",
    "StateReceived",
    "StreamResult",
    "BenchParams",
    "ExchangeResults",
    "encode_json",
    "make_cookie",
    "stream_ids",
    "validate_cookie",
]

#: iperf3's well-known port (TCP control and data; UDP data for ``-u``).
DEFAULT_PORT: Final = 5201
#: ``COOKIE_SIZE`` in iperf.h: 36 characters and a NUL.
COOKIE_SIZE: Final = 37
COOKIE_ALPHABET: Final = b"abcdefghijklmnopqrstuvwxyz234567"
#: ``MAX_PARAMS_JSON_STRING`` in iperf_api.h: the server reads at most this much.
MAX_PARAMS_JSON: Final = 8 * 1024
#: Results carry one object per stream (at most 128 streams in iperf3) and optional server
#: output text; 1 MiB bounds our memory while fitting any real iperf3 peer.
MAX_RESULTS_JSON: Final = 1024 * 1024
#: iperf3's default block size for TCP (``DEFAULT_TCP_BLKSIZE``, 128 KiB).
DEFAULT_TCP_LEN: Final = 128 * 1024
#: iperf3's default UDP datagram length when the path MTU is unknown (``DEFAULT_UDP_BLKSIZE``).
DEFAULT_UDP_LEN: Final = 1460
#: iperf3 refuses more parallel streams than this (``MAX_STREAMS``).
MAX_STREAMS: Final = 128
#: Largest UDP payload over IPv4 (65535 - 20 - 8); iperf3's ``MAX_UDP_BLOCKSIZE``.
MAX_UDP_LEN: Final = 65535 - 28
#: The header of an iperf3 UDP datagram with 64-bit counters (the minimum length).
MIN_UDP_LEN: Final = 16
#: A TCP block: iperf3's ``MAX_BLOCKSIZE`` is 1 MiB.
MAX_TCP_LEN: Final = 1024 * 1024
#: iperf3's ``MAX_TCP_BUFFER``: the largest ``-w`` (socket buffer size).
MAX_WINDOW: Final = 512 * 1024 * 1024
#: iperf3's ``MAX_MSS`` (9 KiB): the largest ``-M``.
MAX_MSS: Final = 9 * 1024


class State(enum.IntEnum):
    """The control state bytes (iperf_api.h). Negative values are sent as signed bytes."""

    TEST_START = 1
    TEST_RUNNING = 2
    TEST_END = 4
    PARAM_EXCHANGE = 9
    CREATE_STREAMS = 10
    SERVER_TERMINATE = 11
    CLIENT_TERMINATE = 12
    EXCHANGE_RESULTS = 13
    DISPLAY_RESULTS = 14
    IPERF_START = 15
    IPERF_DONE = 16
    ACCESS_DENIED = -1
    SERVER_ERROR = -2


def encode_state(state: State) -> bytes:
    """One signed byte."""
    return struct.pack("b", int(state))


def decode_state(byte: int) -> State:
    """The :class:`State` for an unsigned byte value; unknown values are a peer error."""
    value = byte - 256 if byte > 127 else byte
    try:
        return State(value)
    except ValueError:
        raise RemoteProtocolError(f"iperf3 control: unknown state byte {byte:#04x}") from None


def make_cookie(token: bytes | None = None) -> bytes:
    """A fresh 37-byte cookie. ``token`` (36+ random bytes) makes it deterministic for tests."""
    raw = secrets.token_bytes(36) if token is None else bytes(token[:36])
    if len(raw) < 36:
        raise LocalProtocolError("make_cookie: token must be at least 36 bytes")
    return bytes(COOKIE_ALPHABET[b % 32] for b in raw) + b"\0"


def validate_cookie(data: bytes | bytearray | memoryview) -> bytes:
    """Check a received cookie; returns it as bytes or raises RemoteProtocolError."""
    cookie = bytes(data)
    if len(cookie) != COOKIE_SIZE:
        raise RemoteProtocolError(f"iperf3 control: cookie of {len(cookie)} bytes, not 37")
    body, nul = cookie[:-1], cookie[-1]
    if nul != 0 or any(c not in COOKIE_ALPHABET for c in body):
        raise RemoteProtocolError("iperf3 control: malformed cookie", partial=cookie)
    return cookie


def encode_json(obj: Mapping[str, Any], *, max_size: int = MAX_RESULTS_JSON) -> bytes:
    """A 4-byte big-endian length and the compact JSON text."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    if len(text) > max_size:
        raise LocalProtocolError(f"iperf3 control: JSON of {len(text)} bytes > {max_size}")
    return struct.pack("!I", len(text)) + text


def stream_ids(count: int) -> list[int]:
    """Stream ids as iperf3 numbers them: 1, 3, 4, 5, ... (``iperf_add_stream`` skips 2)."""
    return [1, *range(3, count + 2)][:count]


# --- params and results ------------------------------------------------------------------------


def _num(obj: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RemoteProtocolError(f"iperf3 JSON: {key!r} must be a number, got {value!r}")
    return value


def _int(obj: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = _num(obj, key, default)
    if value != int(value):
        raise RemoteProtocolError(f"iperf3 JSON: {key!r} must be an integer, got {value!r}")
    return int(value)


def _flag(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):  # iperf3 sends some flags as 1/0
        return value != 0
    raise RemoteProtocolError(f"iperf3 JSON: {key!r} must be a boolean, got {value!r}")


@dataclass(frozen=True, slots=True)
class BenchParams:
    """What the client asks for (``send_parameters``/``get_parameters`` in iperf_api.c).

    ``latency_size``/``gro`` are socketkit extensions (keys ``socketkit_latency`` and
    ``socketkit_gro``); a real iperf3 server ignores unknown keys.
    """

    protocol: str = "tcp"
    time: float = 10.0
    num: int = 0
    blockcount: int = 0
    parallel: int = 1
    reverse: bool = False
    bidirectional: bool = False
    length: int = DEFAULT_TCP_LEN
    bandwidth: int = 0
    omit: float = 0.0
    window: int = 0
    nodelay: bool = False
    mss: int = 0
    tos: int = 0
    udp_counters_64bit: bool = False
    client_version: str = ""
    latency_size: int = 0
    gro: bool = False
    zerocopy: bool = False
    #: -C: the TCP congestion control of the data connections ("" = the system's).
    congestion: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise LocalProtocolError(f"protocol must be tcp or udp, not {self.protocol!r}")
        if not 1 <= self.parallel <= MAX_STREAMS:
            raise LocalProtocolError(f"parallel must be 1..{MAX_STREAMS}, not {self.parallel}")
        low, high = (MIN_UDP_LEN, MAX_UDP_LEN) if self.protocol == "udp" else (1, MAX_TCP_LEN)
        if not low <= self.length <= high:
            raise LocalProtocolError(f"length must be {low}..{high}, not {self.length}")
        for name in ("num", "blockcount", "bandwidth", "window", "mss", "latency_size"):
            if getattr(self, name) < 0:
                raise LocalProtocolError(f"{name} must not be negative")
        if not (0 <= self.time <= 86400 and 0 <= self.omit <= 600):
            raise LocalProtocolError("time must be 0..86400 s and omit 0..600 s")
        if self.latency_size > MAX_TCP_LEN:
            raise LocalProtocolError(f"latency message size must be <= {MAX_TCP_LEN}")
        if self.window > MAX_WINDOW:
            raise LocalProtocolError(f"window must be <= {MAX_WINDOW}, not {self.window}")
        if self.mss > MAX_MSS:
            raise LocalProtocolError(f"MSS must be <= {MAX_MSS}, not {self.mss}")
        if not 0 <= self.tos <= 255:
            raise LocalProtocolError(f"TOS must be 0..255, not {self.tos}")
        if self.congestion and not _CONGESTION_NAME.fullmatch(self.congestion):
            raise LocalProtocolError(
                f"congestion control must be a name like cubic, not {self.congestion!r}"
            )

    @property
    def stream_count(self) -> int:
        """Data connections the client opens (twice ``parallel`` for ``--bidir``)."""
        return self.parallel * (2 if self.bidirectional else 1)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            self.protocol: True,
            "omit": self.omit,
            "time": self.time,
            "num": self.num,
            "blockcount": self.blockcount,
            "parallel": self.parallel,
            "len": self.length,
            "pacing_timer": 1000,
            "client_version": self.client_version,
        }
        if self.reverse:
            obj["reverse"] = True
        if self.bidirectional:
            obj["bidirectional"] = True
        if self.bandwidth:
            obj["bandwidth"] = self.bandwidth
        if self.window:
            obj["window"] = self.window
        if self.nodelay:
            obj["nodelay"] = True
        if self.mss:
            obj["MSS"] = self.mss
        if self.tos:
            obj["TOS"] = self.tos
        if self.udp_counters_64bit:
            obj["udp_counters_64bit"] = True
        if self.zerocopy:
            obj["zerocopy"] = True
        if self.latency_size:
            obj["socketkit_latency"] = self.latency_size
        if self.gro:
            obj["socketkit_gro"] = True
        if self.congestion:
            obj["congestion"] = self.congestion
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> BenchParams:
        """Validate a params object from the peer (RemoteProtocolError if unusable)."""
        if not isinstance(obj, dict):
            raise RemoteProtocolError("iperf3 params: not a JSON object")
        if _flag(obj, "sctp"):
            raise RemoteProtocolError("iperf3 params: SCTP is not supported")
        protocol = "udp" if _flag(obj, "udp") else "tcp"
        default_len = DEFAULT_UDP_LEN if protocol == "udp" else DEFAULT_TCP_LEN
        length = _int(obj, "len", default_len) or default_len
        version = obj.get("client_version", "")
        try:
            return cls(
                protocol=protocol,
                time=_num(obj, "time", 10),
                num=_int(obj, "num", 0),
                blockcount=_int(obj, "blockcount", 0),
                parallel=_int(obj, "parallel", 1),
                reverse=_flag(obj, "reverse"),
                bidirectional=_flag(obj, "bidirectional"),
                length=length,
                bandwidth=_int(obj, "bandwidth", 0),
                omit=_num(obj, "omit", 0),
                window=_int(obj, "window", 0),
                nodelay=_flag(obj, "nodelay"),
                mss=_int(obj, "MSS", 0),
                tos=_int(obj, "TOS", 0),
                udp_counters_64bit=_flag(obj, "udp_counters_64bit"),
                client_version=version if isinstance(version, str) else "",
                latency_size=_int(obj, "socketkit_latency", 0),
                gro=_flag(obj, "socketkit_gro"),
                zerocopy=_flag(obj, "zerocopy"),
                congestion=_congestion(obj),
                extra=obj,
            )
        except LocalProtocolError as exc:  # out-of-range values from the peer
            raise RemoteProtocolError(f"iperf3 params: {exc}") from None


@dataclass(frozen=True, slots=True)
class StreamResult:
    """One stream in the results exchange. ``jitter`` is in seconds, as on the wire."""

    id: int
    bytes: int
    retransmits: int = -1
    jitter: float = 0.0
    errors: int = 0
    packets: int = 0
    omitted_errors: int = 0
    omitted_packets: int = 0
    start_time: float = 0.0
    end_time: float = 0.0
    #: socketkit extensions (``socketkit_*`` keys; -1 = not reported, e.g. by iperf3).
    out_of_order: int = -1
    received: int = -1
    kernel_drops: int = -1
    rtt_us: int = -1
    duplicates: int = -1

    def to_json(self) -> dict[str, Any]:
        ext = {
            f"socketkit_{k}": v
            for k, v in (
                ("out_of_order", self.out_of_order),
                ("received", self.received),
                ("kernel_drops", self.kernel_drops),
                ("rtt_us", self.rtt_us),
                ("duplicates", self.duplicates),
            )
            if v >= 0
        }
        return ext | {
            "id": self.id,
            "bytes": self.bytes,
            "retransmits": self.retransmits,
            "jitter": self.jitter,
            "errors": self.errors,
            "omitted_errors": self.omitted_errors,
            "packets": self.packets,
            "omitted_packets": self.omitted_packets,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }

    @classmethod
    def from_json(cls, obj: Any) -> StreamResult:
        if not isinstance(obj, dict):
            raise RemoteProtocolError("iperf3 results: a stream is not a JSON object")
        return cls(
            id=_int(obj, "id"),
            bytes=_int(obj, "bytes"),
            retransmits=_int(obj, "retransmits"),
            jitter=_num(obj, "jitter"),
            errors=_int(obj, "errors"),
            packets=_int(obj, "packets"),
            omitted_errors=_int(obj, "omitted_errors", 0),
            omitted_packets=_int(obj, "omitted_packets", 0),
            start_time=_num(obj, "start_time", 0),
            end_time=_num(obj, "end_time", 0),
            out_of_order=_int(obj, "socketkit_out_of_order", -1),
            received=_int(obj, "socketkit_received", -1),
            kernel_drops=_int(obj, "socketkit_kernel_drops", -1),
            rtt_us=_int(obj, "socketkit_rtt_us", -1),
            duplicates=_int(obj, "socketkit_duplicates", -1),
        )


#: A congestion control name as the kernel spells them (TCP_CA_NAME_MAX is 16 with the NUL).
_CONGESTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def _congestion(obj: dict[str, Any]) -> str:
    value = obj.get("congestion", "")
    if not isinstance(value, str):
        raise RemoteProtocolError("iperf3 params: 'congestion' must be a string")
    return value


@dataclass(frozen=True, slots=True)
class ExchangeResults:
    """One side's results (``send_results``/``get_results``); CPU figures in percent."""

    streams: tuple[StreamResult, ...]
    cpu_util_total: float = 0.0
    cpu_util_user: float = 0.0
    cpu_util_system: float = 0.0
    sender_has_retransmits: int = 0
    congestion_used: str = ""

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "cpu_util_total": self.cpu_util_total,
            "cpu_util_user": self.cpu_util_user,
            "cpu_util_system": self.cpu_util_system,
            "sender_has_retransmits": self.sender_has_retransmits,
            "streams": [s.to_json() for s in self.streams],
        }
        if self.congestion_used:
            obj["congestion_used"] = self.congestion_used
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> ExchangeResults:
        """Validate like iperf3's ``get_results`` (missing keys fail with IERECVRESULTS)."""
        if not isinstance(obj, dict):
            raise RemoteProtocolError("iperf3 results: not a JSON object")
        streams = obj.get("streams")
        if not isinstance(streams, list) or len(streams) > 2 * MAX_STREAMS:
            raise RemoteProtocolError("iperf3 results: 'streams' must be a list")
        congestion = obj.get("congestion_used", "")
        return cls(
            streams=tuple(StreamResult.from_json(s) for s in streams),
            cpu_util_total=_num(obj, "cpu_util_total"),
            cpu_util_user=_num(obj, "cpu_util_user"),
            cpu_util_system=_num(obj, "cpu_util_system"),
            sender_has_retransmits=_int(obj, "sender_has_retransmits"),
            congestion_used=congestion if isinstance(congestion, str) else "",
        )


# --- events ---------------------------------------------------------------------------------


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: ``next_event()`` returns this when more bytes are needed.
NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class CookieReceived:
    cookie: bytes


@dataclass(frozen=True, slots=True)
class StateReceived:
    state: State


@dataclass(frozen=True, slots=True)
class ServerErrorReceived:
    """SERVER_ERROR with iperf3's ``i_errno`` and the OS ``errno``."""

    i_errno: int
    errno: int


@dataclass(frozen=True, slots=True)
class JsonReceived:
    """A JSON message: params (server side) or the peer's results. ``value`` is validated."""

    value: BenchParams | ExchangeResults


Event = CookieReceived | StateReceived | ServerErrorReceived | JsonReceived


class Phase(enum.Enum):
    """Where a control connection is. One enum for both roles."""

    COOKIE = "cookie"  # server: waiting for the cookie
    PARAM_EXCHANGE = "param_exchange"  # waiting for PARAM_EXCHANGE (client) / params (server)
    CREATE_STREAMS = "create_streams"
    TEST_START = "test_start"
    RUNNING = "running"
    EXCHANGE_RESULTS = "exchange_results"  # results going both ways
    DISPLAY_RESULTS = "display_results"
    DONE = "done"
    ERROR = "error"


_C, _S = "client", "server"
_ANY_TERMINATE = (State.SERVER_TERMINATE, State.CLIENT_TERMINATE)

#: (role, phase, state byte received) -> next phase. Anything not here is a peer error.
_TRANSITIONS: dict[tuple[str, Phase, State], Phase] = {
    # the client hears the server
    (_C, Phase.COOKIE, State.PARAM_EXCHANGE): Phase.PARAM_EXCHANGE,
    (_C, Phase.PARAM_EXCHANGE, State.CREATE_STREAMS): Phase.CREATE_STREAMS,
    (_C, Phase.CREATE_STREAMS, State.TEST_START): Phase.TEST_START,
    (_C, Phase.TEST_START, State.TEST_RUNNING): Phase.RUNNING,
    (_C, Phase.RUNNING, State.EXCHANGE_RESULTS): Phase.EXCHANGE_RESULTS,
    (_C, Phase.EXCHANGE_RESULTS, State.DISPLAY_RESULTS): Phase.DISPLAY_RESULTS,
    # the server hears the client
    (_S, Phase.RUNNING, State.TEST_END): Phase.EXCHANGE_RESULTS,
    (_S, Phase.DISPLAY_RESULTS, State.IPERF_DONE): Phase.DONE,
}


class _Connection:
    role: str

    def __init__(self, *, max_json: int) -> None:
        self._buf = bytearray()
        self._eof = False
        self.phase = Phase.COOKIE
        self.max_json = max_json
        self.peer_results: ExchangeResults | None = None
        self._want_json = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the control socket; ``b""`` means the peer closed."""
        if data:
            if self._eof:
                raise LocalProtocolError("receive_data after EOF")
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData:
        """The next event, or :data:`NEED_DATA`. Raises RemoteProtocolError on bad input."""
        if self.phase is Phase.ERROR:
            raise LocalProtocolError("the connection already failed")
        try:
            event = self._next_event()
        except RemoteProtocolError:
            self.phase = Phase.ERROR
            raise
        if event is NEED_DATA and self._eof:
            self.phase = Phase.ERROR
            raise RemoteProtocolError(
                f"iperf3 control: peer closed during {self.phase.value}", partial=bytes(self._buf)
            )
        return event

    def _next_event(self) -> Event | _NeedData:
        if self._want_json:
            return self._read_json()
        if not self._buf:
            return NEED_DATA
        state = decode_state(self._buf[0])
        if state is State.SERVER_ERROR:
            if len(self._buf) < 9:
                return NEED_DATA
            i_errno, err = struct.unpack_from("!ii", self._buf, 1)
            del self._buf[:9]
            self.phase = Phase.ERROR
            return ServerErrorReceived(i_errno, err)
        del self._buf[:1]
        if state is State.ACCESS_DENIED or state in _ANY_TERMINATE:
            self.phase = Phase.ERROR
            return StateReceived(state)
        nxt = _TRANSITIONS.get((self.role, self.phase, state))
        if nxt is None:
            raise RemoteProtocolError(
                f"iperf3 control: unexpected {state.name} ({int(state)}) "
                f"in phase {self.phase.value}"
            )
        self.phase = nxt
        self._on_state(state)
        return StateReceived(state)

    def _on_state(self, state: State) -> None:
        """Hook: what to expect after a state byte."""

    def _read_json(self) -> Event | _NeedData:
        if len(self._buf) < 4:
            return NEED_DATA
        (size,) = struct.unpack_from("!I", self._buf)
        if size > self.max_json:
            raise RemoteProtocolError(f"iperf3 control: JSON of {size} bytes > {self.max_json}")
        if len(self._buf) < 4 + size:
            return NEED_DATA
        text = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        self._want_json = False
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RemoteProtocolError(f"iperf3 control: invalid JSON ({exc})") from None
        return JsonReceived(self._decode_json(obj))

    def _decode_json(self, obj: Any) -> BenchParams | ExchangeResults:
        results = ExchangeResults.from_json(obj)
        self.peer_results = results
        return results

    def events(self) -> Iterator[Event]:
        """Every event available now."""
        while True:
            event = self.next_event()
            if isinstance(event, _NeedData):
                return
            yield event

    def _require(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise LocalProtocolError(f"not allowed in phase {self.phase.value}")


class ClientConnection(_Connection):
    """The client end of the control connection."""

    role = _C

    def __init__(self, *, cookie: bytes | None = None, max_json: int = MAX_RESULTS_JSON) -> None:
        super().__init__(max_json=max_json)
        self.cookie = validate_cookie(cookie) if cookie is not None else make_cookie()
        self._results_sent = False

    def start(self) -> bytes:
        """The cookie, to send right after connecting (also sent on every data stream)."""
        return self.cookie

    def send_params(self, params: BenchParams) -> bytes:
        self._require(Phase.PARAM_EXCHANGE)
        return encode_json(params.to_json(), max_size=MAX_PARAMS_JSON)

    def send_test_end(self) -> bytes:
        self._require(Phase.RUNNING, Phase.TEST_START)
        return encode_state(State.TEST_END)

    def send_results(self, results: ExchangeResults) -> bytes:
        self._require(Phase.EXCHANGE_RESULTS)
        if self._results_sent:
            raise LocalProtocolError("results already sent")
        self._results_sent = True
        return encode_json(results.to_json(), max_size=self.max_json)

    def send_done(self) -> bytes:
        self._require(Phase.DISPLAY_RESULTS)
        self.phase = Phase.DONE
        return encode_state(State.IPERF_DONE)

    def send_terminate(self) -> bytes:
        """CLIENT_TERMINATE (Ctrl-C): allowed at any time."""
        self.phase = Phase.ERROR
        return encode_state(State.CLIENT_TERMINATE)

    def _on_state(self, state: State) -> None:
        if state is State.EXCHANGE_RESULTS:
            self._want_json = True  # the server's results follow (after ours)


class ServerConnection(_Connection):
    """The server end of the control connection; the first bytes are the cookie."""

    role = _S

    def __init__(self, *, max_params: int = MAX_PARAMS_JSON, max_json: int = MAX_RESULTS_JSON):
        super().__init__(max_json=max_json)
        self.max_params = max_params
        self.cookie: bytes | None = None
        self.params: BenchParams | None = None

    def _next_event(self) -> Event | _NeedData:
        if self.phase is Phase.COOKIE:
            if len(self._buf) < COOKIE_SIZE:
                return NEED_DATA
            cookie = validate_cookie(self._buf[:COOKIE_SIZE])
            del self._buf[:COOKIE_SIZE]
            self.cookie = cookie
            self.phase = Phase.PARAM_EXCHANGE
            return CookieReceived(cookie)
        if self.phase is Phase.PARAM_EXCHANGE and self.params is None and not self._want_json:
            return NEED_DATA  # send_param_exchange() not called yet
        return super()._next_event()

    def _read_json(self) -> Event | _NeedData:
        if self.phase is Phase.PARAM_EXCHANGE and len(self._buf) >= 4:
            (size,) = struct.unpack_from("!I", self._buf)
            if size > self.max_params:
                raise RemoteProtocolError(
                    f"iperf3 control: params JSON of {size} bytes > {self.max_params}"
                )
        return super()._read_json()

    def _decode_json(self, obj: Any) -> BenchParams | ExchangeResults:
        if self.phase is Phase.PARAM_EXCHANGE:
            self.params = BenchParams.from_json(obj)
            return self.params
        return super()._decode_json(obj)

    def send_param_exchange(self) -> bytes:
        self._require(Phase.PARAM_EXCHANGE)
        self._want_json = True
        return encode_state(State.PARAM_EXCHANGE)

    def send_create_streams(self) -> bytes:
        self._require(Phase.PARAM_EXCHANGE)
        if self.params is None:
            raise LocalProtocolError("no params received yet")
        self.phase = Phase.CREATE_STREAMS
        return encode_state(State.CREATE_STREAMS)

    def send_test_start(self) -> bytes:
        """TEST_START then TEST_RUNNING (iperf3 sends them back to back)."""
        self._require(Phase.CREATE_STREAMS)
        self.phase = Phase.RUNNING
        return encode_state(State.TEST_START) + encode_state(State.TEST_RUNNING)

    def send_exchange_results(self) -> bytes:
        self._require(Phase.EXCHANGE_RESULTS)
        self._want_json = True  # the client's results come next
        return encode_state(State.EXCHANGE_RESULTS)

    def send_results(self, results: ExchangeResults) -> bytes:
        """Our results and DISPLAY_RESULTS (after the client's results arrived)."""
        self._require(Phase.EXCHANGE_RESULTS)
        if self.peer_results is None:
            raise LocalProtocolError("the client's results have not arrived")
        self.phase = Phase.DISPLAY_RESULTS
        return encode_json(results.to_json(), max_size=self.max_json) + encode_state(
            State.DISPLAY_RESULTS
        )

    def send_error(self, i_errno: int, err: int = 0) -> bytes:
        """SERVER_ERROR with iperf3's error number (allowed at any time)."""
        self.phase = Phase.ERROR
        return encode_state(State.SERVER_ERROR) + struct.pack("!ii", i_errno, err)

    def send_access_denied(self) -> bytes:
        self.phase = Phase.ERROR
        return encode_state(State.ACCESS_DENIED)

    def send_terminate(self) -> bytes:
        self.phase = Phase.ERROR
        return encode_state(State.SERVER_TERMINATE)
