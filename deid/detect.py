"""Finding burned-in text without OCR: where overlay-like strokes line up as text.

Burned-in text is drawn by a machine on top of the picture: thin strokes, much brighter
(or darker, or more saturated) than what lies around them, of one height, side by side
on a line. That shape can be found with a few passes of numpy over the rendered image,
far faster than Tesseract reads it, so OCR is spent only where text may be.

The steps, on each grey plane of the image (luma; for colour also the brightest channel
and the saturation) and at a few scales (full size, then halves for large text):

1. stroke contrast: each pixel minus the opening of its square neighbourhood (a
   top-hat), so thin bright lines stand out and smooth anatomy and wide blobs drop to
   zero; the same on the inverted plane finds dark text;
2. a threshold from the local noise (the median contrast of 32 px blocks), so grainy
   anatomy needs a stronger stroke than a clean black border; long bands of clipped
   white (a rib ring after windowing) are taken out of the bright strokes first, so
   the letters they cross are not joined to them and lost;
3. connected groups of stroke pixels of letter size (glyphs), then glyphs that share a
   middle band and stand close together joined into lines;
4. a text score per line from its shape: how many vertical strokes cross its middle,
   how empty the bands above and below are, how many glyphs it has.

Nothing here reads or keeps text: a `Candidate` is a box, the plane and polarity it was
seen in, and its score. `ocr_crop` turns one into the small dark-on-light image that
Tesseract reads best.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from deid.boxes import Box

Polarity = Literal["bright", "dark"]
Bands = tuple[Box, np.ndarray] | None  # where saturated bands lie: a box, its mask there

# A stroke is at most this many pixels wide at a level (top-hat reach, either side).
_REACH = 3
_BLOCK = 32  # px side of the blocks whose median contrast sets the local threshold
_SAMPLES = 8  # per block side: medians are taken over an 8x8 grid of its pixels
_LEAST_CONTRAST = 28  # grey levels: weaker strokes are never text a reader sees
_NOISE_FACTOR = 3.5  # stroke contrast must exceed this many block medians
_MIN_HEIGHT = 5  # px: shorter glyph groups cannot be read by anyone
_MAX_HEIGHT = 40  # px at one level: taller ones are found at the next, halved level
_MIN_PIXELS = 10  # stroke pixels a glyph has at least
_MAX_LEVELS = 2  # full size, then half for large text
_LEVEL_SIDE = 192  # px: a level is searched only while its short side is at least this
_THREADED_PIXELS = 1 << 20  # images this large are searched on two threads
_MAX_CANDIDATES = 400  # lines scored per image, the strongest first
_SATURATED = 250  # grey level from which a pixel is flat white (clipped by the window)
_BAND_LENGTH = 96  # px: a saturated core this long is a rib ring or a bar, not a letter
_BAND_CELL = 4  # px side of the cells saturated bands are found on


@dataclass(frozen=True)
class Candidate:
    """A line of what may be text, found without reading it.

    `box` is tight around the strokes, in full-image pixels. `plane` indexes
    `planes(image)` and `polarity` says whether the strokes are brighter or darker
    than their surroundings there. `height` is the typical glyph height (px), `glyphs`
    the number of stroke groups joined into the line, and `score` (0..1) how much the
    line's shape is like text: 0.5 and above looks like text to a reader.
    """

    box: Box
    plane: int
    polarity: Polarity
    height: int
    glyphs: int
    score: float

    @property
    def wide(self) -> bool:
        """Shaped like a run of letters: at least 16 px and 1.5 glyph heights wide."""
        return self.box.width >= max(16, 1.5 * self.height)


def planes(image: np.ndarray) -> list[np.ndarray]:
    """The grey images text is searched in: luma; for colour also max channel, saturation.

    Raises TypeError for anything but a uint8 (H, W) or (H, W, 3) image.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"text search needs a uint8 display image, not {image.dtype}")
    if image.ndim == 2:
        return [image]
    if image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"text search needs a (H, W) or (H, W, 3) image, not {image.shape}")
    luma = np.asarray(Image.fromarray(image, mode="RGB").convert("L"))
    high = image.max(axis=2)
    if np.array_equal(luma, high):
        return [luma]
    low = image.min(axis=2)
    return [luma, high, np.asarray(high - low, dtype=np.uint8)]


def find_candidates(image: np.ndarray, *, least_score: float = 0.0) -> list[Candidate]:
    """Lines of overlay-like strokes in a rendered image, the likeliest text first.

    Only candidates scoring at least `least_score` are returned. A candidate mostly
    inside a better one (another plane, polarity or level seeing the same text) is
    dropped; partial overlaps are kept, each is read on its own. Pure: the same image
    always gives the same list.
    """
    return candidates_in(planes(image), least_score=least_score)


def candidates_in(
    grey_planes: Sequence[np.ndarray],
    *,
    least_score: float = 0.0,
    bands: Sequence[Bands] | None = None,
) -> list[Candidate]:
    """`find_candidates` on the image's `planes`, for a caller that already has them.

    `bands` are the planes' `saturated_bands`, for a caller that already has them too.
    """
    searches: list[tuple[np.ndarray, int, int, Polarity, Bands]] = []
    for index, plane in enumerate(grey_planes):
        polarities: tuple[Polarity, ...] = ("bright", "dark") if index == 0 else ("bright",)
        band = saturated_bands(plane) if bands is None else bands[index]
        scaled = plane
        for level in range(_MAX_LEVELS):
            if level and min(scaled.shape) < _LEVEL_SIDE:
                break
            for polarity in polarities:
                source = scaled if polarity == "bright" else 255 - scaled
                ignore = band if polarity == "bright" and level == 0 else None
                searches.append((source, level, index, polarity, ignore))
            scaled = _halved(scaled)
    workers = min(2, os.cpu_count() or 1) if grey_planes[0].size >= _THREADED_PIXELS else 1
    if workers > 1:
        # numpy lets go of the GIL in the heavy passes: the searches run side by side.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda job: _search(*job), searches))
    else:
        results = [_search(*job) for job in searches]
    found = [candidate for result in results for candidate in result]
    kept = _distinct([c for c in found if c.score >= least_score])
    return sorted(kept, key=lambda c: (-c.score, c.box.top, c.box.left))


def stroke_contrast(grey: np.ndarray, reach: int = _REACH) -> np.ndarray:
    """How much brighter each pixel is than the opening of its neighbourhood (a top-hat).

    The opening (a minimum, then a maximum, over squares of side 2 * reach + 1) keeps
    only shapes a square that size fits in: wide smooth anatomy and blobs. The pixel
    minus it is large on thin bright strokes of any direction, junctions included, and
    zero elsewhere.
    """
    g = np.ascontiguousarray(grey, dtype=np.uint8)
    pad = 2 * reach  # row windows then never reach into the next row's pixels
    wide = np.pad(g, ((0, 0), (pad, pad)), mode="edge")
    cols = wide.shape[1]
    eroded = _run(_run(wide, reach, 1, np.minimum), reach, cols, np.minimum)
    opened = _run(_run(eroded, reach, 1, np.maximum), reach, cols, np.maximum)
    return np.asarray(g - opened[:, pad : pad + g.shape[1]], dtype=np.uint8)


def _run(a: np.ndarray, reach: int, step: int, op: Callable[..., np.ndarray]) -> np.ndarray:
    """`op` (minimum or maximum) over the 2 * reach + 1 samples centred on each one.

    Samples are `step` apart in memory order (1: along a row, row length: down a
    column), so every pass is a contiguous shift. Windows running off the array's ends
    use what remains of them.
    """
    length = 2 * reach + 1
    flat = a.reshape(-1)
    out = flat.copy()
    done = 1  # out[i] holds op over samples i .. i + (done - 1) * step
    while done < length:
        k = min(done, length - done) * step
        if k >= out.size:
            break
        op(out[:-k], out[k:], out=out[:-k])
        done += k // step
    shift = reach * step
    centred = np.empty_like(out)
    if 0 < shift < out.size:
        centred[shift:] = out[:-shift]
        centred[:shift] = out[:shift]  # the first samples keep their forward window
    else:
        centred[:] = out
    return centred.reshape(a.shape)


def _halved(grey: np.ndarray) -> np.ndarray:
    """The image at half size, each pixel the mean of a 2x2 block."""
    return np.asarray(Image.fromarray(grey).reduce(2))


def _strokes(
    contrast: np.ndarray, grey: np.ndarray, ignore: np.ndarray | None = None
) -> np.ndarray:
    """Pixels whose stroke contrast clears the local noise and the least contrast.

    The noise of a 32 px block is its median contrast (text covers too little of a block
    to move it); the bar is the higher of the block's and its noisiest neighbour's, so
    speckle next to a black border is judged as speckle. A stroke must also be brighter
    than most of its block by half that bar: the dark gaps between bright letters stand
    out against the letters, not against the dark background they are part of.
    Pixels set in `ignore` (a saturated band) take no part in either median.
    """
    h, w = contrast.shape
    rows, cols = -(-h // _BLOCK), -(-w // _BLOCK)
    padded = np.zeros((rows * _BLOCK, cols * _BLOCK), dtype=np.uint8)
    padded[:h, :w] = contrast
    step = _BLOCK // _SAMPLES  # the medians are taken over a grid of samples
    skip = None
    if ignore is not None:
        skip = np.ones((rows * _SAMPLES, cols * _SAMPLES), dtype=bool)
        sampled = ignore[::step, ::step]
        skip[: sampled.shape[0], : sampled.shape[1]] = sampled
    median = _block_median(padded[::step, ::step], rows, cols, skip)
    busy = median.copy()
    grown = np.pad(median, 1, mode="edge")
    for dy in range(3):
        for dx in range(3):
            busy = np.maximum(busy, grown[dy : dy + rows, dx : dx + cols])
    limit = np.maximum(_LEAST_CONTRAST, _NOISE_FACTOR * busy + 8)
    mask = padded.reshape(rows, _BLOCK, cols, _BLOCK) > limit[:, None, :, None]
    values = np.zeros((rows * _BLOCK, cols * _BLOCK), dtype=np.uint8)
    values[:h, :w] = grey
    level = _block_median(values[::step, ::step], rows, cols, skip)
    bar = level + limit / 2
    mask &= values.reshape(rows, _BLOCK, cols, _BLOCK) > bar[:, None, :, None]
    return mask.reshape(rows * _BLOCK, cols * _BLOCK)[:h, :w]


def _block_median(samples: np.ndarray, rows: int, cols: int, skip: np.ndarray | None) -> np.ndarray:
    """The median of each block's samples, leaving out those set in `skip` (0 if all)."""

    def grid(a: np.ndarray) -> np.ndarray:
        blocks = a.reshape(rows, _SAMPLES, cols, _SAMPLES).transpose(0, 2, 1, 3)
        return blocks.reshape(rows, cols, -1)

    values = grid(samples)
    median = np.asarray(np.median(values, axis=2))
    if skip is None:
        return median
    skipped = grid(skip)
    some = skipped.any(axis=2)
    if some.any():  # only the few blocks a band reaches take the slower masked median
        masked = np.where(skipped[some], np.nan, values[some].astype(np.float64))
        masked[np.isnan(masked).all(axis=1)] = 0.0
        median[some] = np.nanmedian(masked, axis=1)
    return median


@dataclass
class _Groups:
    """Connected groups of set pixels: boxes (n, 4) as left, top, right, bottom; sizes."""

    boxes: np.ndarray
    counts: np.ndarray
    runs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # row, start, end, group


def label(mask: np.ndarray) -> _Groups:
    """Boxes and pixel counts of the 8-connected groups of set pixels in a mask.

    Runs of set pixels along each row are the nodes; runs on neighbouring rows that
    touch (diagonally included) are joined, by hooking roots and jumping pointers in
    numpy until nothing changes.
    """
    h, w = mask.shape
    edges = np.zeros((h, w + 2), dtype=np.int8)
    edges[:, 1:-1] = mask
    step = np.diff(edges, axis=1)
    row_s, col_s = np.nonzero(step == 1)
    row_e, col_e = np.nonzero(step == -1)
    n = row_s.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Groups(np.zeros((0, 4), dtype=np.int64), empty, (empty,) * 4)
    stride = w + 2
    key_s = row_s.astype(np.int64) * stride + col_s
    key_e = row_e.astype(np.int64) * stride + col_e
    below = (row_s.astype(np.int64) + 1) * stride
    lo = np.searchsorted(key_e, below + col_s, side="left")
    hi = np.searchsorted(key_s, below + col_e, side="right")
    many = np.maximum(hi - lo, 0)
    total = int(many.sum())
    parent = np.arange(n)
    if total:
        first = np.repeat(np.arange(n), many)
        offsets = np.repeat(np.cumsum(many) - many, many)
        second = np.repeat(lo, many) + (np.arange(total) - offsets)
        while True:
            a, b = parent[first], parent[second]
            differ = a != b
            if not differ.any():
                break
            a, b = a[differ], b[differ]
            np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
            while True:
                hop = parent[parent]
                if np.array_equal(hop, parent):
                    break
                parent = hop
            first, second = first[differ], second[differ]
    roots, group = np.unique(parent, return_inverse=True)
    count = roots.size
    boxes = np.empty((count, 4), dtype=np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    boxes[:, 2:] = -1
    np.minimum.at(boxes[:, 0], group, col_s)
    np.minimum.at(boxes[:, 1], group, row_s)
    np.maximum.at(boxes[:, 2], group, col_e)
    np.maximum.at(boxes[:, 3], group, row_s + 1)
    counts = np.bincount(group, weights=col_e - col_s, minlength=count).astype(np.int64)
    return _Groups(boxes, counts, (row_s, col_s, col_e, group))


def _paint(groups: _Groups, shape: tuple[int, int]) -> np.ndarray:
    """A map of group index + 1 per pixel (0 where nothing is set)."""
    row, start, end, group = groups.runs
    out = np.zeros(shape[0] * shape[1], dtype=np.int32)
    lengths = end - start
    total = int(lengths.sum())
    if total:
        first = row.astype(np.int64) * shape[1] + start
        offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = np.repeat(first, lengths) + (np.arange(total) - offsets)
        out[flat] = np.repeat(group + 1, lengths)
    return out.reshape(shape)


def _cells(mask: np.ndarray) -> np.ndarray:
    """The mask at half size: a cell is set when any of its 2x2 pixels is."""
    h, w = mask.shape[0] + mask.shape[0] % 2, mask.shape[1] + mask.shape[1] % 2
    even = np.zeros((h, w), dtype=bool)
    even[: mask.shape[0], : mask.shape[1]] = mask
    return np.asarray(even[0::2, 0::2] | even[1::2, 0::2] | even[0::2, 1::2] | even[1::2, 1::2])


def _search(
    grey: np.ndarray, level: int, plane: int, polarity: Polarity, bands: Bands = None
) -> list[Candidate]:
    """Candidates in one plane, polarity and level, boxes in full-image pixels.

    At full size strokes are grouped on a grid of 2x2 cells, which joins the letters of
    small text into words; glyph sizes below are in pixels of this level. Saturated
    `bands` (bright polarity, full size) are taken out of the strokes.
    """
    if bands is None:
        strokes = _strokes(stroke_contrast(grey), grey)
    else:  # a band is no stroke, nor part of the noise or level that sets the bar
        box, local = bands
        band = np.zeros(grey.shape, dtype=bool)
        band[box.top : box.bottom, box.left : box.right] = local
        strokes = _strokes(stroke_contrast(grey), grey, band)
        strokes[box.top : box.bottom, box.left : box.right] &= ~local
    cell = 2 if level == 0 else 1
    cells = _cells(strokes) if cell == 2 else strokes
    groups = label(cells)
    boxes = _unthreaded(cells, groups, 6 // cell) * cell
    boxes[:, 2] = np.minimum(boxes[:, 2], strokes.shape[1])
    boxes[:, 3] = np.minimum(boxes[:, 3], strokes.shape[0])
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0]
    least = _MIN_HEIGHT if level == 0 else _MAX_HEIGHT // 4
    keep = (heights >= least) & (heights <= _MAX_HEIGHT) & (widths >= 2)
    index = np.nonzero(keep)[0]
    if index.size == 0:
        return []
    lines = _lines(boxes[index], heights[index], strokes.shape)
    # Lines are cut and scored on the strokes of upright runs (3 px or more): the stems
    # every letter has; a rule, a table edge or a rib crossing the line has few.
    upright = _vertical_runs(strokes, 3)
    scale = 2**level
    out: list[Candidate] = []
    for members in lines:
        line_boxes = boxes[index[members]]
        left, top = int(line_boxes[:, 0].min()), int(line_boxes[:, 1].min())
        right, bottom = int(line_boxes[:, 2].max()), int(line_boxes[:, 3].max())
        height = int(np.median(heights[index[members]]))
        for box in _bands(upright, Box(left, top, right, bottom), height):
            inside = (line_boxes[:, 1] < box.bottom) & (line_boxes[:, 3] > box.top)
            glyphs = max(1, int(inside.sum()))
            score = _score(upright, box, min(height, box.height), glyphs)
            full = Box(box.left * scale, box.top * scale, box.right * scale, box.bottom * scale)
            band_height = min(height, box.height) * scale
            out.append(Candidate(full, plane, polarity, band_height, glyphs, score))
    out.sort(key=lambda c: -c.score)
    return out[:_MAX_CANDIDATES]


def saturated_bands(grey: np.ndarray) -> Bands:
    """Long flat bands of clipped white (a rib ring after windowing), grown by a pixel.

    Where a thin band is narrower than the top-hat it shows as a thick stroke, and the
    letters it crosses join it into one group too tall or too curved to be a line, so
    the text around it is lost. A band 7 px or more across holds a chain of wholly
    clipped 4x4 cells longer than any letter, which letter strokes at full size do not
    make; white text over it is invisible anyway. The band is the clipped pixels within
    a cell of that chain, grown by one pixel (its grainy edge). Returns the box holding
    the bands and their mask within it, or None when there is no such band.
    """
    n = _BAND_CELL
    h, w = grey.shape[0] // n * n, grey.shape[1] // n * n
    if not h or not w or int(grey.max()) < _SATURATED:
        return None
    rows = grey[:h:n, :w]
    for k in range(1, n):
        rows = np.minimum(rows, grey[k:h:n, :w])
    low = rows[:, ::n]
    for k in range(1, n):
        low = np.minimum(low, rows[:, k::n])
    cells = low >= _SATURATED
    if not cells.any():
        return None
    groups = label(cells)
    sides = groups.boxes[:, 2:] - groups.boxes[:, :2]
    long = sides.max(axis=1) >= _BAND_LENGTH // n
    if not long.any():
        return None
    left, top = (groups.boxes[long, :2].min(axis=0) - 1).clip(0).tolist()
    right, bottom = (groups.boxes[long, 2:].max(axis=0) + 1).tolist()
    right, bottom = min(right, cells.shape[1]), min(bottom, cells.shape[0])
    owners = _paint(groups, cells.shape)[top:bottom, left:right]
    band = np.concatenate([[False], long])[owners]
    near = square_filter(band.view(np.uint8), 1, np.maximum).view(bool).repeat(n, 0).repeat(n, 1)
    box = Box(left * n, top * n, right * n, bottom * n)
    flat = grey[box.top : box.bottom, box.left : box.right] >= _SATURATED
    return box, square_filter((near & flat).view(np.uint8), 1, np.maximum).view(bool)


def touches(bands: Bands, box: Box, reach: int = 2) -> bool:
    """Whether a box comes within `reach` pixels of a saturated band."""
    if bands is None:
        return False
    where, mask = bands
    top, left = max(0, box.top - reach - where.top), max(0, box.left - reach - where.left)
    bottom, right = box.bottom + reach - where.top, box.right + reach - where.left
    return bool(mask[top : max(top, bottom), left : max(left, right)].any())


def square_filter(a: np.ndarray, reach: int, op: Callable[..., np.ndarray]) -> np.ndarray:
    """`op` (np.minimum or np.maximum) over the square of side 2 * reach + 1 around each
    pixel; windows running off the image use what remains of them."""
    pad = 2 * reach
    wide = np.pad(np.ascontiguousarray(a), pad, mode="edge")  # the top rows too
    cols = wide.shape[1]
    out = _run(_run(wide, reach, 1, op), reach, cols, op)
    return np.ascontiguousarray(out[pad : pad + a.shape[0], pad : pad + a.shape[1]])


def _unthreaded(cells: np.ndarray, groups: _Groups, least: int) -> np.ndarray:
    """Group boxes with thin lines (rulers, a table's edge, a rib, a wire) taken out.

    A group far wider than tall keeps only the cells on upright runs of at least
    `least` cells (6 px): the stems of letters stay, a rule or a curve (a few cells
    thick) goes, and what stays is grouped again, so text that touches a line is still
    found and the line alone disappears. Any other elongated group of some size
    whose columns mostly span a small part of its height and whose rows mostly span a
    small part of its width is a thin curve, not letters (whose stems and bowls span
    them), and is dropped. Each group is judged on its own cells only: letters inside
    the box of a long curve (a table edge under a line of text) are not cut up with it.
    """
    boxes = groups.boxes
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0]
    long = widths > 4 * np.maximum(heights, 1)
    elongated = (2 * widths >= 5 * heights) | (2 * heights >= 5 * widths)
    sized = ~long & elongated & (np.maximum(heights, widths) >= 2 * least)
    keep = ~long & ~sized
    out = [boxes[keep]]
    owners = _paint(groups, cells.shape) if (sized | long).any() else cells
    for index in np.nonzero(sized)[0].tolist():
        left, top, right, bottom = boxes[index].tolist()
        part = owners[top:bottom, left:right] == index + 1
        if max(_span(part, 0), _span(part.T, 0)) >= 0.25:
            out.append(boxes[index : index + 1])
    for index in np.nonzero(long)[0].tolist():
        left, top, right, bottom = boxes[index].tolist()
        part = owners[top:bottom, left:right] == index + 1
        upright = _vertical_runs(part, least)
        if not upright.any():
            continue
        pieces = label(upright).boxes
        pieces = pieces[pieces[:, 3] - pieces[:, 1] >= least]
        if pieces.size:
            pieces = _regrown(part, pieces)
            out.append(pieces + np.array([left, top, left, top]))
    return np.concatenate(out).astype(np.int64)


def _regrown(part: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Stem pieces widened over the cells beside them, in their rows, up to 3/4 height.

    Only stems survive the cut of a long group, so a line would end at the stem of its
    last letter: the foot of an L, the bar of a T or the tail of a 2 lie past it. Each
    piece takes in the unbroken run of inked columns beside it within its own rows, up
    to three quarters of its height away, never the far reaches of a crossing line.
    """
    out = pieces.copy()
    width = part.shape[1]
    for i, (left, top, right, bottom) in enumerate(pieces.tolist()):
        inked = np.asarray(part[top:bottom].any(axis=0), dtype=bool).tolist()
        reach = max(1, 3 * (bottom - top) // 4)
        lo, hi = left, right
        while lo > max(0, left - reach) and inked[lo - 1]:
            lo -= 1
        while hi < min(width, right + reach) and inked[hi]:
            hi += 1
        out[i, 0], out[i, 2] = lo, hi
    return out


def _vertical_runs(part: np.ndarray, least: int) -> np.ndarray:
    """The set cells that belong to an upright run of at least `least` set cells."""
    rows = part.shape[0]
    if rows < least:
        return np.zeros_like(part)
    start = part[: rows - least + 1].copy()
    for k in range(1, least):
        start &= part[k : rows - least + 1 + k]
    out = np.zeros_like(part)
    for k in range(least):
        out[k : rows - least + 1 + k] |= start
    return out


def _span(part: np.ndarray, axis: int) -> float:
    """Median share of the height that the set cells of each filled column span."""
    filled = part.any(axis=axis)
    if not filled.any():
        return 0.0
    first = np.argmax(part, axis=axis)
    last = part.shape[axis] - 1 - np.argmax(np.flip(part, axis=axis), axis=axis)
    spans = np.asarray(last - first + 1)[filled]
    return float(np.median(spans)) / float(part.shape[axis])


def _lines(boxes: np.ndarray, heights: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Glyph indices grouped into lines: glyphs whose middle bands meet across small gaps.

    Each glyph paints its middle half, widened by 0.6 of its height on either side, on a
    blank map (of 2x2 cells); glyphs whose paint touches are on one line.
    """
    h, w = -(-shape[0] // 2), -(-shape[1] // 2)
    paint = np.zeros((h, w), dtype=bool)
    quarter = heights // 4
    gap = np.ceil(0.6 * heights).astype(np.int64)
    top = (boxes[:, 1] + quarter) // 2
    bottom = np.maximum((boxes[:, 3] - quarter) // 2, top + 1)
    left = np.maximum(boxes[:, 0] - gap, 0) // 2
    right = np.minimum(boxes[:, 2] + gap, shape[1]) // 2 + 1
    for t, b, lft, r in zip(
        top.tolist(), bottom.tolist(), left.tolist(), right.tolist(), strict=True
    ):
        paint[t:b, lft:r] = True
    owners = _paint(label(paint), (h, w))
    owner = owners[(top + bottom) // 2, np.minimum((left + right) // 2, w - 1)]
    order = np.argsort(owner, kind="stable")
    split = np.nonzero(np.diff(owner[order]))[0] + 1
    return [group for group in np.split(order, split) if owner[group[0]] > 0]


def _bands(strokes: np.ndarray, box: Box, height: int) -> list[Box]:
    """A line box taller than its glyphs, cut into the bands of rows that hold the ink.

    A rib or a wire crossing a line of text joins it into one tall group; two lines
    set close may join too. Rows with under a quarter of the busiest row's stroke
    pixels are gaps: each run of busier rows becomes a box, trimmed to its inked columns.
    """
    if box.height <= 1.5 * height:
        return [box]
    part = strokes[box.top : box.bottom, box.left : box.right]
    rows = part.sum(axis=1)
    busy = rows >= max(1, 0.25 * int(rows.max()))
    edges = np.diff(np.concatenate([[0], busy.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    out: list[Box] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b - a < _MIN_HEIGHT // 2:
            continue
        lo, hi = max(0, a - 1), min(part.shape[0], b + 1)
        cols = np.nonzero(part[lo:hi].any(axis=0))[0]
        out.append(
            Box(box.left + int(cols[0]), box.top + lo, box.left + int(cols[-1]) + 1, box.top + hi)
        )
    return out or [box]


def _score(strokes: np.ndarray, box: Box, height: int, glyphs: int) -> float:
    """How much a line looks like text, 0..1, from the stroke mask alone.

    Text is wider than tall, crosses its middle rows with a vertical stroke every
    fraction of its height, leaves the bands just above and below it nearly empty, has
    several glyphs side by side and is neither hollow nor solid. Each clue gives a part
    of the score; a lone blob of speckle gets no more than about half.
    """
    h = strokes.shape[0]
    inner = strokes[box.top : box.bottom, box.left : box.right]
    if inner.size == 0:
        return 0.0
    density = float(inner.mean())
    rows = inner.shape[0]
    middle = inner[rows // 4 : max(rows * 3 // 4, rows // 4 + 1)]
    crossings = np.count_nonzero(np.diff(middle.astype(np.int8), axis=1) == 1, axis=1)
    per_height = float(np.median(crossings)) * max(height, 1) / max(box.width, 1)
    band = max(2, height // 2)
    above = strokes[max(0, box.top - band) : box.top, box.left : box.right]
    below = strokes[box.bottom : min(h, box.bottom + band), box.left : box.right]
    around = np.concatenate([above.ravel(), below.ravel()])
    outside = float(around.mean()) if around.size else 0.0
    aspect = box.width / max(height, 1)
    score = 0.30 * min(1.0, max(0.0, (aspect - 1.0) / 2.0))  # a line of letters is wide
    score += 0.20 * min(1.0, per_height / 1.2)  # ~1.5-3 strokes per letter height
    score += 0.25 * max(0.0, 1.0 - outside / max(density, 1e-6) * 2.5)  # clean margins
    score += 0.15 * min(1.0, (glyphs - 1) / 3)  # several glyphs side by side
    score += 0.10 * (0.12 <= density <= 0.6)
    if aspect > 2:  # a line of letters crosses its middle often; a rule or a curve does not
        score *= min(1.0, per_height / 0.7)
    return round(min(1.0, score), 4)


def _distinct(found: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per piece of text: drop or absorb what better ones already hold.

    Single lines go first, then by score. A candidate lying half inside a single taken
    line, on the same line, widens that line (only along it when seen in the other
    polarity: that is the gaps between its letters, not more rows of text); one lying
    mostly (80%) inside those taken is otherwise dropped (so a word seen whole in one
    plane and in part in another is read once, whole). A block that a coarser level saw
    over several lines is dropped when the lines themselves were found.
    """

    def single(c: Candidate) -> bool:
        return c.box.height <= 1.8 * c.height

    ordered = sorted(found, key=lambda c: (not single(c), -c.score, -c.box.area))
    out: list[Candidate] = []
    for cand in ordered:
        box = cand.box
        hits = [i for i, other in enumerate(out) if box.overlaps(other.box)]
        if hits:
            seen = np.zeros((box.height, box.width), dtype=bool)
            for i in hits:
                other = out[i].box
                seen[
                    max(0, other.top - box.top) : other.bottom - box.top,
                    max(0, other.left - box.left) : other.right - box.left,
                ] = True
            share = float(seen.mean())
            if share >= 0.5 and len(hits) == 1:
                taken = out[hits[0]]
                joined = box.union(taken.box)
                if cand.polarity != taken.polarity:  # the gaps between its letters
                    joined = Box(joined.left, taken.box.top, joined.right, taken.box.bottom)
                tallest = max(taken.height, cand.height)
                if joined.height <= 1.8 * tallest:
                    out[hits[0]] = Candidate(
                        joined,
                        taken.plane,
                        taken.polarity,
                        tallest,
                        max(taken.glyphs, cand.glyphs),
                        taken.score,
                    )
                    continue
            if share >= 0.8:
                continue
        out.append(cand)
    return out


def _page(plane: np.ndarray, candidate: Candidate) -> tuple[Box, int, Box]:
    """Where a candidate's page comes from: the crop (a margin of half a glyph height),
    the border added around it (Tesseract wants white around a line), and where the
    page, border included, lies in image coordinates (it may reach past the edges).
    """
    height, width = plane.shape
    outer = candidate.box.padded(max(4, candidate.height // 2), width, height)
    border = max(6, candidate.height // 2)
    origin = Box(
        outer.left - border, outer.top - border, outer.right + border, outer.bottom + border
    )
    return outer, border, origin


def ocr_crop(grey_planes: Sequence[np.ndarray], candidate: Candidate) -> tuple[np.ndarray, Box]:
    """The candidate as Tesseract reads it best, and where the crop sits in the image.

    The crop takes a margin of half a glyph height around the line, from the plane the
    line was seen in. Its strokes are measured against their own neighbourhood (a
    top-hat wide enough for the line's stroke width), so whatever lies behind the text,
    black border or bright anatomy, turns white, and the strokes turn black: dark text on
    a clean white page, whatever the polarity or colour was. Contrast under four times
    the crop's median (grain), and anything outside the line's box, is dropped, so the
    page stays white around the letters, and a white border is added. The returned box
    is where the page (border included) lies in image coordinates, so it may reach past
    the image's edges.
    """
    line = _LineCrop.of(grey_planes, candidate)
    contrast = line.rise
    inner = contrast[line.inner]
    strong = inner[inner > _LEAST_CONTRAST]
    top = float(np.percentile(strong, 90)) if strong.size else float(max(1.0, inner.max()))
    floor = min(0.5 * top, max(0.6 * _LEAST_CONTRAST, 4.0 * float(np.median(contrast))))
    ink = np.clip((contrast - floor) * (255.0 / max(top - floor, 1.0)), 0, 255)
    return line.page(ink), line.origin


def plain_crop(grey_planes: Sequence[np.ndarray], candidate: Candidate) -> tuple[np.ndarray, Box]:
    """The candidate's crop as it is, turned dark-on-light and stretched to full range.

    A second view for lone glyphs, whose reading swings with the preparation: what the
    top-hat view and this one both read is what is there. The box is where the page
    lies in image coordinates, as `ocr_crop` gives it (the two pages line up).
    """
    plane = grey_planes[candidate.plane]
    outer, border, origin = _page(plane, candidate)
    crop = plane[outer.top : outer.bottom, outer.left : outer.right].astype(np.float32)
    if candidate.polarity == "bright":
        crop = 255 - crop
    low, high = np.percentile(crop, (1, 99))
    stretched = (crop - low) * (255.0 / max(float(high - low), 1.0))
    page = np.asarray(np.clip(stretched, 0, 255), dtype=np.uint8)
    return np.pad(page, border, mode="edge"), origin


def levelled_crop(
    grey_planes: Sequence[np.ndarray], candidate: Candidate
) -> tuple[np.ndarray, Box]:
    """The candidate's crop with each stroke measured against how far text can rise there.

    `ocr_crop` draws a stroke as dark as its contrast, so one line drawn over black and
    over grey tissue turns half black, half pale, and the pale half is misread. Here a
    pixel's rise over its neighbourhood (the opening) is divided by the rise the text's
    own level allows there, so a line of one colour is drawn evenly dark. Where the
    neighbourhood is as bright as the text (a saturated band) nothing can be seen
    apart, and what is as bright as the text is drawn as ink: the band shows as it
    looks, a bar. Same page geometry as `ocr_crop`.
    """
    line = _LineCrop.of(grey_planes, candidate)
    crop, rise, inner = line.crop, line.rise, line.inner
    opened = crop.astype(np.float32) - rise
    strong = crop[inner][rise[inner] > _LEAST_CONTRAST]
    level = float(np.percentile(strong, 90)) if strong.size else float(crop[inner].max())
    room = level - opened
    open_room = room >= _LEAST_CONTRAST
    ratio = np.where(open_room, rise / np.maximum(room, 1.0), 0.0)
    ink = np.clip((ratio - 0.3) / 0.4, 0.0, 1.0) * (rise > 0.6 * _LEAST_CONTRAST)
    ink = np.where(~open_room & (crop >= level - 8), 1.0, ink)
    return line.page(255 * ink), line.origin


@dataclass(frozen=True)
class _LineCrop:
    """A candidate's crop turned bright-on-dark, its stroke contrast, and its page layout."""

    candidate: Candidate
    shape: tuple[int, int]  # the whole image's
    outer: Box
    border: int
    origin: Box
    crop: np.ndarray
    rise: np.ndarray  # stroke contrast (float32), measured for the line's stroke width

    @classmethod
    def of(cls, grey_planes: Sequence[np.ndarray], candidate: Candidate) -> _LineCrop:
        plane = grey_planes[candidate.plane]
        outer, border, origin = _page(plane, candidate)
        crop = np.ascontiguousarray(plane[outer.top : outer.bottom, outer.left : outer.right])
        if candidate.polarity == "dark":
            crop = 255 - crop
        reach = max(_REACH, candidate.height // 5)
        rise = stroke_contrast(crop, reach).astype(np.float32)
        shape = (plane.shape[0], plane.shape[1])
        return cls(candidate, shape, outer, border, origin, crop, rise)

    @property
    def inner(self) -> tuple[slice, slice]:
        """The candidate's box within the crop."""
        box, outer = self.candidate.box, self.outer
        return (
            slice(box.top - outer.top, box.bottom - outer.top),
            slice(box.left - outer.left, box.right - outer.left),
        )

    def page(self, ink: np.ndarray) -> np.ndarray:
        """Ink (0..255) as dark text on a white page; strokes outside the line are margin
        noise and dropped, and a white border is added."""
        near = self.candidate.box.padded(2, self.shape[1], self.shape[0])
        keep = np.zeros(ink.shape, dtype=bool)
        keep[
            near.top - self.outer.top : near.bottom - self.outer.top,
            near.left - self.outer.left : near.right - self.outer.left,
        ] = True
        page = np.asarray(255 - np.where(keep, ink, 0.0), dtype=np.uint8)
        return np.pad(page, self.border, mode="constant", constant_values=255)
