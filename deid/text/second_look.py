"""A second look around every cover, on the image after redaction.

Text next to a cover is often the rest of its line: grey digits on bright bone that
the first look missed while it found their neighbours. Each cover's band (its rows,
widened, and several line heights to each side) is searched again on a levelled view
(local contrast evened out, the crop enlarged), where faint text stands out. A piece
on the cover's band that touches it joins the cover whatever it reads; anything else
found is decided as a line of its own. `search` repeats this until the covers hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from deid.boxes import Box, bounding
from deid.errors import LeakError
from deid.text import decide, detect, read, search
from deid.text.policy import Region, TextPolicy, redaction_boxes

LOOKS = 2  # second looks after the first; text still found after them fails the file
_SIDE = 8  # line heights searched to each side of a cover
_TOUCH = 1.5  # line heights within which a piece on the band joins the cover


def search_image(
    image: np.ndarray,
    policy: TextPolicy,
    *,
    phi: Mapping[str, str] | None = None,
    fixed: Sequence[Region] = (),
    protected: Sequence[Box] = (),
    where: str = "",
) -> list[Region]:
    """All text regions of one rendered image (the `fixed` ones not included).

    The first look, then second looks around the covers until nothing new is found;
    text still found after `LOOKS` rounds raises `LeakError` naming `where`.
    """
    matcher = decide.Matcher.build(phi or {})
    regions = search.find_regions(image, policy, phi=phi, protected=protected)
    for look in range(LOOKS + 1):
        covered = _black_out(image, redaction_boxes([*regions, *fixed]))
        extra = second_look(covered, regions, policy, matcher, protected)
        if not extra:
            return regions
        if look == LOOKS:
            raise LeakError("text stays readable after redaction; nothing written", where)
        regions = _combined(regions, extra)
    return regions


def second_look(
    image: np.ndarray,
    regions: Sequence[Region],
    policy: TextPolicy,
    matcher: decide.Matcher,
    protected: Sequence[Box] = (),
) -> list[Region]:
    """New covers found around the covers in `regions`, on the redacted `image`."""
    height, width = image.shape[:2]
    covers = redaction_boxes(regions)
    extra: list[Region] = []
    for cover in covers:
        area = _band(cover, width, height)
        crop = np.ascontiguousarray(image[area.top : area.bottom, area.left : area.right])
        view = levelled(crop)
        found = detect.find_lines(view, scale=_crop_scale(view))
        pieces = [
            search.Piece(line.box.shifted(area), line.height, reading)
            for line, reading in zip(
                found, read.read_lines(view, [ln.box for ln in found]), strict=True
            )
        ]
        fresh = [p for p in pieces if not any(c.contains(p.box) for c in covers)]
        joining = [p for p in fresh if _joins(cover, p)]
        if joining:
            box = bounding([cover, *(p.box for p in joining)]).padded(policy.padding, width, height)
            reason = next(r.reason for r in regions if r.box == cover) if cover else "text"
            extra.append(Region(box, "redact", reason))
        others = [p for p in fresh if p not in joining]
        extra += [
            r
            for r in search.judge(others, image.shape, policy, matcher, protected)
            if r.decision == "redact" and not any(c.contains(r.box) for c in covers)
        ]
    return search.merge(extra)


def levelled(crop: np.ndarray) -> np.ndarray:
    """A grey view of a crop with local contrast evened out (CLAHE)."""
    grey = crop if crop.ndim == 2 else crop.max(axis=2)
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4))
    return np.asarray(clahe.apply(np.ascontiguousarray(grey)))


def _crop_scale(crop: np.ndarray) -> float:
    """Crops are searched enlarged twice while small, as small images are."""
    return 2.0 if max(crop.shape[:2]) <= 640 else detect.search_scale(*crop.shape[:2])


def _band(cover: Box, width: int, height: int) -> Box:
    reach = max(16, cover.height)
    side = _SIDE * max(8, cover.height)
    return Box(
        max(0, cover.left - side),
        max(0, cover.top - reach),
        min(width, cover.right + side),
        min(height, cover.bottom + reach),
    )


def _joins(cover: Box, piece: search.Piece) -> bool:
    """A piece on the cover's band, touching it or within a short gap of it."""
    shared = min(cover.bottom, piece.box.bottom) - max(cover.top, piece.box.top)
    if shared < 0.5 * min(cover.height, piece.box.height):
        return False
    gap = max(piece.box.left - cover.right, cover.left - piece.box.right)
    return gap <= _TOUCH * piece.height and piece.reading.alnum >= 1


def _combined(regions: Sequence[Region], extra: Sequence[Region]) -> list[Region]:
    covers = search.merge([*(r for r in regions if r.decision == "redact"), *extra])
    kept = [r for r in regions if r.decision == "keep"]
    return covers + [k for k in kept if not any(c.box.overlaps(k.box) for c in covers)]


def _black_out(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    out = image.copy()
    for box in boxes:
        out[box.top : box.bottom, box.left : box.right] = 0
    return out
