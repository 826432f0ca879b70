"""``--plot FILE``: interval throughput as an SVG line chart or a PNG bar chart (no deps)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from .results import IntervalReport

__all__ = ["write_plot"]

WIDTH, HEIGHT, MARGIN = 640, 320, 48


def write_plot(path: str | Path, intervals: Sequence[IntervalReport], title: str) -> None:
    """Write ``.svg`` (with axes and labels) or ``.png`` (bars only); other suffixes: SVG."""
    target = Path(path)
    points = [(i.end, i.bits_per_second) for i in intervals if not i.omitted]
    if target.suffix.lower() == ".png":
        target.write_bytes(_png(points))
    else:
        target.write_text(_svg(points, title))


def _svg(points: list[tuple[float, float]], title: str) -> str:
    t_max = max((t for t, _ in points), default=1.0) or 1.0
    y_max = max((v for _, v in points), default=1.0) or 1.0
    scale, unit = (1e9, "Gbit/s") if y_max >= 1e9 else (1e6, "Mbit/s")
    pw, ph = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def xy(t: float, v: float) -> str:
        return f"{MARGIN + pw * t / t_max:.1f},{MARGIN + ph - ph * v / (y_max * 1.1):.1f}"

    poly = " ".join(xy(t, v) for t, v in points)
    ticks = []
    for k in range(5):
        v = y_max * 1.1 * k / 4
        y = MARGIN + ph - ph * k / 4
        ticks.append(
            f'<line x1="{MARGIN}" y1="{y:.1f}" x2="{WIDTH - MARGIN}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{MARGIN - 4}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end">{v / scale:.3g}</text>'
        )
    esc = title.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(ticks)}'
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13">{esc}</text>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11">'
        f"time (s), 0-{t_max:.1f}</text>"
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" transform="rotate(-90 12 {HEIGHT / 2})"'
        f' text-anchor="middle">{unit}</text>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{poly}"/></svg>\n'
    )


def _png(points: list[tuple[float, float]]) -> bytes:
    w, h = WIDTH, HEIGHT
    rows = [bytearray(b"\xff" * (w * 3)) for _ in range(h)]
    if points:
        y_max = max(v for _, v in points) * 1.1 or 1.0
        bar = max(1, (w - 2 * MARGIN) // len(points))
        for i, (_, v) in enumerate(points):
            top = h - MARGIN - int((h - 2 * MARGIN) * v / y_max)
            for y in range(top, h - MARGIN):
                for x in range(MARGIN + i * bar, MARGIN + (i + 1) * bar - 1):
                    rows[y][3 * x : 3 * x + 3] = b"\x1f\x77\xb4"
    for x in range(MARGIN, w - MARGIN):  # x axis
        rows[h - MARGIN][3 * x : 3 * x + 3] = b"\x00\x00\x00"
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack("!I", len(data)) + body + struct.pack("!I", zlib.crc32(body))

    ihdr = struct.pack("!IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
