"""The sans-I/O TFTP core: packets, negotiation and the four machines wired together."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketkit.proto import tftp

from .sim import run

# --- packets --------------------------------------------------------------------------------


def test_encode_exact_bytes() -> None:
    assert tftp.encode(tftp.Request(tftp.Opcode.RRQ, "a.bin", "octet")) == b"\0\1a.bin\0octet\0"
    assert (
        tftp.encode(tftp.Request(tftp.Opcode.WRQ, "x", "netascii", (("blksize", "1428"),)))
        == b"\0\2x\0netascii\0blksize\x001428\0"
    )
    assert tftp.encode(tftp.Data(65537, b"hi")) == b"\0\3\0\1hi"  # the wire number wraps
    assert tftp.encode(tftp.Ack(0)) == b"\0\4\0\0"
    assert tftp.encode(tftp.Error(1, "nope")) == b"\0\5\0\1nope\0"
    assert tftp.encode(tftp.OptionAck((("tsize", "7"),))) == b"\0\6tsize\x007\0"


@pytest.mark.parametrize(
    "packet",
    [
        tftp.Request(tftp.Opcode.RRQ, "dir/f", "netascii", (("blksize", "8"), ("tsize", "0"))),
        tftp.Data(7, b""),
        tftp.Data(65535, bytes(range(256))),
        tftp.Ack(65535),
        tftp.Error(8, "refused"),
        tftp.OptionAck((("windowsize", "16"),)),
    ],
)
def test_round_trip(packet: tftp.Packet) -> None:
    assert tftp.decode(tftp.encode(packet)) == packet


@pytest.mark.parametrize(
    ("datagram", "code", "words"),
    [
        (b"", 4, "too short"),
        (b"\0", 4, "too short"),
        (b"\0\x09abc", 4, "unknown opcode 9"),
        (b"\0\0", 4, "unknown opcode 0"),
        (b"\0\3\0", 4, "no block number"),
        (b"\0\4\0\1\0", 4, "must be 4 bytes"),
        (b"\0\4\0", 4, "must be 4 bytes"),
        (b"\0\5\0\1oops", 4, "NUL-terminated"),
        (b"\0\1file\0octet", 4, "no NUL terminator"),
        (b"\0\1file\0", 4, "filename and a mode"),
        (b"\0\1\0octet\0", 4, "empty filename"),
        (b"\0\1f\0mail\0", 4, "'mail' is not supported"),
        (b"\0\1f\0octet\0blksize\0", 8, "has no value"),
        (b"\0\1f\0octet\0blksize\x00512\0BLKSIZE\x00512\0", 8, "'blksize' is repeated"),
        (b"\0\1f\0octet\0\x001\0", 8, "empty name"),
        (b"\0\1" + b"f" * 600 + b"\0octet\0", 4, "longer than 512"),
        (b"\0\1f\xff\0octet\0", 4, "not UTF-8"),
    ],
)
def test_malformed_packets_are_typed_errors(datagram: bytes, code: int, words: str) -> None:
    with pytest.raises(tftp.MalformedPacket) as info:
        tftp.decode(datagram)
    assert info.value.code == code
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@given(st.binary(max_size=600))
def test_decode_never_raises_anything_else(datagram: bytes) -> None:
    try:
        packet = tftp.decode(datagram)
    except tftp.MalformedPacket as exc:
        assert isinstance(exc.code, tftp.ErrorCode)
    else:
        assert isinstance(packet, tftp.Request | tftp.Data | tftp.Ack | tftp.Error | tftp.OptionAck)


# --- negotiation ----------------------------------------------------------------------------


def _rrq(*pairs: tuple[str, str], opcode: tftp.Opcode = tftp.Opcode.RRQ) -> tftp.Request:
    return tftp.Request(opcode, "f", "octet", pairs)


def test_negotiate_clamps_and_answers() -> None:
    options, oack = tftp.negotiate(
        _rrq(("blksize", "100000"), ("tsize", "0"), ("windowsize", "8"), ("x-unknown", "1")),
        file_size=1234,
        max_blksize=1468,
    )
    assert options == tftp.Options(blksize=1468, windowsize=8, tsize=1234)
    assert oack == (("blksize", "1468"), ("tsize", "1234"), ("windowsize", "8"))


def test_negotiate_bounds_the_window_memory() -> None:
    options, oack = tftp.negotiate(_rrq(("blksize", "65464"), ("windowsize", "65535")), file_size=0)
    assert options.windowsize * options.blksize <= tftp.MAX_WINDOW_BYTES
    assert ("windowsize", str(options.windowsize)) in oack


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ((("blksize", "7"),), 8),
        ((("blksize", "abc"),), 8),
        ((("timeout", "0"),), 8),
        ((("timeout", "256"),), 8),
        ((("windowsize", "0"),), 8),
        ((("windowsize", "65536"),), 8),
        ((("tsize", "-1"),), 8),
    ],
)
def test_negotiate_refuses_bad_values(pairs: tuple[tuple[str, str], ...], code: int) -> None:
    with pytest.raises(tftp.MalformedPacket) as info:
        tftp.negotiate(_rrq(*pairs), file_size=0)
    assert info.value.code == code


def test_negotiate_write_tsize_above_limit_is_disk_full() -> None:
    with pytest.raises(tftp.MalformedPacket) as info:
        tftp.negotiate(
            _rrq(("tsize", "1001"), opcode=tftp.Opcode.WRQ), file_size=None, max_tsize=1000
        )
    assert info.value.code == tftp.ErrorCode.DISK_FULL


def test_client_refuses_an_oack_it_did_not_ask_for() -> None:
    client = tftp.ClientRead("f", io.BytesIO().write, options=tftp.Options(blksize=1024))
    client.start(0.0)
    with pytest.raises(tftp.MalformedPacket) as info:
        client.receive(tftp.encode(tftp.OptionAck((("windowsize", "4"),))), 0.1)
    assert info.value.code == 8
    assert client.fail(info.value)[:4] == b"\0\5\0\x08"
    client2 = tftp.ClientRead("f", io.BytesIO().write, options=tftp.Options(blksize=1024))
    client2.start(0.0)
    with pytest.raises(tftp.MalformedPacket):  # a larger blksize than asked
        client2.receive(tftp.encode(tftp.OptionAck((("blksize", "2048"),))), 0.1)


# --- transfers ------------------------------------------------------------------------------


def _payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("direction", ["get", "put"])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
@pytest.mark.parametrize(
    "asked", [tftp.Options(), tftp.Options(blksize=1024, windowsize=4), tftp.Options(windowsize=3)]
)
def test_clean_transfers(direction: str, size: int, asked: tftp.Options) -> None:
    payload = _payload(size)
    out = run(direction, payload, asked=asked)
    assert out.received == payload
    assert out.client.done and out.server is not None and out.server.done
    blocks = size // out.client.options.blksize + 1
    assert out.data_sent == blocks  # nothing sent twice on a clean path
    assert out.client.options.blksize == asked.blksize
    assert out.client.options.windowsize == asked.windowsize


@pytest.mark.parametrize("direction", ["get", "put"])
def test_fallback_when_the_server_ignores_options(direction: str) -> None:
    payload = _payload(3000)
    out = run(
        direction,
        payload,
        asked=tftp.Options(blksize=1024, windowsize=8),
        server_ignores_options=True,
    )
    assert out.received == payload
    assert not out.client.negotiated
    assert out.client.options.blksize == 512 and out.client.options.windowsize == 1
    assert out.data_sent == 3000 // 512 + 1


@pytest.mark.parametrize("direction", ["get", "put"])
def test_block_numbers_wrap_around(direction: str) -> None:
    # 70000 blocks of 8 bytes: past 65535 the wire number goes on from 0.
    payload = _payload(8 * 70000 + 3)
    out = run(direction, payload, asked=tftp.Options(blksize=8, windowsize=4), keep_wire=True)
    assert out.received == payload
    data_blocks = [int.from_bytes(d[2:4], "big") for _, d in out.wire if d[:2] == b"\0\3"]
    assert data_blocks[65534:65538] == [65535, 0, 1, 2]


@pytest.mark.parametrize("direction", ["get", "put"])
@pytest.mark.parametrize("windowsize", [1, 4])
def test_duplicates_never_cause_a_resend(direction: str, windowsize: int) -> None:
    """RFC 1123 4.2.3.1: every datagram duplicated, no loss: each DATA sent exactly once."""
    payload = _payload(512 * 40 + 17)
    out = run(
        direction,
        payload,
        asked=tftp.Options(windowsize=windowsize),
        impair=["dup"] * 10_000,
    )
    assert out.received == payload
    assert out.data_sent == len(payload) // 512 + 1


def test_a_lost_ack_costs_one_resend_not_a_cascade() -> None:
    payload = _payload(512 * 20)
    # RRQ (asking tsize), OACK, ACK 0, DATA 1, ACK 1 (dropped): DATA 1 is sent again once.
    out = run("get", payload, impair=["deliver"] * 4 + ["drop"], keep_wire=True)
    assert [d[:2] for _, d in out.wire[:5]] == [b"\0\1", b"\0\6", b"\0\4", b"\0\3", b"\0\4"]
    assert out.received == payload
    assert out.data_sent == 21 + 1


def test_timeout_backs_off_exponentially_then_fails() -> None:
    client = tftp.ClientRead("f", io.BytesIO().write, timeout=1.0, retries=4)
    sent = client.start(0.0)
    assert sent == [b"\0\1f\0octet\0tsize\0000\0"]
    times = []
    now = 0.0
    with pytest.raises(tftp.TransferTimeout) as info:
        while True:
            assert client.deadline is not None
            now = client.deadline
            times.append(now)
            assert client.on_timeout(now) == sent
    # 1, 2, 4, 8, 8 seconds apart (back-off capped at MAX_BACKOFF)
    assert times == [1.0, 3.0, 7.0, 15.0, 23.0]
    assert "after 5 tries" in str(info.value)
    assert client.failed


def test_peer_error_packet_raises_with_its_text() -> None:
    client = tftp.ClientRead("f", io.BytesIO().write)
    client.start(0.0)
    with pytest.raises(tftp.PeerError) as info:
        client.receive(tftp.encode(tftp.Error(1, "File not found")), 0.1)
    assert info.value.code == tftp.ErrorCode.FILE_NOT_FOUND
    assert str(info.value) == "the peer sent TFTP error 1 (file not found): File not found"
    with pytest.raises(tftp.PeerAccessDenied):
        c2 = tftp.ClientRead("f", io.BytesIO().write)
        c2.start(0.0)
        c2.receive(tftp.encode(tftp.Error(2, "no")), 0.1)


def test_oversize_data_block_is_an_illegal_operation() -> None:
    client = tftp.ClientRead("f", io.BytesIO().write)
    client.start(0.0)
    with pytest.raises(tftp.MalformedPacket) as info:
        client.receive(b"\0\3\0\1" + bytes(513), 0.1)
    assert info.value.code == 4 and "more than the blksize 512" in str(info.value)


def test_tsize_mismatch_on_a_write_fails() -> None:
    sink = io.BytesIO()
    server = tftp.ServerWrite(
        sink.write, options=tftp.Options(tsize=1000), oack=(("tsize", "1000"),)
    )
    server.start(0.0)
    with pytest.raises(tftp.MalformedPacket) as info:
        server.receive(b"\0\3\0\1" + bytes(10), 0.1)
    assert "ended after 10 bytes, but tsize said 1000" in str(info.value)


def test_netascii_round_trip_across_block_edges() -> None:
    text = b"line one\nline two\r\nbare\rcr\n\n\rend\r"
    encoded = tftp.NetasciiEncoder(io.BytesIO(text).read)
    wire = b"".join(iter(lambda: encoded.read(3), b""))
    assert wire == text.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
    for cut in range(1, 8):
        out = io.BytesIO()
        decoder = tftp.NetasciiDecoder(out.write)
        for i in range(0, len(wire), cut):
            decoder.write(wire[i : i + cut])
        decoder.close()
        assert out.getvalue() == text


_ACTIONS = st.lists(
    st.sampled_from(["deliver"] * 6 + ["drop", "dup", "delay", "delay"]), max_size=400
)


@settings(max_examples=80)
@given(
    fast=st.booleans(),
    direction=st.sampled_from(["get", "put"]),
    size=st.sampled_from([0, 100, 512, 4096, 9000]),
    windowsize=st.sampled_from([1, 2, 5]),
    blksize=st.sampled_from([512, 1000]),
    impair=_ACTIONS,
)
def test_lossy_network_delivers_exactly(
    *, fast: bool, direction: str, size: int, windowsize: int, blksize: int, impair: list[str]
) -> None:
    payload = _payload(size, seed=size)
    out = run(
        direction,
        payload,
        asked=tftp.Options(blksize=blksize, windowsize=windowsize),
        impair=impair,
        fast=fast,
    )
    assert out.server_error is None
    assert out.client.done, "the client did not finish"
    assert out.received == payload


def test_receiver_does_not_repeat_its_ack_on_its_own_timer() -> None:
    """Once DATA flows, only the sender retransmits: tftp-hpa restarts its timer on every
    packet it receives, so ACKs repeated on the receiver's timer would keep it from ever
    resending a lost DATA. The receiver's timer only counts down to giving up."""
    client = tftp.ClientRead("f", io.BytesIO().write, timeout=1.0, retries=3)
    client.start(0.0)
    assert client.receive(b"\0\3\0\1" + bytes(512), 0.1) == [b"\0\4\0\1"]
    now = 0.1
    with pytest.raises(tftp.TransferTimeout):
        for _ in range(10):
            assert client.deadline is not None
            now = client.deadline
            assert client.on_timeout(now) == []
    # the sender's retransmission of DATA 1 (our ACK was lost) is answered at once
    server = tftp.ServerWrite(io.BytesIO().write, options=tftp.Options())
    assert server.start(0.0) == [b"\0\4\0\0"]
    assert server.on_timeout(1.0) == [b"\0\4\0\0"]  # before DATA 1: ACK 0 again
    server.receive(b"\0\3\0\1" + bytes(512), 1.1)
    assert server.receive(b"\0\3\0\1" + bytes(512), 2.0) == [b"\0\4\0\1"]


def test_window_receiver_acks_on_its_timer_when_the_senders_window_is_all_here() -> None:
    """windowsize 4: block 6 is lost, 7 makes us report the gap (ACK 5), the sender does not
    take that report and resends its window 5..8 on its timer. 6, 7 and 8 complete it, but
    our count started at the report: no ACK yet, and each further resend of 5..8 is a
    duplicate. On our timer we ACK 8 (before: nothing, and both sides waited until they gave
    up; seen over an impaired path as "no answer from the peer after 21 tries")."""

    def data(n: int) -> bytes:
        return tftp.encode(tftp.Data(n, bytes(512)))

    client = tftp.ClientRead(
        "f", io.BytesIO().write, options=tftp.Options(windowsize=4), timeout=1.0, retries=3
    )
    client.start(0.0)
    oack = tftp.encode(tftp.OptionAck((("windowsize", "4"),)))
    assert client.receive(oack, 0.01) == [b"\0\4\0\0"]
    now = 0.02
    answers = []
    for n in (1, 2, 3, 4, 5, 7, 5, 6, 7, 8, 5, 6, 7, 8):
        answers.append(client.receive(data(n), now))
        now += 0.001
    assert [a for a in answers if a] == [[b"\0\4\0\4"], [b"\0\4\0\5"], [b"\0\4\0\5"]]
    assert client.deadline is not None
    assert client.on_timeout(client.deadline) == [tftp.encode(tftp.Ack(8))]
    assert client.receive(data(9), client.deadline + 0.01) == []  # the next window flows
