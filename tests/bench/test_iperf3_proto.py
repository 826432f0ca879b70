"""The sans-I/O iperf3 control protocol: no sockets, two state machines wired together."""

from __future__ import annotations

import json
import struct

import pytest

from socketkit import LocalProtocolError, RemoteProtocolError
from socketkit.proto.iperf3 import (
    COOKIE_SIZE,
    MAX_PARAMS_JSON,
    NEED_DATA,
    ClientConnection,
    CookieReceived,
    JsonReceived,
    Phase,
    ServerConnection,
    ServerErrorReceived,
    State,
    StateReceived,
    StreamResult,
    encode_json,
    make_cookie,
    stream_ids,
    validate_cookie,
)
from socketkit.proto.iperf3 import (
    BenchParams as Params,
)
from socketkit.proto.iperf3 import (
    ExchangeResults as Results,
)

COOKIE = make_cookie(bytes(range(36)))


def test_cookie_shape() -> None:
    cookie = make_cookie()
    assert len(cookie) == COOKIE_SIZE == 37
    assert cookie[-1] == 0
    assert all(c in b"abcdefghijklmnopqrstuvwxyz234567" for c in cookie[:-1])
    assert validate_cookie(cookie) == cookie
    assert COOKIE == b"abcdefghijklmnopqrstuvwxyz234567abcd\0"


@pytest.mark.parametrize(
    "bad", [b"A" * 36 + b"\0", b"a" * 37, b"a" * 36, b"a" * 35 + b"!\0", b"\xff" * 37]
)
def test_bad_cookie_is_a_remote_error(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        validate_cookie(bad)
    server = ServerConnection()
    server.receive_data(bad.ljust(37, b"x"))
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    assert server.phase is Phase.ERROR


def test_stream_ids_skip_two() -> None:
    assert stream_ids(1) == [1]
    assert stream_ids(3) == [1, 3, 4]
    assert stream_ids(6) == [1, 3, 4, 5, 6, 7]


def test_json_framing_is_big_endian_length_then_text() -> None:
    frame = encode_json({"a": 1})
    assert frame[:4] == struct.pack("!I", len(frame) - 4)
    assert json.loads(frame[4:]) == {"a": 1}
    with pytest.raises(LocalProtocolError):
        encode_json({"x": "y" * 100}, max_size=10)


def _pump(a: ClientConnection | ServerConnection, data: bytes) -> list[object]:
    a.receive_data(data)
    return list(a.events())


def test_happy_path_client_and_server_wired_together() -> None:
    client, server = ClientConnection(cookie=COOKIE), ServerConnection()
    params = Params(protocol="tcp", time=2, parallel=3, reverse=True)
    assert _pump(server, client.start()) == [CookieReceived(COOKIE)]
    assert _pump(client, server.send_param_exchange()) == [StateReceived(State.PARAM_EXCHANGE)]
    (got,) = _pump(server, client.send_params(params))
    assert isinstance(got, JsonReceived) and got.value == params
    assert _pump(client, server.send_create_streams()) == [StateReceived(State.CREATE_STREAMS)]
    assert _pump(client, server.send_test_start()) == [
        StateReceived(State.TEST_START),
        StateReceived(State.TEST_RUNNING),
    ]
    assert _pump(server, client.send_test_end()) == [StateReceived(State.TEST_END)]
    assert _pump(client, server.send_exchange_results()) == [StateReceived(State.EXCHANGE_RESULTS)]
    mine = Results(streams=(StreamResult(id=1, bytes=10),), cpu_util_total=1.5)
    theirs = Results(streams=(StreamResult(id=1, bytes=10, retransmits=3),))
    (got,) = _pump(server, client.send_results(mine))
    assert isinstance(got, JsonReceived) and got.value == mine
    events = _pump(client, server.send_results(theirs))
    assert events == [JsonReceived(theirs), StateReceived(State.DISPLAY_RESULTS)]
    assert _pump(server, client.send_done()) == [StateReceived(State.IPERF_DONE)]
    assert client.phase is Phase.DONE and server.phase is Phase.DONE


def test_bytes_may_arrive_one_at_a_time() -> None:
    client, server = ClientConnection(cookie=COOKIE), ServerConnection()
    for b in client.start()[:-1]:
        server.receive_data(bytes([b]))
        assert server.next_event() is NEED_DATA
    assert _pump(server, client.start()[-1:]) == [CookieReceived(COOKIE)]


def _server_after_param_exchange() -> ServerConnection:
    server = ServerConnection()
    server.receive_data(COOKIE)
    server.next_event()
    server.send_param_exchange()
    return server


def test_oversize_params_refused_before_reading_them() -> None:
    server = _server_after_param_exchange()
    server.receive_data(struct.pack("!I", MAX_PARAMS_JSON + 1))
    with pytest.raises(RemoteProtocolError, match="params JSON"):
        server.next_event()


def test_huge_announced_length_is_refused_without_buffering() -> None:
    server = _server_after_param_exchange()
    server.receive_data(struct.pack("!I", 0xFFFFFFFF) + b"{")
    with pytest.raises(RemoteProtocolError):
        server.next_event()


@pytest.mark.parametrize(
    "text",
    [
        b"{not json",
        b"[1, 2]",
        b'{"tcp": true, "parallel": "many"}',
        b'{"udp": 1, "len": 4}',
        b'{"tcp": true, "parallel": 100000}',
        b'{"time": NaN}',
        b"\xff\xfe",
    ],
)
def test_invalid_params_are_remote_errors(text: bytes) -> None:
    server = _server_after_param_exchange()
    server.receive_data(struct.pack("!I", len(text)) + text)
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_unknown_state_byte() -> None:
    client = ClientConnection(cookie=COOKIE)
    client.receive_data(b"\x63")
    with pytest.raises(RemoteProtocolError, match="unknown state byte 0x63"):
        client.next_event()


def test_state_out_of_order() -> None:
    client = ClientConnection(cookie=COOKIE)
    client.receive_data(bytes([State.TEST_RUNNING]))
    with pytest.raises(RemoteProtocolError, match="unexpected TEST_RUNNING"):
        client.next_event()


def test_server_error_and_access_denied() -> None:
    client = ClientConnection(cookie=COOKIE)
    client.receive_data(ServerConnection().send_error(114, 22))
    assert client.next_event() == ServerErrorReceived(114, 22)
    client2 = ClientConnection(cookie=COOKIE)
    client2.receive_data(b"\xff")
    assert client2.next_event() == StateReceived(State.ACCESS_DENIED)


def test_eof_mid_message() -> None:
    server = _server_after_param_exchange()
    server.receive_data(struct.pack("!I", 10) + b"{}")
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="peer closed"):
        server.next_event()


def test_local_misuse() -> None:
    client = ClientConnection(cookie=COOKIE)
    with pytest.raises(LocalProtocolError):
        client.send_test_end()
    with pytest.raises(LocalProtocolError):
        Params(parallel=0)
    with pytest.raises(LocalProtocolError):
        Params(protocol="udp", length=8)


def test_params_json_keys_match_iperf3() -> None:
    obj = Params(
        protocol="udp", time=3, parallel=2, length=1400, bandwidth=50_000_000, bidirectional=True
    ).to_json()
    assert obj["udp"] is True and obj["len"] == 1400 and obj["bandwidth"] == 50_000_000
    assert obj["parallel"] == 2 and obj["bidirectional"] is True and obj["time"] == 3
    # what iperf3 3.12 itself sends
    real = {
        "tcp": True,
        "omit": 0,
        "time": 2,
        "num": 0,
        "blockcount": 0,
        "parallel": 3,
        "reverse": True,
        "len": 131072,
        "pacing_timer": 1000,
        "client_version": "3.12",
    }
    p = Params.from_json(real)
    assert (p.protocol, p.parallel, p.reverse, p.length, p.stream_count) == (
        "tcp",
        3,
        True,
        131072,
        3,
    )


def test_results_validation_like_iperf3_get_results() -> None:
    good = {
        "cpu_util_total": 1,
        "cpu_util_user": 0.5,
        "cpu_util_system": 0.5,
        "sender_has_retransmits": 1,
        "streams": [
            {"id": 1, "bytes": 5, "retransmits": 0, "jitter": 0, "errors": 0, "packets": 0}
        ],
    }
    assert Results.from_json(good).streams[0].bytes == 5
    for key in ("cpu_util_total", "streams", "sender_has_retransmits"):
        bad = dict(good)
        del bad[key]
        with pytest.raises(RemoteProtocolError):
            Results.from_json(bad)
    stream_missing = dict(good, streams=[{"id": 1}])
    with pytest.raises(RemoteProtocolError):
        Results.from_json(stream_missing)
