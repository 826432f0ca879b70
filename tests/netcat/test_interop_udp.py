"""UDP with the real peers: datagrams of many sizes, each delivered whole and in order, in
both directions, over IPv4 and IPv6; plus per-peer sessions (``listen -u -k -e cat``) where
every reply goes back to the peer that sent the datagram, boundaries intact."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

import pytest

from support.privilege import require_tool

from .nctools import LOOP, SK, Collector, finish, free_port, started, wait_bound

PEERS = ["nc.openbsd", "ncat", "socat"]
FAMILIES = [4, 6]


def datagrams(count: int = 40, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [1, 2, 17, 512, 1400, 1472, 8000] + [rng.randint(1, 1400) for _ in range(count - 7)]
    return [os.urandom(size) for size in sizes]


def peer_receiver(peer: str, family: int, port: int) -> list[str]:
    host = LOOP[family]
    if peer == "nc.openbsd":
        return ["nc.openbsd", "-u", "-d", "-l", f"-{family}", host, str(port)]
    if peer == "ncat":
        return ["ncat", "-u", "-l", "--recv-only", f"-{family}", host, str(port)]
    bind = f"[{host}]" if family == 6 else host
    return ["socat", "-u", f"UDP{family}-RECV:{port},bind={bind}", "-"]


def peer_sender(peer: str, family: int, port: int) -> list[str]:
    host = LOOP[family]
    if peer == "nc.openbsd":
        return ["nc.openbsd", "-u", "-q", "0", f"-{family}", host, str(port)]
    if peer == "ncat":
        return ["ncat", "-u", "--send-only", f"-{family}", host, str(port)]
    shown = f"[{host}]" if family == 6 else host
    return ["socat", "-u", "-", f"UDP{family}-SENDTO:{shown}:{port}"]


def lockstep(writer: subprocess.Popen[bytes], reader: Collector, grams: list[bytes]) -> bytes:
    """Write one datagram's bytes to ``writer``'s stdin, wait until they come out of
    ``reader``; so every read() of the sender's stdin is exactly one datagram."""
    assert writer.stdin is not None
    total = 0
    for gram in grams:
        writer.stdin.write(gram)
        writer.stdin.flush()
        total += len(gram)
        got = reader.wait_for(total, timeout=10)
        assert len(got) >= total, f"stalled after {len(got)} of {total} bytes"
    return reader.wait_for(total, timeout=1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("peer", PEERS)
def test_socketkit_sends_to_peer(peer: str, family: int) -> None:
    require_tool(peer)
    port = free_port("udp", family)
    grams = datagrams()
    recv_argv = peer_receiver(peer, family, port)
    recv_io = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with started(recv_argv, **recv_io) as receiver:  # type: ignore[arg-type]
        wait_bound(port, "udp")
        collected = Collector(receiver.stdout)
        argv = [*SK, "connect", "-u", "-q", "0.2", LOOP[family], str(port)]
        with started(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as sender:
            assert lockstep(sender, collected, grams) == b"".join(grams)
            assert sender.stdin is not None
            sender.stdin.close()
            # UDP has no EOF: connect -u ends -q seconds after its stdin's EOF.
            assert finish(sender, 10) == 0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("peer", PEERS)
def test_peer_sends_to_socketkit(peer: str, family: int) -> None:
    require_tool(peer)
    port = free_port("udp", family)
    grams = datagrams()
    argv = [*SK, "listen", "-u", "--udp-session-idle", "1", LOOP[family], str(port)]
    with started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as listener:
        wait_bound(port, "udp")
        collected = Collector(listener.stdout)
        with started(peer_sender(peer, family, port), stdin=subprocess.PIPE) as sender:
            assert lockstep(sender, collected, grams) == b"".join(grams)
            assert sender.stdin is not None
            sender.stdin.close()
            assert finish(sender, 10) == 0
        # Without -k the one UDP session ends when the peer has been silent for the
        # session idle time, and the listener exits with status 0.
        assert finish(listener, 10) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_connect_udp_keeps_datagram_boundaries(family: int) -> None:
    fam = socket.AF_INET6 if family == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as peer:
        peer.bind((LOOP[family], 0))
        peer.settimeout(10)
        port = peer.getsockname()[1]
        grams = datagrams(30)
        argv = [*SK, "connect", "-u", "-q", "0.2", LOOP[family], str(port)]
        with started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as sender:
            assert sender.stdin is not None
            back = Collector(sender.stdout)
            addr = None
            for gram in grams:
                sender.stdin.write(gram)
                sender.stdin.flush()
                got, addr = peer.recvfrom(65536)
                assert got == gram  # one read of stdin -> exactly one datagram
            # Replies: each datagram we send back is written whole to stdout.
            for gram in grams[:5]:
                peer.sendto(gram, addr)
            assert back.wait_for(sum(map(len, grams[:5]))) == b"".join(grams[:5])
            sender.stdin.close()
            assert finish(sender, 10) == 0


def test_udp_sessions_reply_to_the_right_peer() -> None:
    """``listen -u -k -e cat``: 20 peers at once; every peer gets back exactly its own
    datagrams, whole; the per-peer programs are reaped when their sessions end."""
    port = free_port("udp")
    argv = [*SK, "listen", "-u", "-k", "--json", "--udp-session-idle", "1", "-e", "cat"]
    argv += ["127.0.0.1", str(port)]
    with started(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as listener:
        wait_bound(port, "udp")
        peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
        try:
            for sock in peers:
                sock.settimeout(10)
            for round_ in range(5):
                for index, sock in enumerate(peers):
                    sock.sendto(
                        f"peer {index} round {round_} ".encode() * (index + 1), ("127.0.0.1", port)
                    )
                for index, sock in enumerate(peers):
                    got, _ = sock.recvfrom(65536)
                    assert got == f"peer {index} round {round_} ".encode() * (index + 1)
        finally:
            for sock in peers:
                sock.close()
        time.sleep(1.5)  # sessions idle out; their cat programs get EOF and are reaped
        children = _children(listener.pid)
        assert children == [], f"unreaped children: {children}"


def _children(pid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid=,stat=,comm="], capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if line.strip()]
