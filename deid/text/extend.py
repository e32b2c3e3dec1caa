"""Covers grown along their line while the line's own ink goes on.

The detector sometimes stops short of a line's end: faint digits over dark lung, a
letter drawn white over a white rib. Half a line covered is a leak, so each cover
looks along its own band, to each side, for pixels of the colour its text is drawn in:

- an *ink* column holds text-coloured pixels inside the band and few above or below
  it (text is confined to its line; anatomy crosses it);
- a *bridge* column holds them inside and outside alike (a clipped rib, an edge of the
  same grey): a letter may hide in it, so a cover is carried through a short bridge
  that touches it, never across a long one.

A cover grows to the last ink or bridge column within a short gap of it. Nothing is
grown where nothing was covered: anatomy is never blacked out on suspicion.
"""

from __future__ import annotations

import numpy as np

from deid.boxes import Box

_GAP = 1.5  # line heights of blank columns that end a line
_BRIDGE = 1.5  # line heights a bridge may span
_REACH = 30  # line heights a cover may grow by at most, per side
_FLAT = 3  # grey levels: text is drawn in one flat value, anatomy is not
_FULL = 0.6  # share of a row in the text's colour beyond which it is background
_UNDER = 0.7  # share of a row's ink under the letters' columns for it to be theirs
_CUT = 0.25  # ... and at least this share of the line's busiest row: letters cut across
_STROKE = 3  # text-coloured pixels a column of a letter holds at least (thin
# anti-aliased strokes hold one fewer at their flat core)


def extend(image: np.ndarray, box: Box) -> Box:
    """`box`, a line's cover on a rendered image, grown along the line to its ends.

    A colour image is looked at in luma and in its brightest channel (light blue text
    on a white rib is one in the other), and the cover grows as far as either says.
    """
    y0, y1 = max(0, box.top - box.height), min(image.shape[0], box.bottom + box.height)
    rows = image[y0:y1]
    local = Box(box.left, box.top - y0, box.right, box.bottom - y0)
    if rows.ndim == 2:
        views = [rows]
    else:
        luma = (rows @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
        views = [luma, rows.max(axis=2)]
    grown = [_extend(view, local) for view in views]
    return Box(
        min(g.left for g in grown),
        min(g.top for g in grown) + y0,
        max(g.right for g in grown),
        max(g.bottom for g in grown) + y0,
    )


def _extend(grey: np.ndarray, box: Box) -> Box:
    height, width = grey.shape
    inset = box.height // 5
    top, bottom = box.top + inset, box.bottom - inset
    if bottom - top < 3 or box.width < 2:
        return box
    line = max(4, box.height - 2 * inset)
    margin = max(2, line // 3)
    core = grey[top:bottom, box.left : box.right]
    around = np.concatenate(
        [
            grey[max(0, box.top - margin) : box.top, box.left : box.right].ravel(),
            grey[box.bottom : min(height, box.bottom + margin), box.left : box.right].ravel(),
        ]
    )
    colour = _flat_colour(core, around)
    if colour is None:
        return box
    tolerance = _FLAT
    reach = _REACH * line
    left = max(0, box.left - reach)
    right = min(width, box.right + reach)
    band = np.abs(grey[top:bottom, left:right].astype(np.int16) - colour) <= tolerance
    above = np.abs(grey[max(0, top - margin) : top, left:right].astype(np.int16) - colour)
    below = np.abs(
        grey[bottom : min(height, bottom + margin), left:right].astype(np.int16) - colour
    )
    inside = band.sum(axis=0) >= _STROKE - 1
    outside = np.zeros(right - left, dtype=bool)
    for rows in (above, below):
        if rows.size:
            outside |= (rows <= tolerance).sum(axis=0) >= _STROKE
    ink = inside & ~outside
    bridge = inside & outside
    new_right = _walk(ink, bridge, box.right - left, 1, line) + left
    new_left = _walk(ink, bridge, box.left - left - 1, -1, line) + left
    pad = max(2, line // 4)
    grown_left = max(0, new_left - pad) if new_left < box.left else box.left
    grown_right = min(width, new_right + pad) if new_right > box.right else box.right
    flat = np.abs(grey[:, grown_left:grown_right].astype(np.int16) - colour) <= tolerance
    letters = flat[top:bottom].any(axis=0)
    letters[1:] |= letters[:-1].copy()
    letters[:-1] |= letters[1:].copy()
    counts = flat.sum(axis=1)
    under = (flat & letters).sum(axis=1)
    busiest = float(counts[top:bottom].max())
    continuing = (counts >= max(_STROKE - 1, _CUT * busiest)) & (counts <= _FULL * flat.shape[1])
    continuing &= under >= _UNDER * counts
    # Only a box whose own edge row cuts through letters grows above or below it.
    new_top = (
        _rows(continuing, box.top - 1, -1, box.height // 3) if continuing[box.top] else box.top
    )
    new_bottom = (
        _rows(continuing, box.bottom, 1, box.height // 3)
        if continuing[box.bottom - 1]
        else box.bottom - 1
    )
    grown_top = max(0, new_top - pad) if new_top < box.top else box.top
    grown_bottom = min(height, new_bottom + 1 + pad) if new_bottom >= box.bottom else box.bottom
    return Box(grown_left, grown_top, grown_right, grown_bottom)


def _rows(continuing: np.ndarray, start: int, direction: int, reach: int) -> int:
    """The last row from `start` outwards (at most `reach`) still holding the line's
    ink: letters cut by the box's top or bottom edge, ascenders and descenders. Such a
    row has its ink under the letters' own columns, and is not all ink (background in
    the text's colour); a row without it ends the line."""
    last = start - direction
    for row in range(start, start + direction * reach, direction):
        if not 0 <= row < len(continuing) or not continuing[row]:
            break
        last = row
    return last


def _flat_colour(core: np.ndarray, around: np.ndarray) -> float | None:
    """The grey the line is drawn in: the value most in excess in the line's core over
    the rows just around it (a lung's black, a bone's white and the grain of tissue are
    in both; the letters only in the core). None when no value stands out."""
    inside = np.bincount(core.ravel(), minlength=256).astype(np.float64)
    outside = np.bincount(around, minlength=256).astype(np.float64) if around.size else None
    excess = inside - (outside * (core.size / around.size) if outside is not None else 0.0)
    best = int(np.argmax(excess))
    return float(best) if excess[best] >= _STROKE * 2 else None


def _walk(ink: np.ndarray, bridge: np.ndarray, start: int, direction: int, line: int) -> int:
    """The column (exclusive on the right, inclusive on the left) the line reaches."""
    gap_limit = max(2, round(_GAP * line))
    bridge_limit = max(2, round(_BRIDGE * line))
    last = start - direction  # the cover's own edge column
    before_bridge = last
    position = start
    blank = 0
    bridged = 0
    while 0 <= position < len(ink):
        if ink[position]:
            last, blank, bridged = position, 0, 0
        elif bridge[position] and blank == 0:
            if bridged == 0:
                before_bridge = last
            bridged += 1
            if bridged > bridge_limit:
                last = before_bridge  # too long to be a letter's hiding place
                break
            last = position
        else:
            blank += 1
            if blank > gap_limit:
                break
        position += direction
    return last + 1 if direction > 0 else last
