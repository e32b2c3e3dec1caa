"""One look for text in one image: detect lines, read them, decide each line whole.

The detector's boxes are grouped into lines (pieces side by side on one band); a line
is read piece by piece, judged as one, and covered whole when anything in it is to be
covered, so no line is ever left half covered. Covers are padded and merged; a kept
marker that a cover touches is covered too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deid.boxes import Box, bounding
from deid.text import decide, detect, read
from deid.text.policy import Region, TextPolicy

_BAND_SHARE = 0.5  # pieces sharing this much of the lower one's height are on one band
_GAP = 1.2  # ... and this many line heights apart at most are one line
_WIDE = 4.0  # a line this many heights long holds several characters
_ASIDE = 0.8  # of a line's height, about a letter's width


@dataclass(frozen=True)
class Piece:
    """A detected box and what was read in it."""

    box: Box
    height: float
    reading: read.Reading


def find_regions(
    image: np.ndarray,
    policy: TextPolicy,
    *,
    phi: Mapping[str, str] | None = None,
    protected: Sequence[Box] = (),
) -> list[Region]:
    """Find burned-in text in a rendered uint8 grey or RGB image and decide each line.

    `phi` maps the original header's identifying values to their kind (as
    `verify.phi_values` gives them). `protected` boxes are ultrasound image regions:
    a line mostly inside one is covered only when read with confidence. Pure: the same
    image gives the same regions.
    """
    return look(image, policy, decide.Matcher.build(phi or {}), protected)


def look(
    image: np.ndarray,
    policy: TextPolicy,
    matcher: decide.Matcher,
    protected: Sequence[Box] = (),
) -> list[Region]:
    """`find_regions` with the identifying values already built into a matcher."""
    lines = detect.find_lines(image)
    if not lines:
        return []
    readings = read.read_lines(image, [line.box for line in lines])
    pieces = [Piece(ln.box, ln.height, r) for ln, r in zip(lines, readings, strict=True)]
    return judge(pieces, image.shape, policy, matcher, protected)


def judge(
    pieces: Sequence[Piece],
    shape: tuple[int, ...],
    policy: TextPolicy,
    matcher: decide.Matcher,
    protected: Sequence[Box] = (),
) -> list[Region]:
    """Regions for read pieces: grouped into lines, each line decided and covered whole."""
    height, width = shape[:2]
    covers: list[Region] = []
    kept: list[Region] = []
    for line in group_lines(pieces):
        box = bounding(p.box for p in line)
        inside = _inside_any(box, protected)
        verdict = decide.decide(joined(line), policy, matcher, protected=inside)
        if not inside and _unread_part(line, verdict):
            verdict = decide.Verdict("redact", "unreadable text")
        if verdict is None:
            continue
        if verdict.decision == "keep":
            kept.append(Region(box, "keep", verdict.reason, verdict.marker))
            continue
        cover = cover_box(box, policy.padding, width, height)
        covers.append(Region(cover, "redact", verdict.reason))
    return settle(covers, kept)


def _unread_part(line: Sequence[Piece], verdict: decide.Verdict | None) -> bool:
    """Whether a line not otherwise covered holds detected text the reader could not
    read: a piece read as nothing beside read ones, or one long line (several
    characters' width) read as a character or none. Such text is covered."""
    if verdict is not None and verdict.decision == "redact":
        return False
    unread = [p for p in line if p.reading.alnum == 0]
    if unread and len(unread) < len(line):
        return True
    return (
        len(line) == 1 and line[0].reading.alnum < 2 and line[0].box.width >= _WIDE * line[0].height
    )


def settle(covers: Sequence[Region], kept: Sequence[Region]) -> list[Region]:
    """Covers merged; a kept line that a cover reaches into is covered whole with it.

    A detected box holds a margin around its letters; a cover that reaches only into
    that margin leaves the letters whole, so only the core counts.
    """
    merged = merge(covers)
    while True:
        touched = [k for k in kept if any(c.box.overlaps(_core(k.box)) for c in merged)]
        if not touched:
            return merged + list(kept)
        kept = [k for k in kept if k not in touched]
        merged = merge([*merged, *(Region(k.box, "redact", "text") for k in touched)])


def cover_box(box: Box, pad: int, width: int, height: int, *, line_height: float = 0) -> Box:
    """A line's cover: padded aside by `pad`, or by `_ASIDE` of `line_height` (about a
    letter's width) where that is more; above and below, the detector's own margin
    around the letters is the padding, so that a cover stays off the next line of a
    stack."""
    aside = max(pad, math.ceil(_ASIDE * line_height))
    return Box(max(0, box.left - aside), box.top, min(width, box.right + aside), box.bottom)


def _core(box: Box) -> Box:
    """A detected box without the margin the detector grows around the letters."""
    inset = 3 * box.height // 10
    return Box(box.left + inset, box.top + inset, box.right - inset, box.bottom - inset)


def group_lines(pieces: Sequence[Piece]) -> list[list[Piece]]:
    """Pieces grouped into lines: on one band, side by side, left to right."""
    lines: list[list[Piece]] = []
    for piece in sorted(pieces, key=lambda p: (p.box.left, p.box.top)):
        for line in lines:
            if _same_line(line[-1], piece):
                line.append(piece)
                break
        else:
            lines.append([piece])
    return lines


def _same_line(a: Piece, b: Piece) -> bool:
    shared = min(a.box.bottom, b.box.bottom) - max(a.box.top, b.box.top)
    low = min(a.box.height, b.box.height)
    gap = b.box.left - a.box.right
    return shared >= _BAND_SHARE * low and gap <= _GAP * max(a.height, b.height)


def joined(line: Sequence[Piece]) -> read.Reading:
    """The readings of a line's pieces as one, spaces between them."""
    text = " ".join(p.reading.text for p in line if p.reading.text)
    confidences: list[float] = []
    for piece in line:
        if piece.reading.text:
            if confidences:
                confidences.append(1.0)
            confidences.extend(piece.reading.confidences)
    return read.Reading(text, tuple(confidences))


def _inside_any(box: Box, protected: Sequence[Box]) -> bool:
    return any(p.shared_area(box) * 2 > box.area for p in protected)


_RANK = ("PHI match", "pattern", "text", "unreadable text", "fixed region")


def _rank(reason: str) -> int:
    for i, prefix in enumerate(_RANK):
        if reason.startswith(prefix):
            return i
    return len(_RANK)


def _snug(a: Box, b: Box) -> bool:
    union = a.union(b).area
    return a.overlaps(b) and union <= 1.1 * (a.area + b.area - a.shared_area(b))


def merge(regions: Sequence[Region]) -> list[Region]:
    """Covers joined where their union adds little, until none do; the weightiest
    reason stays. Covers that cross at an angle stay apart: their bounding box would
    black out anatomy in the corners between them."""
    out = list(regions)
    changed = True
    while changed:
        changed = False
        for i, j in itertools.combinations(range(len(out)), 2):
            a, b = out[i], out[j]
            if _snug(a.box, b.box):
                reason = a.reason if _rank(a.reason) <= _rank(b.reason) else b.reason
                out[i] = Region(a.box.union(b.box), "redact", reason)
                del out[j]
                changed = True
                break
    return out
