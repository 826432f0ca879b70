"""``socketkit sniff`` prints DNS queries and answers as ``tcpdump -nn`` (and ``-nn -v``)
does, line for line, for messages made by real programs: ``dig`` asking a local ``dnsmasq``
in a test namespace (A, AAAA, CNAME, TXT, MX, a refused name; dig's EDNS option), plus a
Python query without EDNS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from rawkit import sk

from support.netlab import Lab
from support.privilege import require_root, require_tool
from support.procs import stop

pytestmark = pytest.mark.root

CONFIG = """no-resolv
no-hosts
port=53
listen-address=127.0.0.1
bind-interfaces
address=/example.test/198.18.5.5
address=/example.test/fd00::5
cname=alias.example.test,example.test
txt-record=txt.example.test,"hello world"
mx-host=example.test,mail.example.test,10
"""
QUERIES = [
    ["example.test", "A"],
    ["example.test", "AAAA"],
    ["alias.example.test", "A"],
    ["txt.example.test", "TXT"],
    ["example.test", "MX"],
    ["nothere.invalid", "A"],
]
PLAIN_QUERY = r"""
import socket, struct
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x04test\x00"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(q + struct.pack("!HH", 1, 1), ("127.0.0.1", 53)); s.recv(512)
"""


@pytest.fixture(scope="module")
def dns_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    tcpdump, dnsmasq, dig = (require_tool(t) for t in ("tcpdump", "dnsmasq", "dig"))
    base = tmp_path_factory.mktemp("dns")
    config = base / "dnsmasq.conf"
    config.write_text(CONFIG)
    path = base / "dns.pcap"
    with Lab() as lab:
        host = lab.host("n")
        server = host.popen(
            [dnsmasq, f"--conf-file={config}", "--keep-in-foreground", "--pid-file="],
            stderr=subprocess.DEVNULL,
        )
        capture = host.popen(
            [tcpdump, "-i", "lo", "-U", "--immediate-mode", "-s", "512", "-B", "16384",
             "-w", str(path), "udp port 53"],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert capture.stderr is not None
            assert b"listening on" in capture.stderr.readline()
            # dnsmasq answers once it is up, and tcpdump writes once its filter is in: ask
            # until the file holds an answer (bounded), then the real queries
            deadline = time.monotonic() + 10
            while (path.stat().st_size if path.exists() else 0) < 100:
                assert time.monotonic() < deadline, "no DNS answer captured"
                host.run([dig, "+tries=1", "+time=1", "@127.0.0.1", "warmup.test", "A"],
                         check=False, timeout=10)  # fmt: skip
            for name, kind in QUERIES:
                host.run([dig, "+tries=1", "+time=3", "@127.0.0.1", name, kind], timeout=20)
            host.run([sys.executable, "-c", PLAIN_QUERY], timeout=20)
            while "4660* 1/0/0" not in _tcpdump(path):  # the last answer is in the file
                assert time.monotonic() < deadline + 10, "answers missing from the capture"
                time.sleep(0.1)
        finally:
            stop(capture)
            stop(server)
    return path


def _tcpdump(path: Path, *flags: str) -> str:
    res = subprocess.run(
        [require_tool("tcpdump"), "-nn", *flags, "-r", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.stdout


@pytest.mark.parametrize(
    "flags", [(), ("-v",), ("-S", "-t")], ids=lambda f: "".join(f) or "default"
)
def test_dns_lines_are_tcpdumps(dns_capture: Path, flags: tuple[str, ...]) -> None:
    theirs = _tcpdump(dns_capture, *flags)
    for expected in ("+ [1au] A? example.test. (", "* 1/0/1 ",
                     " AAAA fd00::5 (", " CNAME example.test. (", ' TXT "hello world" (',
                     " MX mail.example.test. 10 (", " Refused 0/0/1 (", "4660+ A? example.test. (",
                     "4660* 1/0/0 "):  # fmt: skip
        assert expected in theirs
    ours = subprocess.run(
        sk("sniff", *flags, "-r", str(dns_capture)), capture_output=True, text=True, timeout=60
    )
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == theirs.splitlines()
