"""An impaired path between two test namespaces: nftables loss and duplication with exact
counters, and an AF_PACKET bridge (``impair_bridge.py``) that drops, duplicates, delays and
reorders UDP datagrams with a fixed seed and counts what it did.

    with impaired_path(nft_loss=0.1, bridge=BridgeConfig(seed=7, reorder=0.25)) as path:
        path.b.popen([...server...]); path.a.run([...client...], timeout=...)
        counts = path.finish()      # stops the bridge, reads every counter
        counts.nft["a_to_b"]["dropped"], counts.a_to_b["late"], ...

Topology (four namespaces)::

    a 198.18.N.1 ── r (router: nftables) ── m (AF_PACKET bridge, no addresses) ── b 198.19.N.2

nftables acts in the router's *forward* hook: a dropped datagram is silently lost (a drop in
the sender's own output hook would fail its ``sendto`` with EPERM, which is not a lossy
path), and ``dup to`` there sends its clone through the router's output hook, so a clone
never meets the forward rules again and the counters are exact. Per direction, loss comes
before duplication, so a dropped datagram is never duplicated.

The bridge between r and b sees every UDP flow (such as the new server port of each TFTP
transfer, which a one-port UDP relay could not follow) and forwards frames, so the path needs
no routes through it. Offloads are off on every veth, so rules and bridge act on wire-sized
frames, and UDP checksums are complete when the bridge reads them (a frame with a partial
checksum, copied by AF_PACKET, would be dropped by the receiver as corrupt).

For datagrams from a to b the stages come in the order nftables, then bridge, then b, so a
receiver on b sees exactly what :meth:`PathCounts.expected_receiver` computes from the
counters. From b to a the bridge comes first and nftables may drop one copy of a datagram
the bridge duplicated: those counters are exact about what each stage did, not about what a
receiver on a sees.

Everything (bridge process, namespaces, veths, tables) is removed on exit, even after a
failure; names carry the ``Lab`` tag (pid and a counter).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netlab import Host, Lab

BRIDGE_SCRIPT = Path(__file__).with_name("impair_bridge.py")
#: How long the bridge may take to start (interpreter start-up on a loaded machine).
BRIDGE_START = 30.0
OFFLOADS = ("tso", "gso", "gro", "tx-checksumming", "rx-checksumming")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def offloads_off(host: Host, iface: str) -> None:
    """Turn segmentation, receive coalescing and checksum offloads off on ``iface``, and
    check that they are off (``ethtool -k``): a failure here is a failure of the test."""
    argv = ["ethtool", "-K", iface]
    for name in OFFLOADS:
        argv += [name, "off"]
    host.run(argv, check=False)  # some features are fixed on veth; checked below
    shown = host.run(["ethtool", "-k", iface]).stdout
    for feature in (
        "tcp-segmentation-offload",
        "generic-segmentation-offload",
        "generic-receive-offload",
        "tx-checksumming",
    ):
        line = next(x for x in shown.splitlines() if x.startswith(feature + ":"))
        assert line.split(":")[1].split()[0] == "off", (iface, line)


@dataclass
class NftImpairment:
    """Loss and duplication in ``router``'s forward hook, for UDP datagrams of at least
    ``min_payload`` bytes, per direction: ``directions`` maps a name to the destination
    address of that direction (the ``dup to`` target). ``loss`` and ``dup`` are
    probabilities (0..1, in steps of 0.0001). The table is named after the lab's tag."""

    router: Host
    directions: dict[str, str]
    loss: float = 0.0
    dup: float = 0.0
    min_payload: int = 0
    table: str = "skimpair"
    installed: bool = field(default=False, init=False)

    def _nft(self, *args: str) -> str:
        return self.router.run(["nft", *args]).stdout

    def install(self) -> None:
        t = f"ip {self.table}"
        self._nft("add", "table", "ip", self.table)
        self.installed = True
        self._nft("add chain " + t + " pass { type filter hook forward priority 0; }")
        for name, dest in self.directions.items():
            match = f"ip daddr {dest} meta l4proto udp udp length >= {8 + self.min_payload}"
            if self.loss:
                self._nft(
                    f"add rule {t} pass {match} numgen random mod 10000 < "
                    f'{round(self.loss * 10000)} counter drop comment "loss {name}"'
                )
            if self.dup:
                self._nft(
                    f"add rule {t} pass {match} numgen random mod 10000 < "
                    f'{round(self.dup * 10000)} counter dup to {dest} comment "dup {name}"'
                )

    def counters(self) -> dict[str, dict[str, int]]:
        """{direction: {"dropped": …, "duplicated": …}} from the rules' own counters."""
        doc = json.loads(self._nft("-j", "list", "table", "ip", self.table))
        out = {name: {"dropped": 0, "duplicated": 0} for name in self.directions}
        kinds = {"loss": "dropped", "dup": "duplicated"}
        for item in doc["nftables"]:
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            kind, _, name = rule["comment"].partition(" ")
            if kind not in kinds or name not in out:
                continue  # a rule a test added itself
            packets = [e["counter"]["packets"] for e in rule["expr"] if "counter" in e]
            out[name][kinds[kind]] = int(packets[0])
        return out

    def remove(self) -> None:
        if self.installed:
            self.router.run(["nft", "delete", "table", "ip", self.table], check=False)
            self.installed = False


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge does to each UDP datagram of at least ``min_payload`` bytes
    (probabilities 0..1; times in milliseconds); see impair_bridge.py."""

    seed: int = 1
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 5.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    min_payload: int = 0
    max_seconds: float = 600.0

    def argv(self, left: str, right: str) -> list[str]:
        return [
            sys.executable,
            str(BRIDGE_SCRIPT),
            f"--left={left}",
            f"--right={right}",
            f"--seed={self.seed}",
            f"--loss={self.loss}",
            f"--dup={self.dup}",
            f"--reorder={self.reorder}",
            f"--reorder-ms={self.reorder_ms}",
            f"--delay-ms={self.delay_ms}",
            f"--jitter-ms={self.jitter_ms}",
            f"--min-payload={self.min_payload}",
            f"--max-seconds={self.max_seconds}",
        ]


class Bridge:
    """The bridge process in the middle namespace; ``stop()`` ends it by its PID and returns
    its counters (a dict per direction, ``left_to_right`` being a → b, plus totals)."""

    def __init__(self, host: Host, config: BridgeConfig, left: str, right: str) -> None:
        self.config = config
        self.proc = host.popen(
            config.argv(left, right),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.result: dict[str, Any] | None = None
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], BRIDGE_START)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            err = self._kill()
            raise AssertionError(f"impairment bridge did not start: {line!r} {err!r}")

    def _kill(self) -> bytes:
        if self.proc.poll() is None:
            self.proc.kill()
        _out, err = self.proc.communicate(timeout=10)
        return err

    def stop(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError("impairment bridge did not stop on SIGTERM") from None
        lines = out.decode().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"impairment bridge failed ({self.proc.returncode}): {err!r}")
        self.result = json.loads(lines[-1])
        return self.result


@dataclass
class PathCounts:
    """Every counter of an impaired path, read after the bridge stopped."""

    nft: dict[str, dict[str, int]]  # per direction ("a_to_b", "b_to_a")
    bridge: dict[str, Any]
    drops: dict[str, int]  # interface, socket and UDP receive-side drops (should all be 0)

    @property
    def a_to_b(self) -> dict[str, int]:
        """The bridge's counters for frames from a to b."""
        return dict(self.bridge["left_to_right"])

    @property
    def b_to_a(self) -> dict[str, int]:
        return dict(self.bridge["right_to_left"])

    def expected_receiver(self) -> dict[str, int]:
        """What a receiver on b must have seen of the datagrams a sent: datagrams lost
        (no copy arrived), duplicate arrivals, late first arrivals (after one sent later),
        and distinct arrivals. Exact, because nftables acts first, then the bridge."""
        nft, br = self.nft["a_to_b"], self.a_to_b
        return {
            "lost": nft["dropped"] + br["unique_in"] - br["unique_out"],
            "duplicates": br["dup_out"],
            "late": br["late"],
            "unique": br["unique_out"],
        }


def _udp_snmp(host: Host) -> dict[str, int]:
    lines = [x.split() for x in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines()]
    udp = [x for x in lines if x[0] == "Udp:"]
    return dict(zip(udp[0][1:], map(int, udp[1][1:]), strict=True))


def _link_drops(host: Host, iface: str) -> int:
    doc = json.loads(host.run(["ip", "-j", "-s", "link", "show", "dev", iface]).stdout)
    stats = doc[0]["stats64"]
    return int(stats["rx"]["dropped"]) + int(stats["tx"]["dropped"])


class ImpairedPath:
    """Hosts ``a`` and ``b``, router ``r`` and bridge namespace ``m`` (see the module
    docstring). Use :func:`impaired_path`."""

    def __init__(self, lab: Lab, n: int) -> None:
        self.lab = lab
        self.a_addr, self.r_left = f"198.18.{n}.1", f"198.18.{n}.254"
        self.b_addr, self.r_right = f"198.19.{n}.2", f"198.19.{n}.254"
        self.a, self.r = lab.host("a"), lab.host("r", forwarding=True)
        self.m, self.b = lab.host("m"), lab.host("b")
        for host in (self.r, self.m):  # no neighbour discovery or router noise from these
            host.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            host.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        lab.link(self.a, self.r, f"{self.a_addr}/24", f"{self.r_left}/24", offloads=False)
        offloads_off(self.a, self.a.interfaces[0])
        offloads_off(self.r, self.r.interfaces[0])
        tag = lab.tag
        self.rm, self.ml, self.mr, self.bm = (f"{tag}{s}"[-15:] for s in "RLMB")
        _ip("link", "add", self.rm, "type", "veth", "peer", "name", self.ml)
        _ip("link", "add", self.mr, "type", "veth", "peer", "name", self.bm)
        for iface, host in (
            (self.rm, self.r),
            (self.ml, self.m),
            (self.mr, self.m),
            (self.bm, self.b),
        ):
            _ip("link", "set", iface, "netns", host.name)
            host.interfaces.append(iface)
        _ip("-n", self.r.name, "addr", "add", f"{self.r_right}/24", "dev", self.rm)
        _ip("-n", self.b.name, "addr", "add", f"{self.b_addr}/24", "dev", self.bm)
        for iface, host in (
            (self.rm, self.r),
            (self.ml, self.m),
            (self.mr, self.m),
            (self.bm, self.b),
        ):
            if host is self.m:
                _ip("-n", host.name, "link", "set", iface, "promisc", "on")
            _ip("-n", host.name, "link", "set", iface, "up")
            offloads_off(host, iface)
        lab.route(self.a, "198.19.0.0/16", self.r_left)
        lab.route(self.b, "198.18.0.0/16", self.r_right)
        self.nft: NftImpairment | None = None
        self.bridge: Bridge | None = None
        self._snmp0 = {"a": _udp_snmp(self.a), "b": _udp_snmp(self.b)}

    def start(self, config: BridgeConfig, nft_loss: float, nft_dup: float) -> None:
        self.bridge = Bridge(self.m, config, self.ml, self.mr)
        # Neighbour resolution and a first packet each way, before any impairment of UDP.
        self.a.run(["ping", "-c1", "-W5", self.b_addr])
        self.b.run(["ping", "-c1", "-W5", self.a_addr])
        self.nft = NftImpairment(
            self.r,
            {"a_to_b": self.b_addr, "b_to_a": self.a_addr},
            loss=nft_loss,
            dup=nft_dup,
            min_payload=config.min_payload,
            table=f"imp{self.lab.tag}",
        )
        self.nft.install()

    def finish(self) -> PathCounts:
        """Stop the bridge and read every counter (call when the traffic is over)."""
        assert self.bridge is not None and self.nft is not None
        bridge = self.bridge.stop()
        drops: dict[str, int] = {}
        for name, host in (("a", self.a), ("b", self.b)):
            snmp = _udp_snmp(host)
            for key in ("RcvbufErrors", "InCsumErrors", "InErrors"):
                drops[f"{name}.{key}"] = snmp[key] - self._snmp0[name][key]
        for host in (self.a, self.r, self.m, self.b):
            for iface in host.interfaces:
                drops[f"{host.name[-1]}.{iface}"] = _link_drops(host, iface)
        drops["bridge.socket_drops"] = int(bridge["socket_drops"])
        drops["bridge.tx_errors"] = int(bridge["tx_errors"])
        drops["bridge.flushed_at_stop"] = int(bridge["flushed_at_stop"])
        return PathCounts(self.nft.counters(), bridge, drops)

    def close(self) -> None:
        try:
            if self.bridge is not None and self.bridge.proc.poll() is None:
                self.bridge._kill()
        finally:
            if self.nft is not None:
                self.nft.remove()


#: 198.18.N / 198.19.N for the next path; each path has its own namespaces, so N only keeps
#: the addresses of paths in one test apart (and readable in captures).
_nets = itertools.cycle(range(40, 250))


@contextlib.contextmanager
def impaired_path(
    *,
    bridge: BridgeConfig | None = None,
    nft_loss: float = 0.0,
    nft_dup: float = 0.0,
    net: int | None = None,
) -> Iterator[ImpairedPath]:
    """Build the path, start the bridge, install the nftables rules; tear all down on exit."""
    with Lab() as lab:
        path = ImpairedPath(lab, net if net is not None else next(_nets))
        try:
            path.start(bridge or BridgeConfig(), nft_loss, nft_dup)
            yield path
        finally:
            path.close()


# -- a plain socket pair, to check the lab's counters against ------------------------------

_PROBE_SEND = """
import socket, struct, sys, time
dest = sys.argv[1]
port, count, size = map(int, sys.argv[2:5])
rate = float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(size - 8)
t0 = time.monotonic()
for i in range(count):
    while time.monotonic() < t0 + i / rate:
        pass
    s.sendto(struct.pack("!Q", i) + pad, (dest, port))
for _ in range(3):
    s.sendto(b"end", (dest, port))
"""

_PROBE_RECEIVE = """
import json, select, socket, struct, sys
port, idle = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
seqs, ended = [], False
while True:
    r, _, _ = select.select([s], [], [], idle if ended else 60)
    if not r:
        break
    data = s.recv(65536)
    if data == b"end":
        ended = True
    else:
        seqs.append(struct.unpack_from("!Q", data)[0])
print(json.dumps(seqs), flush=True)
"""


def probe_receiver(host: Host, port: int, idle: float = 1.0) -> subprocess.Popen[bytes]:
    """A receiver of numbered datagrams on ``port``; its stdout's last line is the JSON list
    of sequence numbers in arrival order (it ends ``idle`` s after the sender's end marker,
    which is 3 bytes long, so never impaired when ``min_payload`` > 3)."""
    proc = host.popen(
        [sys.executable, "-c", _PROBE_RECEIVE, str(port), str(idle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], BRIDGE_START)
    if not ready or proc.stdout.readline().strip() != b"ready":
        proc.kill()
        proc.communicate()
        raise AssertionError("probe receiver did not start")
    return proc


def probe_send(host: Host, dest: str, port: int, *, count: int, size: int, rate: float) -> None:
    """Send ``count`` datagrams of ``size`` bytes numbered 0.. at ``rate`` per second."""
    host.run(
        [sys.executable, "-c", _PROBE_SEND, dest, str(port), str(count), str(size), str(rate)],
        timeout=60 + count / rate,
    )


def observed(seqs: Sequence[int], count: int) -> dict[str, int]:
    """A receiver's view of ``count`` numbered datagrams that arrived in order ``seqs``."""
    seen: set[int] = set()
    late = duplicates = 0
    highest = -1
    for seq in seqs:
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    return {
        "lost": count - len(seen),
        "duplicates": duplicates,
        "late": late,
        "unique": len(seen),
    }


def wait_ended(proc: subprocess.Popen[bytes], timeout: float) -> list[int]:
    """The probe receiver's list, once it ended by itself."""
    deadline = time.monotonic() + timeout
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("probe receiver did not end") from None
    assert proc.returncode == 0, err
    result: list[int] = json.loads(out.decode().strip().splitlines()[-1])
    return result
