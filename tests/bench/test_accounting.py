"""Byte and time accounting at the end of a test, against real iperf3.

* Against ``iperf3 -s`` the receiver's seconds are the test's (iperf3 -> iperf3: 1.000), not
  1.10: iperf3 stamps its receiver time at TEST_END, and the client's pause before TEST_END
  (which lets iperf3 read every byte first) is not receiving time.
"""

from __future__ import annotations

import subprocess
import time

from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening

PAYLOAD = 8 << 20


def test_receiver_seconds_against_iperf3_are_the_tests() -> None:
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([iperf3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL) as srv:
        wait_listening(port)
        rc, doc, err = run_json(
            [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "1", "-J"]
        )
        assert rc == 0, err
        srv.wait(30)
    end = doc["end"]
    # Every byte counted by iperf3 (the pause before TEST_END is kept) ...
    assert end["sum_sent"]["bytes"] == end["sum_received"]["bytes"] > 0
    # ... and its receiver time is the sender's (the test's), within a few ms, as with
    # iperf3 -> iperf3, not 0.1 s more. (On a loaded machine the sender may take a little
    # longer than -t to stop; the receiver's time follows it.)
    sent_s, received_s = end["sum_sent"]["seconds"], end["sum_received"]["seconds"]
    assert sent_s >= 0.99 and sent_s - 0.01 <= received_s <= sent_s + 0.03, (sent_s, received_s)
    assert end["streams"][0]["receiver"]["seconds"] == received_s


def test_unacknowledged_bytes_are_not_reported_as_sent() -> None:
    """Against an iperf3 client the server reports as sent only what the client's kernel had
    acknowledged when TEST_END came (docs/bench.md): a writer blocked on a reader that
    stopped reading has bytes of both kinds, and after uncount_unacknowledged() the sender's
    count is exactly what sits in the reader's receive queue."""
    import fcntl
    import socket
    import struct
    import termios

    from socketkit.bench.datapath import DataPath, DataStream
    from socketkit.proto.iperf3 import BenchParams

    def queued(sock: socket.socket, request: int) -> int:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))[0])

    with socket.create_server(("127.0.0.1", 0)) as listener:
        writer = socket.create_connection(listener.getsockname())
        reader, _ = listener.accept()
    with writer, reader:
        writer.setblocking(False)
        written = 0
        chunk = bytes(65536)
        idle = 0
        while idle < 20:  # until the reader's window and our queue are both full
            try:
                written += writer.send(chunk)
                idle = 0
            except BlockingIOError:
                idle += 1
                time.sleep(0.01)
        path = DataPath(BenchParams(protocol="tcp"), [DataStream(1, writer, True)], role="server")
        path.movers[0].stats.bytes = written
        unacknowledged = queued(writer, termios.TIOCOUTQ)
        assert unacknowledged > 0
        assert path.uncount_unacknowledged() == unacknowledged
        assert path.movers[0].stats.bytes == written - unacknowledged
        assert path.movers[0].stats.bytes == queued(reader, termios.FIONREAD)
