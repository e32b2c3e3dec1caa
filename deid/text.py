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
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter

from deid.boxes import Box
from deid.errors import ProfileError
from deid.ocr import Word, read_pages, read_words

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


# Tuning of the search. These follow from how Tesseract reads and how overlays are
# drawn, not from a site's policy, so they live here rather than in a profile.
_SMALL_IMAGE = 1000  # long side (px) below which the image is enlarged before OCR
_BLUR = 5  # radius (px) of the neighbourhood that stroke contrast is measured against
_INK_BLUR = 12  # ... for the ink images OCR reads, wide enough to keep bold strokes solid
_INK_PASS = (24, 4.0)  # ink drawn into those images
_STROKE_REACH = 4  # a shape a 9x9 square fits in is a blob, not a pen stroke
_HALO_REACH = _INK_BLUR  # px around a stroke where the opposite sign is its shadow
_FAINT = (8, 4.0)  # ink that vets words: grey levels and noise sigmas, whichever is more
_STRONG = (40, 5.0)  # ink that finds lone glyphs: bold strokes only
_TEXTLIKE = 0.08  # least fraction of a word's box in ink for the word to be text
_MIN_TEXT_HEIGHT = 5  # px; shorter "words" cannot be read by anyone
_MAX_LETTER_WIDTH = 1.3  # letter width over line height that a real letter stays under
_CELL = 4  # grid (px) on which strokes are grouped into glyphs
_MAX_GLYPHS = 64  # lone-glyph candidates read per image, the inkiest first
_GLYPH_HEIGHTS = (28, 32, 36, 40, 44)  # px a candidate is scaled to, one read each
_GLYPH_VOTES = 3  # reads that must say the same for a candidate to count


def find_regions(image: np.ndarray, policy: TextPolicy) -> list[Region]:
    """Find burned-in text in a rendered uint8 grey or RGB image and decide each word.

    Tesseract in sparse-text mode (psm 11) reads, side by side: the image, its
    inverse, a channel-max grey of a colour image (so coloured text shows), and two
    stroke images, where whatever is much brighter or darker than its neighbourhood
    is drawn black on white (so text over bright anatomy is not lost to Tesseract's
    global threshold). Images with a long side under 1000 px are enlarged 2-3x first.
    A reported word counts as text when it has a letter or digit, is shaped like
    letters and part of its box is ink; that drops what Tesseract imagines in
    anatomy and grain. Bold strokes no word explains are then cut out and read as
    single lines, at five sizes that must agree, which finds the lone letters ("L", "R")
    sparse mode skips. Each word is covered by a padded box, grown over the glyphs
    that continue its line, except an exact, confident allow-list match that touches
    no cover. Overlapping covers are merged.

    Raises `OcrUnavailableError` when Tesseract cannot run, and TypeError for anything
    but a uint8 (H, W) or (H, W, 3) image.
    """
    height, width = image.shape[:2]
    greys = _greys(image)
    if min(height, width) < 2 * _MIN_TEXT_HEIGHT:
        return []
    contrasts = [_contrast(grey, _BLUR) for grey in greys]
    strokes = _strokes(greys)
    passes = [greys[0], 255 - greys[0], *greys[1:]]
    passes += [np.where(mask, 0, 255).astype(np.uint8) for mask in strokes if mask.any()]
    words = _read_passes(passes, _ocr_scale(height, width))
    inked = _ink(contrasts, *_FAINT) | strokes[0] | strokes[1]
    words = [word for word in words if _is_text(word, inked)]
    words += _read_glyphs(greys, contrasts, words, policy)
    return _decide(words, _glyphs(strokes[0] | strokes[1]), policy, width, height)


def _greys(image: np.ndarray) -> list[np.ndarray]:
    """The grey images to search: luma, and for colour also the brightest channel."""
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
    """Enlargement before OCR: Tesseract reads best with letters 20-30 px high."""
    long_side = max(height, width)
    if long_side >= _SMALL_IMAGE:
        return 1.0
    return 3.0 if long_side <= 400 else 2.0


def _read_passes(images: Sequence[np.ndarray], scale: float) -> list[Word]:
    """Sparse-text OCR of each image, the Tesseract processes running side by side."""
    workers = max(1, min(len(images), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda im: read_words(im, scale=scale), images)
        return [word for result in results for word in result]


def _contrast(grey: np.ndarray, radius: int) -> np.ndarray:
    """Each pixel minus its blurred neighbourhood: large, either sign, on strokes."""
    background = Image.fromarray(grey).filter(ImageFilter.GaussianBlur(radius))
    return grey.astype(np.int16) - np.asarray(background, dtype=np.int16)


def _strokes(greys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Text-like strokes: thin lines much brighter (first) or darker (second) than around.

    Tesseract binarizes with one global threshold, so white text over a bright body
    part vanishes with the body. Measured against its own neighbourhood it stays a
    clean stroke and the grain of the scan drops out: drawn black on white, these
    masks are the images OCR reads best. A slightly smoothed contrast finds strokes
    in grain; of those, only pixels at least half as far out as the strongest nearby
    are kept (small bright letters stay thin), the rim a stroke of the other sign
    leaves around itself is dropped, and so is anything too thick to be a pen stroke
    (the blobs of a smooth scan).
    """
    bright = np.zeros(greys[0].shape, dtype=bool)
    dark = np.zeros(greys[0].shape, dtype=bool)
    for grey in greys:
        pil = Image.fromarray(grey)
        background = np.asarray(pil.filter(ImageFilter.GaussianBlur(_INK_BLUR)), dtype=np.int16)
        raw = grey.astype(np.int16) - background
        smooth = np.asarray(pil.filter(ImageFilter.GaussianBlur(1)), dtype=np.int16) - background
        limit = _threshold(smooth, *_INK_PASS)
        up, down = _max_filter(raw, _HALO_REACH), _max_filter(-raw, _HALO_REACH)
        for sign, mask, near, far in ((1, bright, up, down), (-1, dark, down, up)):
            signed = raw * np.int16(sign)
            found = (smooth * np.int16(sign) > limit) & (near >= far)
            found &= 2 * signed > _max_filter(signed, 2)
            mask |= found & ~_opened(found, _STROKE_REACH)
    return bright, dark


def _max_filter(values: np.ndarray, reach: int) -> np.ndarray:
    """The largest value within `reach` pixels (a square window), edges clamped."""
    out = values.copy()
    for axis in (0, 1):
        source = out.copy()
        for k in range(1, reach + 1):
            if k >= source.shape[axis]:
                break
            ahead = [slice(None), slice(None)]
            behind = [slice(None), slice(None)]
            ahead[axis], behind[axis] = slice(k, None), slice(None, -k)
            np.maximum(out[tuple(ahead)], source[tuple(behind)], out=out[tuple(ahead)])
            np.maximum(out[tuple(behind)], source[tuple(ahead)], out=out[tuple(behind)])
    return out


def _opened(mask: np.ndarray, reach: int) -> np.ndarray:
    """The parts of `mask` a square of side 2 * reach + 1 fits inside."""
    eroded = ~_max_filter(~mask, reach)
    return np.asarray(_max_filter(eroded, reach), dtype=bool)


def _threshold(contrast: np.ndarray, least: int, sigmas: float) -> float:
    """A contrast noise rarely reaches: grainy images need more than clean ones."""
    sigma = 1.4826 * float(np.median(np.abs(contrast)))
    return max(float(least), sigmas * sigma)


def _ink(contrasts: Sequence[np.ndarray], least: int, sigmas: float) -> np.ndarray:
    """Pixels that stand out sharply from their neighbourhood in any grey, either way."""
    ink = np.zeros(contrasts[0].shape, dtype=bool)
    for contrast in contrasts:
        ink |= np.abs(contrast) > _threshold(contrast, least, sigmas)
    return ink


def _alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _is_text(word: Word, ink: np.ndarray) -> bool:
    """Whether a word Tesseract reported is text rather than texture read as letters.

    Rules, arrows and ticks read as punctuation carry no identity; a box taller than a
    quarter of the image is a shadow, not a line of text; far wider per letter than
    tall is an edge or a blob Tesseract forced into a character; text has strokes.
    """
    box = word.box
    if not _alnum(word.text) or box.height < _MIN_TEXT_HEIGHT:
        return False
    if box.height > max(48, ink.shape[0] // 4):
        return False
    if box.width > _MAX_LETTER_WIDTH * box.height * len(word.text):
        return False
    inked = float(ink[box.top : box.bottom, box.left : box.right].mean()) if box.area else 0.0
    return inked >= _TEXTLIKE


def _read_glyphs(
    greys: Sequence[np.ndarray],
    contrasts: Sequence[np.ndarray],
    words: Sequence[Word],
    policy: TextPolicy,
) -> list[Word]:
    """Read bold stroke groups that no word covers, each as its own line of text.

    Tesseract's reading of a lone letter swings with its size, so each crop is read at
    five sizes and counts only when three reads give the same text, with a letter or
    digit, at a mean confidence of at least `policy.min_confidence`. Crops of anatomy
    do get read as letters, but rarely as the same ones again and again; a group the
    reads do not agree on is left alone, since it is far more often anatomy than text.
    """
    height, width = greys[0].shape
    taken = np.zeros((height, width), dtype=bool)
    for word in words:
        box = word.box.padded(_pad(word.box, policy), width, height)
        taken[box.top : box.bottom, box.left : box.right] = True
    candidates: list[tuple[int, Box, np.ndarray]] = []
    for grey, contrast in zip(greys, contrasts, strict=True):
        strong = (np.abs(contrast) > _threshold(contrast, *_STRONG)) & ~taken
        for box in _lines(_glyphs(strong)):
            if any(box.overlaps(other) for _, other, _ in candidates):
                continue
            inked = int(strong[box.top : box.bottom, box.left : box.right].sum())
            candidates.append((inked, box, _crop(grey, contrast, box)))
    candidates.sort(key=lambda c: -c[0])
    candidates = candidates[:_MAX_GLYPHS]
    crops = [crop for _, _, crop in candidates for _ in _GLYPH_HEIGHTS]
    scales = [
        min(6.0, max(1.0, target / box.height))
        for _, box, _ in candidates
        for target in _GLYPH_HEIGHTS
    ]
    pages = read_pages(crops, psm=7, scales=scales)
    step = len(_GLYPH_HEIGHTS)
    found: list[Word] = []
    for i, (_, box, _) in enumerate(candidates):
        origin = _margin(box, width, height)
        found.extend(_agreed(pages[i * step : (i + 1) * step], origin, policy))
    return found


def _agreed(reads: Sequence[list[Word]], origin: Box, policy: TextPolicy) -> list[Word]:
    """What most reads of one crop say alike, confidently, as a word in image coordinates."""
    lines: list[tuple[str, float, Box]] = []
    for read in reads:
        if read:
            said = " ".join(word.text.strip().upper() for word in read)
            confidence = sum(word.confidence for word in read) / len(read)
            box = read[0].box
            for word in read[1:]:
                box = _union(box, word.box)
            lines.append((said, confidence, box))
    votes = Counter(said for said, _, _ in lines)
    if not votes:
        return []
    said, count = votes.most_common(1)[0]
    agreeing = [(confidence, box) for text, confidence, box in lines if text == said]
    confidence = sum(c for c, _ in agreeing) / count
    if count < _GLYPH_VOTES or confidence < policy.min_confidence or not _alnum(said):
        return []
    b = agreeing[0][1]
    box = Box(
        b.left + origin.left, b.top + origin.top, b.right + origin.left, b.bottom + origin.top
    )
    return [Word(box, said, confidence)]


def _margin(box: Box, width: int, height: int) -> Box:
    return box.padded(max(4, box.height // 2), width, height)


def _crop(grey: np.ndarray, contrast: np.ndarray, box: Box) -> np.ndarray:
    """The candidate with a margin, turned dark-on-light as Tesseract prefers."""
    height, width = grey.shape
    outer = _margin(box, width, height)
    crop = grey[outer.top : outer.bottom, outer.left : outer.right]
    inner = contrast[box.top : box.bottom, box.left : box.right]
    strokes = inner[np.abs(inner) > _STRONG[0]]
    if int(strokes.astype(np.int64).sum()) > 0:
        crop = 255 - crop
    return np.ascontiguousarray(crop)


def _glyphs(mask: np.ndarray) -> list[Box]:
    """Boxes of connected groups of set pixels (on a coarse grid), sized like letters."""
    height, width = mask.shape
    rows, cols = -(-height // _CELL), -(-width // _CELL)
    grid = np.zeros((rows * _CELL, cols * _CELL), dtype=bool)
    grid[:height, :width] = mask
    cells: list[list[bool]] = np.asarray(
        grid.reshape(rows, _CELL, cols, _CELL).any(axis=(1, 3))
    ).tolist()
    seen = [[False] * cols for _ in range(rows)]
    boxes: list[Box] = []
    for r0 in range(rows):
        for c0 in range(cols):
            if not cells[r0][c0] or seen[r0][c0]:
                continue
            seen[r0][c0] = True
            queue = deque([(r0, c0)])
            top, bottom, left, right = r0, r0, c0, c0
            while queue:
                r, c = queue.popleft()
                top, bottom = min(top, r), max(bottom, r)
                left, right = min(left, c), max(right, c)
                for rr in range(max(0, r - 1), min(rows, r + 2)):
                    for cc in range(max(0, c - 1), min(cols, c + 2)):
                        if cells[rr][cc] and not seen[rr][cc]:
                            seen[rr][cc] = True
                            queue.append((rr, cc))
            box = _ink_box(mask, top, bottom, left, right)
            if _glyph_sized(box, mask, height):
                boxes.append(box)
    return boxes


def _ink_box(mask: np.ndarray, top: int, bottom: int, left: int, right: int) -> Box:
    """The tight pixel box of the set pixels within a block of grid cells."""
    y0, x0 = top * _CELL, left * _CELL
    ys, xs = np.nonzero(mask[y0 : (bottom + 1) * _CELL, x0 : (right + 1) * _CELL])
    return Box(
        x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1
    )


def _glyph_sized(box: Box, mask: np.ndarray, image_height: int) -> bool:
    """Tall enough to be read, short enough to be a letter rather than anatomy."""
    if not _MIN_TEXT_HEIGHT <= box.height <= max(24, image_height // 8):
        return False
    return int(mask[box.top : box.bottom, box.left : box.right].sum()) >= 12


def _lines(glyphs: Sequence[Box]) -> list[Box]:
    """Join glyphs side by side on one baseline into words, as a reader would group them."""
    boxes = sorted(glyphs, key=lambda b: b.left)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in boxes:
            for i, other in enumerate(out):
                if _same_line(box, other):
                    out[i] = _union(box, other)
                    changed = True
                    break
            else:
                out.append(box)
        boxes = out
    return boxes


def _same_line(a: Box, b: Box) -> bool:
    shared = min(a.bottom, b.bottom) - max(a.top, b.top)
    if shared < 0.5 * min(a.height, b.height):
        return False
    gap = max(a.left, b.left) - min(a.right, b.right)
    return gap <= 0.5 * max(a.height, b.height)


def _grown(word: Box, glyphs: Sequence[Box]) -> Box:
    """The word's box extended over glyphs of its size that continue its line."""
    box = word
    changed = True
    while changed:
        changed = False
        for glyph in glyphs:
            if glyph.height > 1.5 * word.height or _union(box, glyph) == box:
                continue
            shared = min(glyph.bottom, word.bottom) - max(glyph.top, word.top)
            gap = max(box.left, glyph.left) - min(box.right, glyph.right)
            if shared >= 0.5 * min(glyph.height, word.height) and gap <= 0.5 * word.height:
                box = _union(box, glyph)
                changed = True
    return box


def _pad(box: Box, policy: TextPolicy) -> int:
    """Margin around a word: the policy's least, more for tall text (anti-aliased edges)."""
    return max(policy.padding, math.ceil(0.25 * box.height))


def _decide(
    words: Sequence[Word], glyphs: Sequence[Box], policy: TextPolicy, width: int, height: int
) -> list[Region]:
    """Cover every word but the confident, exact allow-list matches clear of covers.

    A covered word first takes in the glyphs that continue it on its line, so the
    characters Tesseract dropped from the end of an MRN are covered with the rest.
    """
    covered: list[tuple[Box, bool]] = []
    sightings: list[tuple[Box, str]] = []
    for word in words:
        confident = word.confidence >= policy.min_confidence
        name = word.text.strip().upper()
        if confident and name in policy.allow_list:
            sightings.append((word.box.padded(_pad(word.box, policy), width, height), name))
        else:
            box = _grown(word.box, glyphs)
            covered.append((box.padded(_pad(word.box, policy), width, height), confident))
    markers = _merge_named(sightings)
    kept: list[tuple[Box, str]] = []
    for box, name in markers:
        if any(box.overlaps(other) and other_name != name for other, other_name in markers):
            covered.append((box, True))  # two passes disagree on what it says
        else:
            kept.append((box, name))
    while True:
        covers = _merge(covered)
        hit = [m for m in kept if any(m[0].overlaps(cover) for cover, _ in covers)]
        if not hit:
            break
        covered.extend((box, True) for box, _ in hit)
        kept = [m for m in kept if m not in hit]
    regions = [
        Region(box, "redact", "text" if confident else "unreadable text")
        for box, confident in covers
    ]
    regions += [Region(box, "keep", "allow-listed marker", name) for box, name in kept]
    return sorted(regions, key=lambda r: (r.box.top, r.box.left))


def _union(a: Box, b: Box) -> Box:
    return Box(
        min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom)
    )


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
    """Join overlapping sightings of the same marker (one per OCR pass) into one box."""
    out: list[tuple[Box, str]] = []
    for box, name in boxes:
        for i, (other, other_name) in enumerate(out):
            if other_name == name and box.overlaps(other):
                out[i] = (_union(box, other), name)
                break
        else:
            out.append((box, name))
    return out
