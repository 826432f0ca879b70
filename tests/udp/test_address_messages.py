"""Addresses a user gets wrong are named as they were given: an IP address sent to from a Unix
datagram socket is refused (not taken for a file name), and a dual-stack bind that fails
names the socket that was asked for ([::]:port), not an IPv4 fallback."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import socketkit
from socketkit import AddressError, SocketkitError


@pytest.mark.parametrize("to", ["127.0.0.1:5", "[::1]:5", "localhost:5"])
def test_unix_socket_refuses_an_ip_destination(tmp_path: Path, to: str) -> None:
    with socketkit.udp(f"unix:{tmp_path}/u.sock") as s:
        with pytest.raises(AddressError, match=f"cannot send to {re.escape(to)}"):
            s.send(b"x", to)
        with pytest.raises(AddressError, match="from a Unix datagram socket"):
            s.send_many([b"x"], to=to)
    assert sorted(os.listdir(tmp_path)) == []  # nothing made, u.sock removed on close


def test_unix_socket_still_sends_to_a_relative_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with (
        socketkit.udp(f"unix:{tmp_path}/r.sock") as r,
        socketkit.udp(f"unix:{tmp_path}/s.sock") as s,
    ):
        assert s.send(b"y", "r.sock") == 1
        assert r.receive(timeout=5).data == b"y"


def test_dual_stack_port_in_use_is_named_as_asked() -> None:
    with socketkit.udp(":0") as first:
        port = first.local.rsplit(":", 1)[1]
        with pytest.raises(SocketkitError) as info:
            socketkit.udp(f":{port}")
    assert str(info.value).startswith(f"cannot bind to [::]:{port}: address already in use")
    assert "pick another port" in str(info.value)
