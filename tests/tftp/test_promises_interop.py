"""The issue's acceptance sizes not held elsewhere: 100 MiB get AND put with tftp-hpa (its client
against our server, our client against tftpd-hpa) and with atftp/atftpd both ways; 0-byte and
exactly-one-block files with atftp both ways, also at blksize 1428 (a 1428-byte file); sha256
equal every time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.tftp_peers import atftp, atftpd, tftp_hpa, tftpd_hpa

from .tools import make_file, run_sk, sha256, sk_server

HOST = "127.0.0.1"
MIB100 = 100 * 1024 * 1024 + 5


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_file(tmp_path_factory.mktemp("big") / "big.bin", MIB100, seed=1100)


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    served = tmp_path / "srv"
    served.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return served, work


# --- 100 MiB --------------------------------------------------------------------------------


def test_100mib_get_and_put_with_tftpd_hpa(tmp_path: Path, big: Path) -> None:
    served, work = _dirs(tmp_path)
    os.link(big, served / "big.bin")  # a hard link: a symlink out of DIR is refused
    with tftpd_hpa(served, create=True) as port:
        got = run_sk(
            "tftp", "get", f"{HOST}:{port}", "big.bin", "-o", str(work / "got.bin"),
            "--blksize", "1428", timeout=300,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        put = run_sk(
            "tftp", "put", f"{HOST}:{port}", str(big), "up.bin", "--blksize", "1428", timeout=300
        )
        assert put.returncode == 0, put.stderr
    assert sha256(work / "got.bin") == sha256(big)
    assert sha256(served / "up.bin") == sha256(big)


def test_100mib_get_and_put_by_the_tftp_hpa_client(tmp_path: Path, big: Path) -> None:
    served, work = _dirs(tmp_path)
    os.link(big, served / "big.bin")  # a hard link: a symlink out of DIR is refused
    with sk_server(served, "--write") as (port, events, _proc):
        got = tftp_hpa(HOST, port, "get big.bin got.bin", cwd=work, timeout=300)
        assert got.returncode == 0, got.stdout + got.stderr
        put = tftp_hpa(HOST, port, "put got.bin up.bin", cwd=work, timeout=300)
        assert put.returncode == 0, put.stdout + put.stderr
        done = events.wait("done", 2, timeout=60)
    assert [(e["op"], e["size"]) for e in done] == [("read", MIB100), ("write", MIB100)]
    assert sha256(work / "got.bin") == sha256(big)
    assert sha256(served / "up.bin") == sha256(big)


def test_100mib_put_to_atftpd(tmp_path: Path, big: Path) -> None:
    served, _work = _dirs(tmp_path)
    with atftpd(served) as port:
        put = run_sk(
            "tftp", "put", f"{HOST}:{port}", str(big), "up.bin", "--blksize", "1428", timeout=300
        )
    assert put.returncode == 0, put.stderr
    assert sha256(served / "up.bin") == sha256(big)


def test_100mib_put_by_the_atftp_client(tmp_path: Path, big: Path) -> None:
    served, work = _dirs(tmp_path)
    with sk_server(served, "--write") as (port, events, _proc):
        put = atftp(
            HOST, port, "put", str(big), "up.bin", cwd=work,
            options=("blksize 1428", "windowsize 16"), timeout=300,
        )  # fmt: skip
        assert put.returncode == 0, put.stdout + put.stderr
        done = events.wait("done", timeout=60)
    assert (done[0]["op"], done[0]["size"]) == ("write", MIB100)
    assert sha256(served / "up.bin") == sha256(big)


# --- 0 bytes and exactly one block, atftp both ways -------------------------------------------


@pytest.mark.parametrize(("size", "blksize"), [(0, 512), (512, 512), (0, 1428), (1428, 1428)])
def test_edge_sizes_with_atftpd(tmp_path: Path, size: int, blksize: int) -> None:
    served, work = _dirs(tmp_path)
    source = make_file(served / "f.bin", size, seed=size + 1)
    with atftpd(served) as port:
        got = run_sk(
            "tftp", "get", f"{HOST}:{port}", "f.bin", "-o", str(work / "got.bin"),
            "--blksize", str(blksize), "--json",
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        put = run_sk(
            "tftp", "put", f"{HOST}:{port}", str(work / "got.bin"), "back.bin",
            "--blksize", str(blksize),
        )  # fmt: skip
        assert put.returncode == 0, put.stderr
    assert f'"blksize":{blksize}' in got.stderr
    assert f'"bytes":{size}' in got.stderr
    assert sha256(work / "got.bin") == sha256(source)
    assert sha256(served / "back.bin") == sha256(source)


@pytest.mark.parametrize(("size", "blksize"), [(0, 512), (512, 512), (0, 1428), (1428, 1428)])
def test_edge_sizes_by_the_atftp_client(tmp_path: Path, size: int, blksize: int) -> None:
    served, work = _dirs(tmp_path)
    source = make_file(served / "f.bin", size, seed=size + 2)
    options = () if blksize == 512 else (f"blksize {blksize}",)
    with sk_server(served, "--write") as (port, events, _proc):
        got = atftp(HOST, port, "get", "got.bin", "f.bin", cwd=work, options=options)
        assert got.returncode == 0, got.stdout + got.stderr
        put = atftp(HOST, port, "put", "got.bin", "back.bin", cwd=work, options=options)
        assert put.returncode == 0, put.stdout + put.stderr
        done = events.wait("done", 2)
    assert [(e["op"], e["size"], e["blksize"]) for e in done] == [
        ("read", size, blksize),
        ("write", size, blksize),
    ]
    assert sha256(work / "got.bin") == sha256(source)
    assert sha256(served / "back.bin") == sha256(source)
