"""A labelled grid of slices: several images of a series in one picture.

Each tile is scaled to fit a square cell keeping its aspect, on black, with black gaps
between cells, and its label ("lung slice 3 of 9") written in a band of its own above
the tile, never over the anatomy. Labels are plain technical words, which the text
search keeps (`deid/data/text_vocabulary.toml`). Tiles fill the grid row by row, so a
caller that passes the slices of each window in turn gets a row per window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deid.boxes import Box

__all__ = ["Placement", "montage", "montage_placed"]

_MIN_FONT = 10


@dataclass(frozen=True)
class Placement:
    """Where a tile went: its area in the grid (`left`, `top`, `width`, `height`) and
    the size it had (`source_width`, `source_height`); `map` carries a box on the tile
    into the grid."""

    left: int
    top: int
    width: int
    height: int
    source_width: int
    source_height: int

    def map(self, box: Box) -> Box:
        """A box in the tile's own pixels -> the grid's pixels, rounded outwards and
        kept on the tile."""
        sx = self.width / self.source_width
        sy = self.height / self.source_height
        return Box(
            self.left + min(self.width, max(0, math.floor(box.left * sx))),
            self.top + min(self.height, max(0, math.floor(box.top * sy))),
            self.left + min(self.width, max(0, math.ceil(box.right * sx))),
            self.top + min(self.height, max(0, math.ceil(box.bottom * sy))),
        )


def montage(
    tiles: Sequence[tuple[np.ndarray, str]],
    *,
    columns: int | None = None,
    rows: int | None = None,
    tile_side: int = 512,
) -> np.ndarray:
    """The tiles (uint8 images, each with its label) in one uint8 grid: grey when every
    tile is grey, else RGB. See `montage_placed`."""
    return montage_placed(tiles, columns=columns, rows=rows, tile_side=tile_side)[0]


def montage_placed(
    tiles: Sequence[tuple[np.ndarray, str]],
    *,
    columns: int | None = None,
    rows: int | None = None,
    tile_side: int = 512,
) -> tuple[np.ndarray, list[Placement]]:
    """`montage`, and where each tile went in it.

    Tiles fill the grid row by row; `columns` (or `rows`) sets its shape, else it is as
    near square as the count allows. Each tile is scaled (up or down) to fit a
    `tile_side` square keeping its aspect, centred in it. When any label is not empty,
    every cell gets a band above its tile holding its label, centred, in white, shrunk
    to fit the tile's width.
    """
    if not tiles:
        raise ValueError("a montage needs at least one tile")
    if tile_side < 16:
        raise ValueError(f"tile_side must be at least 16, not {tile_side}")
    for image, _ in tiles:
        if image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        ):
            raise ValueError(
                f"a tile must be uint8 (rows, cols) or (rows, cols, 3), "
                f"not {image.dtype} {image.shape}"
            )
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"a tile must not be empty, not {image.shape}")
    count = len(tiles)
    columns, rows = _shape(count, columns, rows)
    colour = any(image.ndim == 3 for image, _ in tiles)
    gap = max(4, tile_side // 64)
    font_size = min(48, max(_MIN_FONT + 2, tile_side // 16))
    pad = max(3, font_size // 4)
    band = font_size + 2 * pad if any(label.strip() for _, label in tiles) else 0
    cell_height = band + tile_side
    width = columns * tile_side + (columns + 1) * gap
    height = rows * cell_height + (rows + 1) * gap
    mode = "RGB" if colour else "L"
    canvas = Image.new(mode, (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    placed: list[Placement] = []
    for index, (image, label) in enumerate(tiles):
        row, column = divmod(index, columns)
        cell_left = gap + column * (tile_side + gap)
        cell_top = gap + row * (cell_height + gap)
        tile = Image.fromarray(image)
        if colour and tile.mode != "RGB":
            tile = tile.convert("RGB")
        scale = tile_side / max(image.shape[0], image.shape[1])
        size = (
            max(1, min(tile_side, round(image.shape[1] * scale))),
            max(1, min(tile_side, round(image.shape[0] * scale))),
        )
        if size != tile.size:
            tile = tile.resize(size, Image.Resampling.LANCZOS)
        left = cell_left + (tile_side - size[0]) // 2
        top = cell_top + band + (tile_side - size[1]) // 2
        canvas.paste(tile, (left, top))
        placed.append(Placement(left, top, size[0], size[1], image.shape[1], image.shape[0]))
        if band and label.strip():
            _label(draw, label.strip(), cell_left, cell_top, tile_side, band, font_size, colour)
    return np.asarray(canvas, dtype=np.uint8), placed


def _shape(count: int, columns: int | None, rows: int | None) -> tuple[int, int]:
    """(columns, rows) of a grid for `count` tiles."""
    if columns is not None and columns < 1:
        raise ValueError(f"columns must be at least 1, not {columns}")
    if rows is not None and rows < 1:
        raise ValueError(f"rows must be at least 1, not {rows}")
    if columns is not None and rows is not None:
        if columns * rows < count:
            raise ValueError(f"{columns} columns and {rows} rows cannot hold {count} tiles")
        return columns, rows
    if columns is None and rows is not None:
        columns = math.ceil(count / rows)
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    columns = min(columns, count)
    return columns, math.ceil(count / columns)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    left: int,
    top: int,
    side: int,
    band: int,
    size: int,
    colour: bool,
) -> None:
    """`text` centred in the band at (left, top), shrunk (else cut) to fit `side`."""
    room = side - 4
    while size > _MIN_FONT and draw.textlength(text, font=_font(size)) > room:
        size -= 1
    font = _font(size)
    while len(text) > 1 and draw.textlength(text, font=font) > room:
        text = text[:-1].rstrip()
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = left + (side - (x1 - x0)) // 2 - x0
    y = top + (band - (y1 - y0)) // 2 - y0
    draw.text((x, y), text, fill=(255, 255, 255) if colour else 255, font=font)
