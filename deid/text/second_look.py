"""A second look around every cover, on the image after redaction.

Text next to a cover is often the rest of its line: grey digits on bright bone that
the first look missed while it found their neighbours. Each cover's band (its rows,
widened, and several line heights to each side) is searched again on a levelled view
(local contrast evened out), where faint text stands out, and, in the small images
the search enlarges, as it is at a finer scale, where small grey letters on noisy
tissue do. A piece on the cover's band
that touches it joins the cover whatever it reads; anything else found is decided as a
line of its own. `search_image` repeats this until the covers hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from deid import pixels
from deid.boxes import Box, bounding
from deid.errors import LeakError
from deid.text import decide, detect, read, search
from deid.text.extend import extend
from deid.text.policy import Region, TextPolicy, redaction_boxes

LOOKS = 2  # second looks after the first; text still found after them fails the file
_SIDE = 6  # line heights searched to each side of a cover
_TOUCH = 1.5  # line heights within which a piece on the band joins the cover
_FINER = 1.5  # the band is also searched as it is, this much larger than the first look
_READ = 2  # letters or digits a piece found at the finer scale must read as


def search_image(
    image: np.ndarray,
    policy: TextPolicy,
    *,
    phi: Mapping[str, str] | None = None,
    fixed: Sequence[Region] = (),
    protected: Sequence[Box] = (),
    where: str = "",
    first_scale: float | None = None,
) -> list[Region]:
    """All text regions of one rendered image (the `fixed` ones not included).

    The first look, then second looks until nothing new is found; text still found
    after `LOOKS` rounds raises `LeakError` naming `where`. `first_scale`, if given,
    is a cheaper first look (the detector on a smaller image) that the whole search
    follows only when it finds a line: a triage for images that rarely carry text.
    """
    if first_scale is not None and not detect.find_lines(image, scale=first_scale):
        return []
    matcher = decide.Matcher.build(phi or {})
    regions = _grown(image, search.look(image, policy, matcher, protected))
    for look in range(LOOKS + 1):
        covered = pixels.black_out(image, redaction_boxes([*regions, *fixed]))
        extra = second_look(covered, regions, policy, matcher)
        if not extra:
            break
        if look == LOOKS:
            raise LeakError("text stays readable after redaction; nothing written", where)
        regions = _grown(image, [*regions, *extra])
    return regions


def second_look(
    image: np.ndarray,
    regions: Sequence[Region],
    policy: TextPolicy,
    matcher: decide.Matcher,
) -> list[Region]:
    """New covers found on the redacted `image`, seen levelled, beside known regions.

    Pieces the first look already decided (mostly inside a known region) are not read
    again; a fresh piece on a cover's band within a short gap joins that cover whatever
    it reads; other fresh pieces are decided as lines of their own.
    """
    covers = redaction_boxes(regions)
    if not covers:
        return []
    height, width = image.shape[:2]
    scale = detect.search_scale(height, width, grey=image.ndim == 2)
    tallest = detect.max_line_height(height, width)
    known = [r.box for r in regions]
    pieces: list[search.Piece] = []
    for area in areas(covers, width, height):
        crop = image[area.top : area.bottom, area.left : area.right]
        views = [(levelled(crop), scale)]
        if scale > 1:  # small grey images, where text is small and grey on grey
            views.append((crop, scale * _FINER))
        for view, factor in views:
            found = [
                line
                for line in detect.find_lines(view, scale=factor, tallest=tallest)
                if not any(k.shared_area(line.box.shifted(area)) * 2 > line.box.area for k in known)
            ]
            readings = read.read_lines(view, [line.box for line in found])
            for ln, r in zip(found, readings, strict=True):
                # At the finer scale grain of tissue looks like strokes: only what reads
                # as letters there is a piece of the line.
                if view is crop and r.alnum < _READ:
                    continue
                known.append(ln.box.shifted(area))
                pieces.append(search.Piece(ln.box.shifted(area), ln.height, r))
    extra: list[Region] = []
    joined: list[search.Piece] = []
    for region in regions:
        if region.decision != "redact":
            continue
        joining = [p for p in pieces if _joins(region.box, p)]
        if joining:
            box = bounding([region.box, *(p.box for p in joining)])
            extra.append(Region(box.padded(policy.padding, width, height), "redact", region.reason))
            joined += joining
    others = [p for p in pieces if p not in joined]
    # The levelled view brings out anatomy too: what it alone shows is covered only
    # when read as text to cover, never on suspicion.
    everywhere = [Box(0, 0, width, height)]
    extra += [
        r
        for r in search.judge(others, image.shape, policy, matcher, everywhere)
        if r.decision == "redact"
    ]
    return search.merge(extra)


def areas(covers: Sequence[Box], width: int, height: int) -> list[Box]:
    """Where a second look searches: each cover's band, overlapping bands joined.

    A band is the cover's rows, a line height or 16 px more above and below, and
    several line heights to each side, where the rest of a line would be.
    """
    bands = []
    for cover in covers:
        reach = max(16, min(cover.height, 64))
        side = _SIDE * min(cover.height, 48) + 32
        bands.append(
            Box(
                max(0, cover.left - side),
                max(0, cover.top - reach),
                min(width, cover.right + side),
                min(height, cover.bottom + reach),
            )
        )
    joined = search.merge([Region(b, "redact", "text") for b in bands])
    return [r.box for r in joined]


def levelled(image: np.ndarray) -> np.ndarray:
    """A grey view with local contrast evened out (CLAHE): faint text stands out."""
    grey = image if image.ndim == 2 else image.max(axis=2)
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4))
    return np.asarray(clahe.apply(np.ascontiguousarray(grey)))


def _joins(cover: Box, piece: search.Piece) -> bool:
    """A piece of the cover's own line: within its rows, no taller than it, and
    touching it or within a short gap of it."""
    shared = min(cover.bottom, piece.box.bottom) - max(cover.top, piece.box.top)
    if shared < 0.7 * piece.box.height or piece.box.height > 1.5 * cover.height:
        return False
    gap = max(piece.box.left - cover.right, cover.left - piece.box.right)
    return gap <= _TOUCH * piece.height


def _grown(image: np.ndarray, regions: Sequence[Region]) -> list[Region]:
    """Covers settled with the kept lines they reach, grown along their lines
    (`extend`), then settled again with the kept lines the growth reaches."""
    covers, kept = _split(search.settle(*_split(regions)))
    grown = [Region(_padded_if_grown(image, r.box), "redact", r.reason) for r in covers]
    return search.settle(grown, kept)


def _padded_if_grown(image: np.ndarray, cover: Box) -> Box:
    """`extend`ed; where it grew, the detector stopped short of the line, so a letter
    more may hide at either end (a last digit over a rib): padded by a letter's width."""
    grown = extend(image, cover)
    if grown == cover:
        return cover
    height, width = image.shape[:2]
    return search.cover_box(grown, 0, width, height, line_height=cover.height)


def _split(regions: Sequence[Region]) -> tuple[list[Region], list[Region]]:
    """Covers and kept lines."""
    covers = [r for r in regions if r.decision == "redact"]
    return covers, [r for r in regions if r.decision == "keep"]
