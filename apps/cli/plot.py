"""`clearance eval --plot FILE.png`: recall@k curves drawn with numpy and written as a PNG.

No plotting library (matplotlib is not in the product's stack): the canvas is a numpy array,
labels use a 3x5 pixel font, and the file is PNG's plain container (IHDR, one zlib IDAT, IEND).
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import UsageError

Canvas = npt.NDArray[np.uint8]

_FONT = {
    "a": "010101111101101", "b": "110101110101110", "c": "011100100100011",
    "d": "110101101101110", "e": "111100110100111", "f": "111100110100100",
    "g": "011100101101011", "h": "101101111101101", "i": "111010010010111",
    "j": "001001001101010", "k": "101101110101101", "l": "100100100100111",
    "m": "101111111101101", "n": "110101101101101", "o": "010101101101010",
    "p": "110101110100100", "q": "010101101110011", "r": "110101110101101",
    "s": "011100010001110", "t": "111010010010010", "u": "101101101101111",
    "v": "101101101101010", "w": "101101111111101", "x": "101101010101101",
    "y": "101101010010010", "z": "111001010100111", "0": "111101101101111",
    "1": "010110010010111", "2": "110001010100111", "3": "110001010001110",
    "4": "101101111001001", "5": "111100110001110", "6": "011100111101111",
    "7": "111001010010010", "8": "111101111101111", "9": "111101111001110",
    ".": "000000000000010", "@": "111101111100011", "-": "000000111000000",
    "_": "000000000000111", ":": "000010000010000", " ": "000000000000000",
}
_UNKNOWN = "111101101101111"
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]
WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 60, 170, 40, 50  # margins around the plotting area
SCALE = 2  # font pixels per glyph pixel


def text(canvas: Canvas, x: int, y: int, label: str, colour: tuple[int, int, int]) -> None:
    for i, ch in enumerate(label.lower()):
        bits = _FONT.get(ch, _UNKNOWN)
        for n, bit in enumerate(bits):
            if bit == "1":
                gx, gy = x + (i * 4 + n % 3) * SCALE, y + (n // 3) * SCALE
                canvas[gy:gy + SCALE, gx:gx + SCALE] = colour


def line(canvas: Canvas, a: tuple[float, float], b: tuple[float, float],
         colour: tuple[int, int, int], width: int = 2) -> None:
    steps = int(max(abs(b[0] - a[0]), abs(b[1] - a[1]))) + 1
    for t in np.linspace(0.0, 1.0, steps + 1):
        x = round(a[0] + (b[0] - a[0]) * t)
        y = round(a[1] + (b[1] - a[1]) * t)
        canvas[max(0, y - width // 2):y + (width + 1) // 2,
               max(0, x - width // 2):x + (width + 1) // 2] = colour


def draw(series: Mapping[str, Sequence[float]]) -> Canvas:
    """Recall@k for k = 1..n per named series; y from 0 to 1."""
    canvas = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    depth = max((len(v) for v in series.values()), default=1)

    def at(k: int, value: float) -> tuple[float, float]:
        span = max(1, depth - 1)
        return (x0 + (x1 - x0) * (k - 1) / span, y0 - (y0 - y1) * min(1.0, max(0.0, value)))

    black, grey = (0, 0, 0), (220, 220, 220)
    for tick in range(6):
        y = round(y0 - (y0 - y1) * tick / 5)
        canvas[y, x0:x1 + 1] = grey
        text(canvas, x0 - 36, y - 5, f"{tick / 5:.1f}", black)
    for k in range(1, depth + 1):
        x = round(at(k, 0.0)[0])
        canvas[y0:y0 + 5, x] = black
        text(canvas, x - 3, y0 + 10, str(k), black)
    canvas[y1:y0 + 1, x0] = black
    canvas[y0, x0:x1 + 1] = black
    text(canvas, x0, 12, "recall@k", black)
    text(canvas, (x0 + x1) // 2, y0 + 28, "k", black)
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [at(k, v) for k, v in enumerate(values, start=1)]
        for a, b in pairwise(points):
            line(canvas, a, b, colour)
        for px, py in points:
            canvas[int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3] = colour
        ly = TOP + 10 + i * 18
        canvas[ly:ly + 10, x1 + 15:x1 + 25] = colour
        text(canvas, x1 + 32, ly, name[:16], black)
    return canvas


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(canvas: Canvas) -> bytes:
    """An 8-bit RGB PNG of an HxWx3 uint8 array (filter type 0 on every row)."""
    height, width, _ = canvas.shape
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8),
                           canvas.reshape(height, width * 3)], axis=1)
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + _chunk(b"IEND", b""))


def check_target(path: Path) -> None:
    """Before any work: the plot can be written where asked (UsageError otherwise)."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: the file name must end in .png")
    if path.is_dir():
        raise UsageError(f"--plot {path} is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--plot {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--plot {path}: folder {parent} is not writable")


def write_plot(path: Path, series: Mapping[str, Sequence[float]]) -> None:
    """Written whole or not at all (a temporary file renamed into place)."""
    data = encode_png(draw(series))
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None
