"""Unix datagram sockets (``-u -U``) with the real peers: datagrams whole and in order both
ways with nc.openbsd, ncat and socat; replies reach a client (nc.openbsd binds a temporary
receive socket; socketkit connect autobinds an abstract name); a sender with no address is
heard, and told once that it cannot be answered."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support.privilege import require_tool

from .nctools import SK, Collector, finish, started, wait_bound
from .test_interop_udp import datagrams, lockstep

PEERS = ["nc.openbsd", "ncat", "socat"]


def _receiver(peer: str, path: str) -> list[str]:
    if peer == "nc.openbsd":
        return ["nc.openbsd", "-d", "-l", "-u", "-U", path]
    if peer == "ncat":
        return ["ncat", "-l", "-u", "-U", "--recv-only", path]
    return ["socat", "-u", f"UNIX-RECV:{path}", "-"]


def _sender(peer: str, path: str) -> list[str]:
    if peer == "nc.openbsd":
        return ["nc.openbsd", "-u", "-U", "-q", "0", path]
    if peer == "ncat":
        return ["ncat", "-u", "-U", "--send-only", path]
    return ["socat", "-u", "-", f"UNIX-SENDTO:{path}"]


@pytest.mark.parametrize("peer", PEERS)
def test_socketkit_sends_unix_datagrams_to_peer(peer: str, tmp_path: Path) -> None:
    require_tool(peer)
    path = str(tmp_path / "peer.sock")
    grams = datagrams()
    io = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with started(_receiver(peer, path), **io) as receiver:  # type: ignore[arg-type]
        wait_bound(path)
        collected = Collector(receiver.stdout)
        argv = [*SK, "connect", "-u", "-q", "0.2", "-U", path]
        with started(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as sender:
            assert lockstep(sender, collected, grams) == b"".join(grams)
            assert sender.stdin is not None
            sender.stdin.close()
            assert finish(sender, 10) == 0


@pytest.mark.parametrize("peer", PEERS)
def test_peer_sends_unix_datagrams_to_socketkit(peer: str, tmp_path: Path) -> None:
    require_tool(peer)
    path = str(tmp_path / "sk.sock")
    grams = datagrams()
    argv = [*SK, "listen", "-u", "--udp-session-idle", "1", "-U", path]
    with started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as listener:
        wait_bound(path)
        collected = Collector(listener.stdout)
        with started(_sender(peer, path), stdin=subprocess.PIPE) as sender:
            assert lockstep(sender, collected, grams) == b"".join(grams)
            assert sender.stdin is not None
            sender.stdin.close()
            assert finish(sender, 10) == 0
        assert finish(listener, 10) == 0
    assert not os.path.exists(path)  # the listener removed its socket file


def test_replies_reach_an_nc_client(tmp_path: Path) -> None:
    """nc.openbsd -uU binds a temporary receive socket: our listener answers it."""
    require_tool("nc.openbsd")
    path = str(tmp_path / "sk.sock")
    argv = [*SK, "listen", "-u", "-U", path]
    with started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as listener:
        wait_bound(path)
        heard = Collector(listener.stdout)
        client_argv = ["nc.openbsd", "-u", "-U", path]
        with started(client_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as client:
            answer = Collector(client.stdout)
            assert client.stdin is not None and listener.stdin is not None
            client.stdin.write(b"question\n")
            client.stdin.flush()
            assert heard.wait_for(9) == b"question\n"
            listener.stdin.write(b"answer\n")
            listener.stdin.flush()
            assert answer.wait_for(7) == b"answer\n"


def test_connect_autobinds_so_an_nc_server_can_answer(tmp_path: Path) -> None:
    require_tool("nc.openbsd")
    path = str(tmp_path / "nc.sock")
    with started(
        ["nc.openbsd", "-l", "-u", "-U", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as server:
        wait_bound(path)
        heard = Collector(server.stdout)
        argv = [*SK, "connect", "-u", "-U", path]
        with started(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as client:
            answer = Collector(client.stdout)
            assert client.stdin is not None and server.stdin is not None
            client.stdin.write(b"ping\n")
            client.stdin.flush()
            assert heard.wait_for(5) == b"ping\n"
            server.stdin.write(b"pong\n")
            server.stdin.flush()
            assert answer.wait_for(5) == b"pong\n"


def test_a_sender_without_an_address_is_heard_and_warned_about_once(tmp_path: Path) -> None:
    path = str(tmp_path / "sk.sock")
    argv = [*SK, "listen", "-u", "-k", "-U", path]
    with started(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as listener:
        wait_bound(path)
        heard = Collector(listener.stdout)
        warned = Collector(listener.stderr)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anon:
            anon.connect(path)
            anon.send(b"one\n")
            assert heard.wait_for(4) == b"one\n"
            assert listener.stdin is not None
            listener.stdin.write(b"lost\n")  # nowhere to send it: one warning, no crash
            listener.stdin.flush()
            assert b"has no address" in warned.wait_line_count(1)
            anon.send(b"two\n")
            assert heard.wait_for(8) == b"one\ntwo\n"
            listener.stdin.write(b"lost again\n")
            listener.stdin.flush()
            anon.send(b"three\n")
            assert heard.wait_for(14) == b"one\ntwo\nthree\n"
            time.sleep(0.3)  # let the listener read "lost again" too (it must not warn again)
        listener.terminate()
        finish(listener, 10)
        text = warned.wait_for(1 << 16, timeout=2).decode()
    assert text.count("has no address") == 1, text
    assert "Traceback" not in text


def test_a_datagram_longer_than_the_buffer_is_an_error_not_a_cut(tmp_path: Path) -> None:
    path = str(tmp_path / "big.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(10)
        argv = [*SK, "connect", "-u", "-U", path]
        with started(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as client:
            assert client.stdin is not None and client.stderr is not None
            client.stdin.write(b"hi\n")
            client.stdin.flush()
            _, addr = server.recvfrom(16)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            server.sendto(b"x" * (300 * 1024), addr)  # over connect's 256 KiB buffer
            status = finish(client, 10)
            err = client.stderr.read().decode()
    assert status == 10, err  # a protocol error: the peer sent what cannot be received
    assert err.count("\n") == 1 and "307200 bytes" in err, err
