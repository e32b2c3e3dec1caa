"""Deciding which burned-in text to black out.

Patient names, MRNs and dates stamped into the pixels survive every tag rule, so each
rendered image is read with Tesseract and every word found is covered, except exact,
confident matches of the profile's allow-list (laterality and view markers a reader
needs). The policy fails closed: text that looks like text but cannot be read
confidently is covered too. `Region` never carries what was read, so regions can be
logged and shown; only a kept marker names itself.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter

from deid.boxes import Box
from deid.errors import ProfileError
from deid.ocr import Word, read_words

Decision = Literal["redact", "keep"]
Reason = Literal["allow-listed marker", "text", "unreadable text"]


@dataclass(frozen=True)
class TextPolicy:
    """What to do with text found in the pixels; built from a profile's `[text]` table.

    `allow_list` holds the markers left in place, compared upper-case after stripping
    whitespace. `padding` is the least margin in pixels around a covered word.
    `min_confidence` (0-100) is the Tesseract score below which a word counts as
    unreadable: it is covered even if it looks like a marker.
    """

    allow_list: frozenset[str]
    padding: int = 4
    min_confidence: float = 60.0
    mode: Literal["all-text"] = "all-text"

    def __post_init__(self) -> None:
        normal = frozenset(entry.strip().upper() for entry in self.allow_list)
        object.__setattr__(self, "allow_list", normal - {""})
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, not {self.padding}")
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be within 0..100, not {self.min_confidence}")
        if self.mode != "all-text":
            raise ValueError(f"unknown text policy {self.mode!r}")

    @classmethod
    def from_profile(cls, section: Mapping[str, Any]) -> TextPolicy:
        """Read `allow_list`, `padding`, `min_confidence` and `policy` from a profile table.

        Missing keys take the defaults (an empty allow-list covers every word). Other
        keys of the table belong to other readers and are ignored. Raises
        `ProfileError` for a value of the wrong type or an unknown policy.
        """
        allow = section.get("allow_list", [])
        if not isinstance(allow, list | tuple) or not all(isinstance(a, str) for a in allow):
            raise ProfileError("text.allow_list must be a list of strings")
        padding = section.get("padding", cls.padding)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ProfileError("text.padding must be a whole number of pixels, 0 or more")
        confidence = section.get("min_confidence", cls.min_confidence)
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise ProfileError("text.min_confidence must be a number from 0 to 100")
        if not 0 <= confidence <= 100:
            raise ProfileError("text.min_confidence must be a number from 0 to 100")
        mode = section.get("policy", "all-text")
        if mode != "all-text":
            raise ProfileError(f"text.policy {mode!r} is not known; use 'all-text'")
        return cls(frozenset(allow), padding, float(confidence), "all-text")


@dataclass(frozen=True)
class Region:
    """A rectangle of the image and what happens to it.

    `reason` is "allow-listed marker" (kept), "text" (read confidently, covered) or
    "unreadable text" (looked like text, read poorly, covered). `marker` names a kept
    allow-listed marker such as "L"; it is None for every covered region, so a Region
    never carries identifying text.
    """

    box: Box
    decision: Decision
    reason: Reason
    marker: str | None = field(default=None)


def redaction_boxes(regions: Iterable[Region]) -> list[Box]:
    """The boxes to black out: every region whose decision is "redact"."""
    return [region.box for region in regions if region.decision == "redact"]


# Tuning of the search. These are properties of Tesseract and of how overlays are
# drawn, not of a site's policy, so they live here rather than in a profile.
_SMALL_IMAGE = 1000  # long side below which the image is enlarged before OCR
_INK_BLUR = 5  # radius of the local-background estimate for stroke contrast
_INK_MIN_CONTRAST = 40  # grey levels a stroke must stand out by, at least
_INK_NOISE_SIGMAS = 5.0  # ... and at least this many noise sigmas
_INK_TEXTLIKE = 0.04  # fraction of a word box in strokes for a poor read to count
_CELL = 4  # pixel size of the grid that groups leftover strokes into candidates
_CROP_HEIGHT = 48  # candidate crops are scaled so their text is about this tall


@dataclass(frozen=True)
class _Found:
    """A word in image coordinates, with whether it passed as text at all."""

    word: Word


def find_regions(image: np.ndarray, policy: TextPolicy) -> list[Region]:
    """Find burned-in text in a rendered uint8 grey or RGB image and decide each word.

    Tesseract (sparse-text mode) reads the image and its inverse, enlarged when small,
    plus a channel-max grey of colour images so coloured text shows. Strokes that
    stand out from their surroundings but that no word explains are cut out and read
    again as single lines, which finds the lone letters ("L", "R") sparse mode skips.
    A word is kept only when it exactly matches an allow-list entry, was read with at
    least `policy.min_confidence`, and touches no covered word; every other word
    becomes a padded black box, overlapping boxes merged.
    """
    height, width = image.shape[:2]
    greys = _greys(image)
    scale = _ocr_scale(height, width)
    passes = [g for grey in greys for g in (grey, 255 - grey)]
    words = _read_many(passes, scale)
    ink = _ink(greys)
    accepted = [w for w in words if _accept(w, ink, policy)]
    accepted += _read_leftovers(greys, ink, accepted, policy)
    return _decide(accepted, policy, width, height)


def _greys(image: np.ndarray) -> list[np.ndarray]:
    if image.dtype != np.uint8:
        raise TypeError(f"text search needs a uint8 display image, not {image.dtype}")
    if image.ndim == 2:
        return [image]
    if image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"text search needs a (H, W) or (H, W, 3) image, not {image.shape}")
    luma = np.asarray(Image.fromarray(image, mode="RGB").convert("L"))
    brightest = image.max(axis=2)
    if np.array_equal(luma, brightest):
        return [luma]
    return [luma, brightest]


def _ocr_scale(height: int, width: int) -> float:
    """Enlargement before OCR: Tesseract reads text best around 20-30 px high."""
    long_side = max(height, width)
    if long_side >= _SMALL_IMAGE:
        return 1.0
    return 3.0 if long_side <= 640 else 2.0


def _read_many(images: Sequence[np.ndarray], scale: float) -> list[Word]:
    workers = max(1, min(len(images), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda im: read_words(im, scale=scale), images))
    return [word for result in results for word in result]


def _ink(greys: Sequence[np.ndarray]) -> np.ndarray:
    """Pixels that stand out sharply from their neighbourhood, in either polarity.

    Burned-in text is drawn with hard, high-contrast strokes; anatomy and noise rarely
    are. The threshold adapts to the image's own noise so a grainy film is not all ink.
    """
    ink = np.zeros(greys[0].shape, dtype=bool)
    for grey in greys:
        contrast = _contrast(grey)
        sigma = 1.4826 * float(np.median(np.abs(contrast)))
        threshold = max(_INK_MIN_CONTRAST, _INK_NOISE_SIGMAS * sigma)
        ink |= np.abs(contrast) > threshold
    return ink


def _contrast(grey: np.ndarray) -> np.ndarray:
    background = Image.fromarray(grey).filter(ImageFilter.GaussianBlur(_INK_BLUR))
    return grey.astype(np.int16) - np.asarray(background, dtype=np.int16)


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _accept(word: Word, ink: np.ndarray, policy: TextPolicy) -> bool:
    """Whether a word Tesseract reported is text rather than texture read as letters."""
    if word.confidence >= policy.min_confidence and _alnum(word.text) >= 3:
        return True
    box = word.box
    area = max(1, box.area)
    return float(ink[box.top : box.bottom, box.left : box.right].sum()) / area >= _INK_TEXTLIKE


def _read_leftovers(
    greys: Sequence[np.ndarray], ink: np.ndarray, words: Sequence[Word], policy: TextPolicy
) -> list[Word]:
    """Read stroke clusters that no accepted word covers, one crop at a time."""
    height, width = ink.shape
    leftover = ink.copy()
    for word in words:
        box = word.box.padded(_pad(word.box, policy), width, height)
        leftover[box.top : box.bottom, box.left : box.right] = False
    found: list[Word] = []
    for box in _clusters(leftover):
        found.extend(_read_crop(greys, box))
    return found


def _clusters(mask: np.ndarray) -> list[Box]:
    """Bounding boxes of glyph-sized groups of set pixels (strokes a few px apart join)."""
    height, width = mask.shape
    rows, cols = -(-height // _CELL), -(-width // _CELL)
    padded = np.zeros((rows * _CELL, cols * _CELL), dtype=bool)
    padded[:height, :width] = mask
    cells = padded.reshape(rows, _CELL, cols, _CELL).any(axis=(1, 3))
    seen = np.zeros_like(cells)
    boxes: list[Box] = []
    for r0, c0 in zip(*np.nonzero(cells), strict=True):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        queue = deque([(int(r0), int(c0))])
        top, bottom, left, right = int(r0), int(r0), int(c0), int(c0)
        while queue:
            r, c = queue.popleft()
            top, bottom, left, right = min(top, r), max(bottom, r), min(left, c), max(right, c)
            for dr in (-2, -1, 0, 1, 2):
                for dc in (-2, -1, 0, 1, 2):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols and cells[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        queue.append((rr, cc))
        sub = mask[top * _CELL : (bottom + 1) * _CELL, left * _CELL : (right + 1) * _CELL]
        ys, xs = np.nonzero(sub)
        box = Box(
            left * _CELL + int(xs.min()),
            top * _CELL + int(ys.min()),
            left * _CELL + int(xs.max()) + 1,
            top * _CELL + int(ys.max()) + 1,
        )
        if _glyph_sized(box, len(ys), height):
            boxes.append(box)
    return boxes


def _glyph_sized(box: Box, pixels: int, image_height: int) -> bool:
    return 6 <= box.height <= max(64, image_height // 6) and pixels >= 12


def _read_crop(greys: Sequence[np.ndarray], box: Box) -> list[Word]:
    """OCR one candidate as a single text line, dark on light, about 48 px tall."""
    height, width = greys[0].shape
    margin = max(4, box.height // 2)
    outer = box.padded(margin, width, height)
    words: list[Word] = []
    for grey in greys:
        crop = grey[outer.top : outer.bottom, outer.left : outer.right]
        inner = grey[box.top : box.bottom, box.left : box.right]
        contrast = _contrast(grey)[box.top : box.bottom, box.left : box.right]
        strokes = np.abs(contrast) > _INK_MIN_CONTRAST
        if strokes.any() and float(contrast[strokes].mean()) > 0:
            crop = 255 - crop
        del inner
        scale = min(4.0, max(1.0, _CROP_HEIGHT / box.height))
        for word in read_words(np.ascontiguousarray(crop), psm=7, scale=scale):
            b = word.box
            moved = Box(b.left + outer.left, b.top + outer.top, b.right + outer.left, b.bottom + outer.top)
            words.append(Word(moved, word.text, word.confidence))
    return words


def _pad(box: Box, policy: TextPolicy) -> int:
    """Margin around a word: the policy's least, more for tall text (anti-aliased edges)."""
    return max(policy.padding, math.ceil(0.25 * box.height))


def _decide(words: Sequence[Word], policy: TextPolicy, width: int, height: int) -> list[Region]:
    covered: list[tuple[Box, bool]] = []
    markers: list[tuple[Box, str]] = []
    for word in words:
        box = word.box.padded(_pad(word.box, policy), width, height)
        confident = word.confidence >= policy.min_confidence
        name = word.text.strip().upper()
        if confident and name in policy.allow_list:
            markers.append((box, name))
        else:
            covered.append((box, confident))
    for box, _name in markers:
        if any(box.overlaps(other) for other, _ in covered):
            covered.append((box, True))
    regions = [
        Region(box, "redact", "text" if confident else "unreadable text")
        for box, confident in _merge(covered)
    ]
    kept: list[tuple[Box, str]] = []
    for box, name in markers:
        if any(box.overlaps(other.box) for other in regions):
            continue
        kept.append((box, name))
    for box, name in _merge_named(kept):
        regions.append(Region(box, "keep", "allow-listed marker", name))
    return sorted(regions, key=lambda r: (r.box.top, r.box.left))


def _union(a: Box, b: Box) -> Box:
    return Box(min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom))


def _merge(boxes: Sequence[tuple[Box, bool]]) -> list[tuple[Box, bool]]:
    """Union overlapping boxes until none overlap; a group is confident if any member is."""
    groups = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[tuple[Box, bool]] = []
        for box, flag in groups:
            for i, (other, other_flag) in enumerate(out):
                if box.overlaps(other):
                    out[i] = (_union(box, other), flag or other_flag)
                    changed = True
                    break
            else:
                out.append((box, flag))
        groups = out
    return groups


def _merge_named(boxes: Sequence[tuple[Box, str]]) -> list[tuple[Box, str]]:
    out: list[tuple[Box, str]] = []
    for box, name in boxes:
        for i, (other, other_name) in enumerate(out):
            if other_name == name and box.overlaps(other):
                out[i] = (_union(box, other), name)
                break
        else:
            out.append((box, name))
    return out
