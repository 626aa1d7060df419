"""Scaling of the dense ACL-filtered search: latency and memory at several sizes, as a table
and as a plot, in one run (bench/peers.py's workload and engines).

    python -m bench.scaling [--chunks 10000,100000,1000000] [--dim 384] [--queries 40]
                            [--engines clearance,faiss-flat] [--plot bench/scaling.png]

The plot has p50 latency (ms, log scale) against chunks (log scale), one line per engine and
caller (narrow ~3 %, middle ~40 %, broad ~80 % of the chunks); RSS growth goes beside it in a
second file (`*-rss.png`). The rows are printed as Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from apps.cli.plot import COLOURS, Canvas, encode_png, line, text
from bench.peers import Row, measure_size, parse_engines, parse_sizes

WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 40, 50
MARKS = ("o", "s", "t")  # one marker shape per caller share


def _ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten spanning [lo, hi] (at least two)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0 ** e for e in range(a, max(b, a + 1) + 1)]


def _label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k" if value < 1e6 else f"{value / 1e6:g}m"
    return f"{value:g}"


def _mark(canvas: Canvas, x: float, y: float, shape: str, colour: tuple[int, int, int]) -> None:
    xi, yi = int(x), int(y)
    if shape == "o":
        canvas[yi - 3:yi + 4, xi - 3:xi + 4] = colour
    elif shape == "s":
        canvas[yi - 3:yi + 4, xi - 3:xi + 4] = colour
        canvas[yi - 1:yi + 2, xi - 1:xi + 2] = (255, 255, 255)
    else:
        for d in range(4):
            canvas[yi - 3 + 2 * d:yi - 1 + 2 * d, xi - d:xi + d + 1] = colour


Series = Mapping[tuple[str, str, int], Sequence[tuple[float, float]]]


def draw_loglog(series: Series, title: str, x_name: str, y_name: str) -> Canvas:
    """Lines through (x, y) points on log-log axes. A series is keyed (group, label, shape):
    series of one group share a colour, `shape` picks the marker."""
    canvas = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    points = [p for values in series.values() for p in values if p[0] > 0 and p[1] > 0]
    if not points:
        return canvas
    xs = _ticks(min(p[0] for p in points), max(p[0] for p in points))
    ys = _ticks(min(p[1] for p in points), max(p[1] for p in points))
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (math.log10(x) - math.log10(xs[0])) / (math.log10(xs[-1]) - math.log10(xs[0]))
        fy = (math.log10(y) - math.log10(ys[0])) / (math.log10(ys[-1]) - math.log10(ys[0]))
        return x0 + (x1 - x0) * fx, y0 - (y0 - y1) * fy

    black, grey = (0, 0, 0), (220, 220, 220)
    for t in ys:
        y = round(at(xs[0], t)[1])
        canvas[y, x0:x1 + 1] = grey
        text(canvas, 8, y - 5, _label(t), black)
    for t in xs:
        x = round(at(t, ys[0])[0])
        canvas[y1:y0, x] = grey
        text(canvas, x - 8, y0 + 10, _label(t), black)
    canvas[y1:y0 + 1, x0] = black
    canvas[y0, x0:x1 + 1] = black
    text(canvas, x0, 12, title, black)
    text(canvas, (x0 + x1) // 2, y0 + 28, x_name, black)
    text(canvas, 8, y1 - 14, y_name, black)
    colours: dict[str, tuple[int, int, int]] = {}
    for i, ((group, label, shape_no), values) in enumerate(series.items()):
        colour = colours.setdefault(group, COLOURS[len(colours) % len(COLOURS)])
        shape = MARKS[shape_no % len(MARKS)]
        pts = [at(x, y) for x, y in values if x > 0 and y > 0]
        for a, b in pairwise(pts):
            line(canvas, a, b, colour)
        for px, py in pts:
            _mark(canvas, px, py, shape, colour)
        ly = TOP + 10 + i * 18
        _mark(canvas, x1 + 20, ly + 5, shape, colour)
        text(canvas, x1 + 32, ly, f"{group} {label}"[:24], black)
    return canvas


def write_png(path: Path, canvas: Canvas) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_png(canvas))
    tmp.replace(path)


def plots(results: Mapping[int, list[Row]], path: Path) -> tuple[Path, Path]:
    latency: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    memory: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for n in sorted(results):
        for row in results[n]:
            for c, (p50, _p95, _rec) in enumerate(row.by_caller):
                # callers are ordered narrow to broad; their shares differ a little per size
                key = (row.engine, ("narrow", "middle", "broad")[c] if c < 3 else str(c), c)
                latency.setdefault(key, []).append((float(n), p50))
            memory.setdefault((row.engine, "", 0), []).append((float(n), max(row.rss_mb, 0.1)))
    rss_path = path.with_name(path.stem + "-rss" + path.suffix)
    write_png(path, draw_loglog(latency, "dense filtered top 10: p50 ms", "chunks", "ms"))
    write_png(rss_path, draw_loglog(memory, "rss growth mb", "chunks", "mb"))
    return path, rss_path


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--engines", default="clearance,faiss-flat")
    ap.add_argument("--plot", type=Path, default=Path("bench/scaling.png"))
    args = ap.parse_args(argv)
    names = parse_engines(ap, args.engines)
    sizes = sorted(set(parse_sizes(ap, args.chunks)))
    if args.plot.suffix.lower() != ".png" or not args.plot.parent.is_dir():
        ap.error(f"--plot {args.plot}: a .png file in an existing folder")
    results: dict[int, list[Row]] = {}
    shares: dict[int, list[float]] = {}
    for n in sizes:
        results[n], shares[n] = measure_size(n, args.dim, args.queries, names)
    print("\n| chunks | engine | build s | RSS +MB | " + " | ".join(
        f"caller {i + 1}: p50 / p95 ms" for i in range(3)) + " |")
    print("|---" * 7 + "|")
    for n in sizes:
        for r in results[n]:
            cells = " | ".join(f"{p50:.2f} / {p95:.2f} ({shares[n][c]:.0%}, R@10 {rec:.3f})"
                               for c, (p50, p95, rec) in enumerate(r.by_caller))
            print(f"| {n:,} | {r.engine} | {r.build_s:.1f} | {r.rss_mb:.0f} | {cells} |")
    for p in plots(results, args.plot):
        print(f"plot: {p}")


if __name__ == "__main__":
    main()
