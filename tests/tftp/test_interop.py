"""``socketkit tftp`` against Debian's tftp-hpa (client and server) and atftp/atftpd, both
ways: files of 0 bytes, exactly one block, a few blocks, 100 MiB and past the 16-bit block
number; with and without blksize/windowsize; sha256 equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.tftp_peers import atftp, atftpd, tftp_hpa, tftpd_hpa

from .tools import make_file, one_line, run_sk, sha256, sk_server

HOST = "127.0.0.1"
SIZES = [0, 512, 5000]
OPTIONS = {
    "plain": [],
    "blksize": ["--blksize", "1428"],
    "window": ["--blksize", "1428", "--windowsize", "8"],
}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_file(tmp_path_factory.mktemp("big") / "big.bin", 100 * 1024 * 1024 + 17, seed=100)


# --- our client, their server ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opts", list(OPTIONS))
def test_get_from_tftpd_hpa(tmp_path: Path, size: int, opts: str) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", size, seed=size)
    with tftpd_hpa(served) as port:
        out = tmp_path / "got.bin"
        result = run_sk("tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(out), *OPTIONS[opts])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sha256(out) == sha256(source)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opts", ["plain", "blksize"])
def test_put_to_tftpd_hpa(tmp_path: Path, size: int, opts: str) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(tmp_path / "up.bin", size, seed=size)
    with tftpd_hpa(served, create=True) as port:
        result = run_sk("tftp", "put", f"{HOST}:{port}", str(source), *OPTIONS[opts])
    assert result.returncode == 0, result.stderr
    assert sha256(served / "up.bin") == sha256(source)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opts", list(OPTIONS))
def test_get_from_atftpd(tmp_path: Path, size: int, opts: str) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", size, seed=size)
    with atftpd(served) as port:
        out = tmp_path / "got.bin"
        result = run_sk(
            "tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(out), "--json", *OPTIONS[opts]
        )
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(source)
    if opts == "window":  # atftpd speaks RFC 7440: the window was granted
        assert '"windowsize":8' in result.stderr and '"negotiated":true' in result.stderr


@pytest.mark.parametrize("opts", ["plain", "window"])
def test_put_to_atftpd(tmp_path: Path, opts: str) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(tmp_path / "up.bin", 70_000, seed=7)
    with atftpd(served) as port:
        result = run_sk("tftp", "put", f"{HOST}:{port}", str(source), "x.bin", *OPTIONS[opts])
    assert result.returncode == 0, result.stderr
    assert sha256(served / "x.bin") == sha256(source)


def test_get_100mib_from_atftpd_with_a_window(tmp_path: Path, big: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    (served / "big.bin").symlink_to(big)
    out = tmp_path / "got.bin"
    with atftpd(served) as port:
        result = run_sk(
            "tftp", "get", f"{HOST}:{port}", "big.bin", "-o", str(out),
            "--blksize", "8192", "--windowsize", "16",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(big)


# --- their client, our server ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_tftp_hpa_client_gets_and_puts(tmp_path: Path, size: int) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", size, seed=size)
    work = tmp_path / "client"
    work.mkdir()
    with sk_server(served, "--write") as (port, events, _proc):
        got = tftp_hpa(HOST, port, "get f.bin got.bin", cwd=work)
        assert got.returncode == 0, got.stdout + got.stderr
        put = tftp_hpa(HOST, port, "put got.bin back.bin", cwd=work)
        assert put.returncode == 0, put.stdout + put.stderr
        done = events.wait("done", 2)
    assert sha256(work / "got.bin") == sha256(source)
    assert sha256(served / "back.bin") == sha256(source)
    assert [(e["op"], e["file"], e["size"]) for e in done] == [
        ("read", "f.bin", size),
        ("write", "back.bin", size),
    ]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "options", [(), ("blksize 1428",), ("blksize 1428", "windowsize 8"), ("windowsize 4",)]
)
def test_atftp_client_gets_and_puts(tmp_path: Path, size: int, options: tuple[str, ...]) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", size, seed=size)
    work = tmp_path / "client"
    work.mkdir()
    with sk_server(served, "--write") as (port, events, _proc):
        got = atftp(HOST, port, "get", "got.bin", "f.bin", cwd=work, options=options)
        assert got.returncode == 0, got.stdout + got.stderr
        put = atftp(HOST, port, "put", "got.bin", "back.bin", cwd=work, options=options)
        assert put.returncode == 0, put.stdout + put.stderr
        done = events.wait("done", 2)
    assert sha256(work / "got.bin") == sha256(source)
    assert sha256(served / "back.bin") == sha256(source)
    windows = {e["windowsize"] for e in done}
    want = next((int(o.split()[1]) for o in options if o.startswith("windowsize")), 1)
    assert windows == {want}


def test_atftp_client_gets_100mib_from_our_server(tmp_path: Path, big: Path) -> None:
    # 1428-byte blocks (an Ethernet MTU's worth, tftpd-hpa's advice): 73 000 blocks, so the
    # block number wraps inside windows too. A window must fit atftp's receive queue: 16
    # blocks of 8 KiB do not (it drops the tail and waits for our timeout).
    work = tmp_path / "client"
    work.mkdir()
    with sk_server(big.parent) as (port, events, _proc):
        got = atftp(
            HOST, port, "get", "got.bin", "big.bin", cwd=work,
            options=("blksize 1428", "windowsize 16"),
        )  # fmt: skip
        assert got.returncode == 0, got.stdout + got.stderr
        events.wait("done")
    assert sha256(work / "got.bin") == sha256(big)


# --- past block 65535 -------------------------------------------------------------------------


WRAP = 512 * 65536 + 1000  # 65537 full blocks and more at blksize 512: the number wraps to 0


def test_wraparound_get_from_tftpd_hpa(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "w.bin", WRAP, seed=3)
    with tftpd_hpa(served) as port:
        out = tmp_path / "w.bin"
        result = run_sk("tftp", "get", f"{HOST}:{port}", "w.bin", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert sha256(out) == sha256(source)
    assert '"blksize":512' in result.stderr


def test_wraparound_tftp_hpa_client_from_our_server(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "w.bin", WRAP, seed=4)
    work = tmp_path / "client"
    work.mkdir()
    with sk_server(served) as (port, events, _proc):
        got = tftp_hpa(HOST, port, "get w.bin", cwd=work, timeout=300)
        assert got.returncode == 0, got.stdout + got.stderr
        assert events.wait("done")[0]["size"] == WRAP
    assert sha256(work / "w.bin") == sha256(source)


def test_error_from_tftpd_hpa_is_one_line_and_exit_1(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    existing = tmp_path / "keep.bin"
    existing.write_bytes(b"good")
    with tftpd_hpa(served) as port:
        result = run_sk("tftp", "get", f"{HOST}:{port}", "missing.bin", "-o", str(existing))
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "socketkit tftp: the peer sent TFTP error 1 (file not found): File not found"
    )
    assert existing.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin", "srv"]


# --- IPv6 and the dual-stack default ----------------------------------------------------------


def test_ipv6_both_ways(tmp_path: Path) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    source = make_file(served / "f.bin", 70_000, seed=6)
    work = tmp_path / "work"
    work.mkdir()
    with sk_server(served, "--write", host="::1") as (port, events, _proc):
        result = run_sk(
            "tftp", "get", f"[::1]:{port}", "f.bin", "-o", str(work / "a.bin"), "--json",
            "--windowsize", "4",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert '"server":"[::1]:' in result.stderr
        got = tftp_hpa("::1", port, "get f.bin b.bin", cwd=work)
        assert got.returncode == 0, got.stdout + got.stderr
        events.wait("done", 2)
    with tftpd_hpa(served, host="::1", create=True) as port:
        result = run_sk("tftp", "put", f"[::1]:{port}", str(work / "a.bin"), "up6.bin")
        assert result.returncode == 0, result.stderr
    assert sha256(work / "a.bin") == sha256(work / "b.bin") == sha256(source)
    assert sha256(served / "up6.bin") == sha256(source)


def test_default_bind_serves_ipv4_and_ipv6(tmp_path: Path) -> None:
    source = make_file(tmp_path / "f.bin", 5000, seed=7)
    with sk_server(tmp_path, host="") as (port, events, _proc):
        listening = events.named("listening")[0]
        assert listening["address"] == f"[::]:{port}"
        for host in (f"127.0.0.1:{port}", f"[::1]:{port}"):
            out = tmp_path / "out.bin"
            result = run_sk("tftp", "get", host, "f.bin", "-o", str(out))
            assert result.returncode == 0, result.stderr
            assert sha256(out) == sha256(source)
        peers = [e["peer"] for e in events.wait("done", 2)]
    assert peers[0].startswith("127.0.0.1:") and peers[1].startswith("[::1]:")
