"""Text that survived in output pixels, read back by OCR.

The second look of the check of finished outputs (`deid.verify`): each image is read by
Tesseract, an engine other than the detector that chose what to cover, as it is and
inverted, enlarged when small, and in its brightest channel when coloured. Words that
spell an original value or an identifying pattern are reported by kind; any other
confident, sharply drawn word that is not kept text is "text that is not kept".
Findings name a box, never what was read. `stored_bit_findings` looks at what no
rendering shows: bits set above Bits Stored in a DICOM output's stored pixel data.
"""

from __future__ import annotations

import io
import string
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from deid import pixels
from deid.boxes import Box, bounding
from deid.errors import DeidError
from deid.ocr import Word, read_words
from deid.phitext import Matcher, patterns
from deid.text import TextPolicy
from deid.text.decide import kept_token

_SMALL_IMAGE = 1000  # long side (px) below which the image is enlarged before OCR
_MIN_EDGE = 40  # grey levels between neighbouring pixels that a pen stroke reaches
_EDGE_NOISE = 4.0  # ... or this many times the image's median step (grain), if more
OUTSIDE = "text that is not kept"
UNUSED_BITS = "bits above BitsStored"


def png_planes(data: bytes) -> list[np.ndarray]:
    """The grey images to read from PNG bytes: luma and, for colour, the brightest channel.

    The brightest channel shows coloured text (yellow on black) that luma dims.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("I", "I;16", "I;16B", "F"):
            values = np.asarray(image, dtype=np.float64)
            low, high = float(values.min()), float(values.max())
            scaled = (values - low) * (255.0 / (high - low or 1.0))
            return [np.rint(scaled).astype(np.uint8)]
        rgb = image.convert("RGB") if image.mode not in ("L", "RGB") else image
        return planes(np.asarray(rgb))


def planes(image: np.ndarray) -> list[np.ndarray]:
    """A grey or RGB uint8 image as the grey images to read: luma and, for colour, the
    brightest channel when it differs."""
    if image.ndim == 2:
        return [image]
    luma = np.asarray(Image.fromarray(image).convert("L"))
    brightest = image.max(axis=2)
    return [luma] if np.array_equal(luma, brightest) else [luma, brightest]


def _ocr_scale(height: int, width: int) -> float:
    long_side = max(height, width)
    if long_side >= _SMALL_IMAGE:
        return 1.0
    return 3.0 if long_side <= 400 else 2.0


def _edges(greys: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Per pixel, the largest grey step to a 4-neighbour over all grey images, and the
    least step a pen stroke makes on this image: more than its grain typically does.
    """
    out = np.zeros(greys[0].shape, dtype=np.int16)
    grain = 0.0
    for grey in greys:
        g = grey.astype(np.int16)
        dx = np.abs(np.diff(g, axis=1))
        dy = np.abs(np.diff(g, axis=0))
        grain = max(grain, float(np.median(np.concatenate([dx.ravel(), dy.ravel()]))))
        for step, view_a, view_b in (
            (dx, np.s_[:, :-1], np.s_[:, 1:]),
            (dy, np.s_[:-1, :], np.s_[1:, :]),
        ):
            np.maximum(out[view_a], step, out=out[view_a])
            np.maximum(out[view_b], step, out=out[view_b])
    return out, max(float(_MIN_EDGE), _EDGE_NOISE * grain)


def _lines(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped into lines of text: side by side, sharing most of their height."""
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: (w.box.left, w.box.top)):
        b = word.box
        for line in lines:
            last = line[-1].box
            shared = min(b.bottom, last.bottom) - max(b.top, last.top)
            gap = b.left - last.right
            if shared >= 0.5 * min(b.height, last.height) and gap <= 1.5 * max(
                b.height, last.height
            ):
                line.append(word)
                break
        else:
            lines.append([word])
    return lines


def _read_line(line: Sequence[Word], matcher: Matcher) -> tuple[list[tuple[str, Box]], set[int]]:
    """(kind, box) of original values and patterns on one line, and the words they cover."""
    text = ""
    starts = []
    for word in line:
        starts.append(len(text))
        text += word.text + " "
    spans = matcher.spans(text)
    for pattern in patterns():
        spans += [(pattern.kind, m.start(), m.end()) for m in pattern.regex.finditer(text)]
    found = []
    used: set[int] = set()
    for kind, start, end in spans:
        hit = [
            i
            for i, word in enumerate(line)
            if starts[i] < end and start < starts[i] + len(word.text)
        ]
        found.append((kind, bounding(line[i].box for i in hit)))
        used.update(hit)
    return found, used


def _is_text(word: Word, edges: np.ndarray, floor: float, policy: TextPolicy) -> bool:
    """Whether a word not otherwise identified counts as text that is not kept.

    Two letters or digits or more, read with the policy's confidence, not kept text (a
    vocabulary word, technical number or allow-list entry, as the text search keeps
    them), and drawn with sharp edges: Tesseract reads blurred anatomy (three fingers
    as "ile") confidently, but burned-in text is drawn with a pen whose strokes jump in
    grey level.
    """
    token = word.text.strip().strip(string.punctuation).upper()
    if sum(ch.isalnum() for ch in token) < 2 or word.confidence < policy.min_confidence:
        return False
    if kept_token(token, policy) or kept_token(word.text.strip(), policy):
        return False
    box = word.box
    inside = edges[box.top : box.bottom, box.left : box.right]
    return inside.size > 0 and float(np.percentile(inside, 95)) >= floor


def _merge(found: Iterable[tuple[str, Box]]) -> list[tuple[str, Box]]:
    """Join overlapping boxes of the same kind (the passes read the same text)."""
    merged: list[tuple[str, Box]] = []
    for kind, box in found:
        for i, (other_kind, other) in enumerate(merged):
            if other_kind == kind and box.overlaps(other):
                merged[i] = (kind, bounding((box, other)))
                break
        else:
            merged.append((kind, box))
    return merged


def pixel_findings(
    greys: list[np.ndarray], matcher: Matcher, policy: TextPolicy
) -> list[tuple[str, str]]:
    """(where, kind) of text in the pixels: original values, patterns, and words outside
    the allow-list, top to bottom. `greys` are the planes `png_planes` or `planes` gives."""
    height, width = greys[0].shape
    scale = _ocr_scale(height, width)
    passes = [greys[0], 255 - greys[0], *greys[1:]]
    with ThreadPoolExecutor(max_workers=len(passes)) as pool:
        reads = list(pool.map(lambda image: read_words(image, scale=scale), passes))
    edges, floor = _edges(greys)
    identified: list[tuple[str, Box]] = []
    other: list[tuple[str, Box]] = []
    for words in reads:
        for line in _lines(words):
            found, used = _read_line(line, matcher)
            identified += found
            other += [
                (OUTSIDE, word.box)
                for i, word in enumerate(line)
                if i not in used and _is_text(word, edges, floor, policy)
            ]
    named = _merge(identified)
    unnamed = [
        (kind, box)
        for kind, box in _merge(other)
        if not any(box.overlaps(known) for _, known in named)
    ]
    found = sorted(named + unnamed, key=lambda item: (item[1].top, item[1].left, item[0]))
    return [(f"pixels x {b.left}-{b.right} y {b.top}-{b.bottom}", k) for k, b in found]


def stored_bit_findings(ds: Dataset, name: str) -> list[tuple[str, str]]:
    """(where, kind) of bits set above Bits Stored in the stored pixel data, if any.

    Read from the stored cells, never from values a decoder has masked: every viewer
    masks them, so what is there shows nowhere but in the bits themselves (a legacy
    overlay in bit 12 of a 12-bit image is a burned-in name). Pixel data that cannot be
    read is left to the pixel text check, which reports it.
    """
    try:
        dirty = pixels.unused_bit_frames(ds, name)
    except DeidError:
        return []
    if not dirty:
        return []
    count = pixels.frame_count(ds)
    if count == 1:
        return [("pixel data", UNUSED_BITS)]
    first = dirty[0] + 1
    return [(f"pixel data, {len(dirty)} of {count} frames from frame {first}", UNUSED_BITS)]


def face_findings(data: bytes) -> list[str]:
    """Where a face shows in an encoded image (`pixels x a-b y c-d`), by the same
    detector `share` covers faces with: a face it still finds was not covered."""
    from deid.faces import find_faces

    with Image.open(io.BytesIO(data)) as opened:
        image = np.asarray(opened.convert("RGB"))
    return [
        f"pixels x {f.box.left}-{f.box.right} y {f.box.top}-{f.box.bottom}"
        for f in find_faces(image)
    ]
