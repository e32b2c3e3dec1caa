"""Deciding which burned-in text to black out.

Patient names, MRNs and dates stamped into the pixels survive every tag rule, so each
rendered image is searched for text and every line found is decided by the profile's
text policy:

- `all-text` (the default): every line is covered except exact, confident matches of
  the allow-list (laterality and view markers a reader needs); a line that looks like
  text but cannot be read is covered too (fail closed);
- `phi-only`: only lines whose text matches the original header's identifying values
  (fuzzily, to survive OCR errors) or a PHI pattern (dates, times, phone numbers, ...)
  are covered; unreadable text is still covered.

Two engines find the lines. `candidates` (the default) looks for text without OCR
(`deid.detect`) and reads only the candidate lines, each cropped, cleaned to dark text
on white and enlarged, all in one or two Tesseract processes. `whole-image` is the
first version kept as a fallback: sparse-text Tesseract passes over the whole image.

`Region` never carries what was read, so regions can be logged and shown; only a kept
marker names itself, and a PHI match names the kind of value, never the value.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image, ImageFilter

from deid import detect
from deid.boxes import Box, bounding
from deid.errors import ProfileError
from deid.ocr import Word, read_pages, read_words, warm

Decision = Literal["redact", "keep"]
Mode = Literal["all-text", "phi-only"]
Engine = Literal["candidates", "whole-image"]
_T = TypeVar("_T")
# "allow-listed marker", "text", "unreadable text", "PHI match: <kind>",
# "pattern: <name>" or "fixed region".
Reason = str

_MODES: tuple[Mode, ...] = ("all-text", "phi-only")
_ENGINES: tuple[Engine, ...] = ("candidates", "whole-image")


@dataclass(frozen=True)
class TextPolicy:
    """What to do with text found in the pixels; built from a profile's `[text]` table.

    `allow_list` holds the markers left in place, compared upper-case after stripping
    whitespace. `padding` is the least margin in pixels around a covered line.
    `min_confidence` (0-100) is the Tesseract score below which a word counts as
    unreadable: it is covered even if it looks like a marker. `mode` is the policy
    ("all-text" or "phi-only") and `engine` how text is found ("candidates" or
    "whole-image").
    """

    allow_list: frozenset[str]
    padding: int = 4
    min_confidence: float = 60.0
    mode: Mode = "all-text"
    engine: Engine = "candidates"

    def __post_init__(self) -> None:
        normal = frozenset(entry.strip().upper() for entry in self.allow_list)
        object.__setattr__(self, "allow_list", normal - {""})
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, not {self.padding}")
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be within 0..100, not {self.min_confidence}")
        if self.mode not in _MODES:
            raise ValueError(f"unknown text policy {self.mode!r}")
        if self.engine not in _ENGINES:
            raise ValueError(f"unknown text engine {self.engine!r}")

    @classmethod
    def from_profile(cls, section: Mapping[str, Any]) -> TextPolicy:
        """Read `allow_list`, `padding`, `min_confidence`, `policy` and `engine`.

        Missing keys take the defaults (an empty allow-list covers every word). Other
        keys of the table belong to other readers and are ignored. Raises
        `ProfileError` for a value of the wrong type, an unknown policy or engine.
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
        if mode not in _MODES:
            raise ProfileError(f"text.policy {mode!r} is not known; use 'all-text' or 'phi-only'")
        engine = section.get("engine", "candidates")
        if engine not in _ENGINES:
            raise ProfileError(
                f"text.engine {engine!r} is not known; use 'candidates' or 'whole-image'"
            )
        return cls(frozenset(allow), padding, float(confidence), mode, engine)


@dataclass(frozen=True)
class Region:
    """A rectangle of the image and what happens to it.

    `reason` is "allow-listed marker" (kept), "text" (read confidently, covered),
    "unreadable text" (looked like text, read poorly, covered), "PHI match: <kind>"
    (its text matched an identifying header value of that kind, e.g. "patient name"),
    "pattern: <name>" (its text matched a PHI pattern such as "date") or "fixed region"
    (a profile's fixed box). `marker` names a kept allow-listed marker such as "L"; it is
    None for every covered region, so a Region never carries identifying text.
    """

    box: Box
    decision: Decision
    reason: Reason
    marker: str | None = field(default=None)


def redaction_boxes(regions: Iterable[Region]) -> list[Box]:
    """The boxes to black out: every region whose decision is "redact"."""
    return [region.box for region in regions if region.decision == "redact"]


def find_regions(
    image: np.ndarray, policy: TextPolicy, *, phi: Mapping[str, str] | None = None
) -> list[Region]:
    """Find burned-in text in a rendered uint8 grey or RGB image and decide each line.

    `phi` maps the original header's identifying values to their kind (as
    `verify.phi_values` gives them); the `phi-only` policy covers only text matching
    one of them or a PHI pattern, and without `phi` only the patterns. Covers are padded
    (the policy's padding, more for tall text), merged where they overlap, and a kept
    marker never touches a cover. Pure: the same image gives the same regions.

    Raises `OcrUnavailableError` when Tesseract cannot run, and TypeError for anything
    but a uint8 (H, W) or (H, W, 3) image.
    """
    grey_planes = detect.planes(image)  # type check before anything else
    height, width = image.shape[:2]
    if min(height, width) < 2 * _MIN_TEXT_HEIGHT:
        return []
    matcher = _Matcher.build(phi or {}) if policy.mode == "phi-only" else None
    if policy.engine == "whole-image":
        return _whole_image(grey_planes[:2], policy, matcher)
    warm(7)  # lines are read with psm 7: its model loads while candidates are found
    return _from_candidates(grey_planes, policy, matcher)


def second_look(
    image: np.ndarray,
    regions: Sequence[Region],
    policy: TextPolicy,
    *,
    phi: Mapping[str, str] | None = None,
) -> list[Region]:
    """Read the surroundings of every cover again, on the image after redaction.

    Each covered region's neighbourhood (twice its height above and below, at least
    16 px, four times that aside, widened while text runs off its sides) is searched
    once more with `find_regions`; text still readable there (PHI, or any
    non-allow-listed text under `all-text`) that no cover already holds comes back as
    a region grown over the cover it touches. An empty list means the covers hold; a
    caller repeats with the extra regions added, or fails the file.
    """
    height, width = image.shape[:2]
    covers = redaction_boxes(regions)
    if not covers:
        return []
    areas = _merge_boxes([_around(box, width, height) for box in covers])
    near = [(cover, cover.padded(2, width, height)) for cover in covers]
    # Areas are read side by side: most of a look is waiting for Tesseract to start.
    with ThreadPoolExecutor(max_workers=min(2, len(areas), os.cpu_count() or 1)) as pool:
        looks = list(pool.map(lambda area: _look(image, area, policy, phi), areas))
    extra: list[Region] = []
    for found in looks:
        for region in found:
            if any(cover.contains(region.box) for cover in covers):
                continue
            touched = [cover for cover, grown in near if grown.overlaps(region.box)]
            box = bounding([region.box, *touched])
            extra.append(Region(box, "redact", region.reason))
    return _merge_regions(extra)


def _around(box: Box, width: int, height: int) -> Box:
    """The neighbourhood a second look reads: two heights above and below, eight aside."""
    reach = max(16, 2 * box.height)
    return Box(
        max(0, box.left - 4 * reach),
        max(0, box.top - reach),
        min(width, box.right + 4 * reach),
        min(height, box.bottom + reach),
    )


def _look(
    image: np.ndarray, area: Box, policy: TextPolicy, phi: Mapping[str, str] | None
) -> list[Region]:
    """Readable covers found in one area, widened while text runs off its sides."""
    width = image.shape[1]
    for _ in range(4):
        crop = np.ascontiguousarray(image[area.top : area.bottom, area.left : area.right])
        found = [
            Region(r.box.shifted(area), r.decision, r.reason)
            for r in find_regions(crop, policy, phi=phi)
            if r.decision == "redact" and r.reason != "unreadable text"
        ]
        left = any(r.box.left <= area.left + 1 for r in found) and area.left > 0
        right = any(r.box.right >= area.right - 1 for r in found) and area.right < width
        if not (left or right):
            return found
        step = max(32, area.height)
        area = Box(
            max(0, area.left - step) if left else area.left,
            area.top,
            min(width, area.right + step) if right else area.right,
            area.bottom,
        )
    return found


# Tuning of the candidates engine. These follow from how Tesseract reads and how
# overlays are drawn, not from a site's policy, so they live here.
_OCR_SCORE = 0.35  # candidates scoring less are not worth reading
_LINE_SCORE = 0.45  # ... nor lines of letters scoring less
_MANY_GLYPHS = 6  # ... unless they hold this many glyphs (text crossed by a rule or rib)
_MARKER_HEIGHT = 10  # px: a lone glyph lower than this is not read (no marker is)
_FRAGMENT_HEIGHT = 8  # px: bright pieces this tall beside a saturated band are read
_FRAGMENT_SCORE = 0.3  # ... from this score: a band cuts letters into weaker pieces
_WEAK_SCORE = 0.7  # a line read as low-confidence letters: covered from this score up
_BLIND_SCORE = 0.8  # a line read as nothing at all: covered from this score up
_MAX_READS = 160  # candidate lines read per image, the likeliest first
_READ_HEIGHT = 34  # px: the glyph height crops are enlarged to
_MAX_SCALE = 5.0


@dataclass(frozen=True)
class _Reading:
    """One candidate line and the words read in it, in image coordinates.

    A line not read at all (over the reading budget) has no words. `agreed` is False
    when the reads of a lone glyph confidently disagree.
    """

    candidate: detect.Candidate
    words: tuple[Word, ...]
    agreed: bool = True


def _from_candidates(
    grey_planes: Sequence[np.ndarray], policy: TextPolicy, matcher: _Matcher | None
) -> list[Region]:
    """The candidates engine: detect lines, read each crop, decide each line."""
    height, width = grey_planes[0].shape
    bands = [detect.saturated_bands(plane) for plane in grey_planes]
    found = detect.candidates_in(grey_planes, bands=bands)
    cut = {
        c
        for c in found
        if c.polarity == "bright"
        and c.height >= _FRAGMENT_HEIGHT
        and c.score >= _FRAGMENT_SCORE
        and detect.touches(bands[c.plane], c.box)
    }
    candidates = [
        c
        for c in found
        if (c.wide and (c.score >= _LINE_SCORE or c.glyphs >= _MANY_GLYPHS))
        or (not c.wide and c.height >= _MARKER_HEIGHT and c.score >= _OCR_SCORE)
        or c in cut
    ]
    to_read = candidates[:_MAX_READS]
    readings = _read_candidates(grey_planes, to_read, policy)
    readings += [_Reading(c, ()) for c in candidates[_MAX_READS:]]
    return _decide_lines(readings, policy, matcher, width, height, bands, cut)


def _read_candidates(
    grey_planes: Sequence[np.ndarray],
    candidates: Sequence[detect.Candidate],
    policy: TextPolicy,
) -> list[_Reading]:
    """OCR every candidate crop, in at most two Tesseract processes side by side.

    Lines are read once, as one line (psm 7), taller blocks as a block (psm 6). A lone
    glyph (a candidate narrower than a line of letters) is read three times as a single
    character (psm 10): its cleaned crop at two sizes and its plain crop, since
    Tesseract's reading of one letter swings with size and preparation.
    """
    # candidate index, psm, crop, scale, origin
    pages: list[tuple[int, int, np.ndarray, float, Box]] = []
    for index, cand in enumerate(candidates):
        crop, origin = detect.ocr_crop(grey_planes, cand)
        scale = _read_scale(cand)
        if cand.wide:
            psm = 6 if cand.box.height > 1.8 * cand.height else 7
            pages.append((index, psm, crop, scale, origin))
            continue
        plain, _ = detect.plain_crop(grey_planes, cand)
        other = _read_scale(cand, 1.5)
        for view, factor in ((crop, scale), (crop, other), (plain, scale)):
            pages.append((index, 10, view, factor, origin))
    groups: dict[int, list[int]] = {}
    for page, (_, psm, _, _, _) in enumerate(pages):
        groups.setdefault(psm, []).append(page)
    batches = sorted(groups.items())
    if len(batches) == 1 and len(batches[0][1]) > 8:
        psm, members = batches[0]
        half = len(members) // 2
        batches = [(psm, members[:half]), (psm, members[half:])]

    def run(batch: tuple[int, list[int]]) -> list[list[Word]]:
        psm, members = batch
        return read_pages(
            [pages[i][2] for i in members], psm=psm, scales=[pages[i][3] for i in members]
        )

    # A candidate's pages share one psm and are read in order, so its views keep theirs.
    views: list[list[list[Word]]] = [[] for _ in candidates]
    workers = max(1, min(len(batches), 2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (_, members), results in zip(batches, pool.map(run, batches), strict=True):
            for page, words in zip(members, results, strict=True):
                index, _, _, _, origin = pages[page]
                views[index].append(_placed(words, origin))
    out = [
        _Reading(cand, tuple(seen[0])) if cand.wide else _vote(cand, seen, policy)
        for cand, seen in zip(candidates, views, strict=True)
    ]
    return _second_view(grey_planes, out, policy)


def _placed(words: Iterable[Word], origin: Box) -> list[Word]:
    """Words read on a crop, those with a letter or digit, moved to image coordinates."""
    return [Word(w.box.shifted(origin), w.text, w.confidence) for w in words if _alnum(w.text)]


def _read_scale(cand: detect.Candidate, factor: float = 1.0) -> float:
    """Enlargement that brings a candidate's glyphs to `factor` times the read height."""
    return min(_MAX_SCALE, max(1.0, factor * _READ_HEIGHT / max(1, cand.height)))


def _second_view(
    grey_planes: Sequence[np.ndarray], readings: list[_Reading], policy: TextPolicy
) -> list[_Reading]:
    """Read again, from two other views, lines that read as a near miss of a marker.

    A thin letter lost in cleaning turns "SUPINE" into "SUP NE", and a line half over
    black, half over tissue comes out half pale, which would cover a marker the reader
    needs. Lines whose reading is within two edits of an allow-listed marker, but not
    one, are read once more from the levelled crop and from the plain crop; a
    confident, exact marker in either replaces the first reading. Anything else keeps
    the first reading (covered).
    """
    if not policy.allow_list:
        return readings
    redo = [
        i
        for i, r in enumerate(readings)
        if r.candidate.wide and r.words and _near_marker(r.words, policy)
    ]
    if not redo:
        return readings
    views = [
        view(grey_planes, readings[i].candidate)
        for i in redo
        for view in (detect.levelled_crop, detect.plain_crop)
    ]
    scales = [_read_scale(readings[i].candidate) for i in redo for _ in range(2)]
    pages = read_pages([crop for crop, _ in views], psm=7, scales=scales)
    out = list(readings)
    owners = [i for i in redo for _ in range(2)]
    for page, (_, origin), i in zip(pages, views, owners, strict=True):
        words = _placed(page, origin)
        if (
            out[i] is readings[i]
            and words
            and all(
                w.confidence >= policy.min_confidence and _bare(w.text) in policy.allow_list
                for w in words
            )
        ):
            out[i] = _Reading(readings[i].candidate, tuple(words))
    return out


def _near_marker(words: Sequence[Word], policy: TextPolicy) -> bool:
    """Whether a reading is not a marker but within two edits of one (of 2+ letters)."""
    names = [_bare(w.text) for w in words]
    if all(name in policy.allow_list for name in names):
        return False
    said = "".join(names)
    return any(len(entry) >= 2 and _distance(said, entry) <= 2 for entry in policy.allow_list)


def _distance(a: str, b: str) -> int:
    """Levenshtein distance between two short strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _vote(cand: detect.Candidate, views: Sequence[list[Word]], policy: TextPolicy) -> _Reading:
    """One reading of a lone glyph from its three reads.

    Two confident reads saying the same, and no confident read saying otherwise, make
    an agreed reading; confident reads that differ make a disagreeing one (covered as
    text); no confident read leaves only what the reads said, low confidence and all.
    """
    said: list[tuple[str, list[Word]]] = []
    for words in views:
        if words and all(w.confidence >= policy.min_confidence for w in words):
            said.append((" ".join(_bare(w.text) for w in words), words))
    if not said:
        weak = [w for words in views for w in words]
        return _Reading(cand, tuple(weak[:1]))
    votes = Counter(text for text, _ in said)
    best, count = votes.most_common(1)[0]
    if count >= 2 and len(votes) == 1:
        return _Reading(cand, tuple(next(words for text, words in said if text == best)))
    return _Reading(cand, tuple(said[0][1]), agreed=False)


def _bare(text: str) -> str:
    """A read word upper-cased, without the quotes and stops OCR adds at its ends."""
    return text.strip().strip("'\"`‘’“”.,:;").upper()


def _decide_lines(
    readings: Sequence[_Reading],
    policy: TextPolicy,
    matcher: _Matcher | None,
    width: int,
    height: int,
    bands: Sequence[detect.Bands],
    cut: Set[detect.Candidate],
) -> list[Region]:
    """Cover or keep each read line by the policy; keep markers clear of covers.

    A line read with no confident word, lying mostly (80%) inside a line that was read
    confidently, defers to that reading: it is the same text seen worse. A covered line
    that runs into a saturated band (`bands`, per plane) is covered on through it, and
    a piece of text cut up by a band (in `cut`) that reads as no confident text is
    covered whatever its score (fail closed: what is left of it cannot be read).
    """
    covers: list[tuple[Box, Reason]] = []
    markers: list[tuple[Box, str]] = []
    sure_boxes = [
        r.candidate.box
        for r in readings
        if any(w.confidence >= policy.min_confidence for w in r.words)
    ]
    for reading in readings:
        cand = reading.candidate
        pad = _pad(cand.height, policy)
        box = bounding([cand.box, *(word.box for word in reading.words)])
        if cand.wide or cand in cut:
            box = _through_band(box, cand.height, bands[cand.plane])
        cover = box.padded(pad, width, height)
        words = reading.words
        confident = [w for w in words if w.confidence >= policy.min_confidence]
        sure = bool(words) and len(confident) == len(words) and reading.agreed
        names = [_bare(w.text) for w in words]
        if sure and all(name in policy.allow_list for name in names):
            spread = bounding([w.box for w in words]).padded(
                max(2, cand.height // 2), width, height
            )
            if spread.contains(cand.box):
                markers.extend(
                    (w.box.padded(pad, width, height), n) for w, n in zip(words, names, strict=True)
                )
                continue
        if not confident and any(
            cand.box.shared_area(other) >= 0.8 * cand.box.area
            for other in sure_boxes
            if other != cand.box
        ):
            continue
        if not cand.wide and not reading.agreed:
            continue  # a lone blob read as different letters each time: texture
        if words and matcher is not None and reading.agreed:
            found = matcher.match([w.text for w in words])
            if found is not None:
                covers.append((cover, found))
                continue
            if sure:
                continue  # read confidently, and not PHI: phi-only keeps it
        if confident and matcher is None:
            covers.append((cover, "text"))
        elif cand in cut or (cand.wide and cand.score >= (_WEAK_SCORE if words else _BLIND_SCORE)):
            covers.append((cover, "unreadable text"))
    return _finish(covers, markers)


def _through_band(box: Box, height: int, bands: detect.Bands) -> Box:
    """A line's box carried on along its rows through a saturated band it runs into.

    White letters over a clipped white band (a rib ring) are lost in it, and so may be
    the rest of the line: when the band meets the line's rows near an end (within a
    glyph height inside, half one outside), the box is widened over the band's columns
    there, up to three glyph heights out, and half a glyph height past (cover, don't
    guess).
    """
    if bands is None:
        return box
    where, mask = bands
    top, bottom = max(box.top, where.top), min(box.bottom, where.bottom)
    if top >= bottom:
        return box
    columns = np.zeros(max(box.right, where.right) + 1, dtype=bool)
    columns[where.left : where.right] = mask[top - where.top : bottom - where.top].any(axis=0)
    gap, reach, past = max(2, height // 2), 3 * height, max(2, height // 2)
    left, right = box.left, box.right
    start = max(0, box.right - height)
    if columns[start : box.right + gap].any():
        run = np.nonzero(columns[start : box.right + reach])[0]
        right = max(right, start + int(run[-1]) + 1 + past)
    start = max(0, box.left - reach)
    if columns[max(0, box.left - gap) : box.left + height].any():
        run = np.nonzero(columns[start : box.left + height])[0]
        left = min(left, start + int(run[0]) - past)
    return Box(max(0, left), box.top, right, box.bottom)


def _finish(covers: list[tuple[Box, Reason]], markers: list[tuple[Box, str]]) -> list[Region]:
    """Merged covers, and the markers that touch no cover and agree with each other."""
    merged, kept = _clear_markers(covers, markers, "text", _merge_reasons)
    regions = [Region(box, "redact", reason) for box, reason in merged]
    return _with_markers(regions, kept)


def _clear_markers(
    covers: list[tuple[Box, _T]],
    markers: Sequence[tuple[Box, str]],
    text: _T,
    merge: Callable[[Sequence[tuple[Box, _T]]], list[tuple[Box, _T]]],
) -> tuple[list[tuple[Box, _T]], list[tuple[Box, str]]]:
    """Merged covers, and the marker sightings kept clear of them.

    Sightings of one marker are joined; where two disagree on what it says, or a marker
    touches a merged cover, it is covered too (with payload `text`) and the covers are
    merged again, until the kept markers touch none. `covers` is extended in place.
    """
    sightings = _merge_named(markers)
    kept: list[tuple[Box, str]] = []
    for box, name in sightings:
        if any(box.overlaps(other) and other_name != name for other, other_name in sightings):
            covers.append((box, text))  # two readings disagree on what it says
        else:
            kept.append((box, name))
    while True:
        merged = merge(covers)
        hit = [m for m in kept if any(m[0].overlaps(cover) for cover, _ in merged)]
        if not hit:
            return merged, kept
        covers.extend((box, text) for box, _ in hit)
        kept = [m for m in kept if m not in hit]


def _with_markers(covers: list[Region], kept: Sequence[tuple[Box, str]]) -> list[Region]:
    """The covers and the kept markers, top to bottom, left to right."""
    regions = covers + [Region(box, "keep", "allow-listed marker", name) for box, name in kept]
    return sorted(regions, key=lambda r: (r.box.top, r.box.left))


_REASON_RANK = ("PHI match", "pattern", "text", "unreadable text")


def _rank(reason: Reason) -> int:
    for index, prefix in enumerate(_REASON_RANK):
        if reason.startswith(prefix):
            return index
    return len(_REASON_RANK)


def _merge_until_stable(
    items: Sequence[tuple[Box, _T]],
    joins: Callable[[Box, Box], bool],
    combine: Callable[[_T, _T], _T],
) -> list[tuple[Box, _T]]:
    """Union boxes that `joins` accepts, again and again until no two join.

    Each item carries a payload; a union's payload is `combine(item's, joined one's)`.
    """
    groups = list(items)
    changed = True
    while changed:
        changed = False
        out: list[tuple[Box, _T]] = []
        for box, payload in groups:
            for i, (other, other_payload) in enumerate(out):
                if joins(box, other):
                    out[i] = (box.union(other), combine(payload, other_payload))
                    changed = True
                    break
            else:
                out.append((box, payload))
        groups = out
    return groups


def _merge_regions(regions: Sequence[Region]) -> list[Region]:
    """Join overlapping covers whose union adds little (a fifth) to their own areas.

    A union keeps the weightiest reason. Covers that only touch at a corner stay apart,
    so joining never blacks out the anatomy between them.
    """
    merged = _merge_reasons([(r.box, r.reason) for r in regions])
    return [Region(box, "redact", reason) for box, reason in merged]


def _merge_reasons(covers: Sequence[tuple[Box, Reason]]) -> list[tuple[Box, Reason]]:
    """`_merge_regions` on (box, reason) pairs."""
    return _merge_until_stable(covers, _snug, _weightier)


def _snug(a: Box, b: Box) -> bool:
    """Whether two boxes overlap and their union adds at most a fifth to their areas."""
    return a.overlaps(b) and a.union(b).area <= 1.2 * (a.area + b.area)


def _weightier(reason: Reason, other: Reason) -> Reason:
    return reason if _rank(reason) < _rank(other) else other


def _merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    return [r.box for r in _merge_regions([Region(b, "redact", "text") for b in boxes])]


# PHI matching for the phi-only policy. Recognised text never leaves these functions:
# a match is reported by the kind of value or the pattern's name.

# Characters OCR confuses, mapped to one representative on both sides of a comparison.
_CONFUSABLE = str.maketrans("0Q1L5826", "OOIISBZG")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAME_KINDS = ("patient name", "person name")
_DATE_KINDS = ("birth date", "study date")


def _canonical(text: str) -> str:
    """Upper-case letters and digits only, OCR look-alikes folded together."""
    kept = "".join(ch for ch in text.upper() if ch.isalnum())
    return kept.translate(_CONFUSABLE)


def _digits(text: str) -> str:
    """A token that is mostly digits, with the letters OCR reads for digits put back."""
    table = str.maketrans("OQDIL|SBZ", "000111582")
    tokens = []
    for token in text.upper().split():
        digits = sum(ch.isdigit() for ch in token)
        tokens.append(token.translate(table) if digits * 2 >= len(token) else token)
    return " ".join(tokens)


@dataclass(frozen=True)
class _Pattern:
    name: str
    regex: re.Pattern[str]


@cache
def _patterns() -> tuple[_Pattern, ...]:
    """PHI patterns shipped in `deid/data/text_patterns.toml`."""
    raw = (resources.files("deid") / "data" / "text_patterns.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    return tuple(
        _Pattern(str(entry["name"]), re.compile(str(entry["regex"])))
        for entry in table.get("pattern", [])
    )


def _date_forms(value: str) -> set[str]:
    """The ways a DICOM date YYYYMMDD is printed, canonical (separators dropped)."""
    if not re.fullmatch(r"\d{8}", value):
        return set()
    y, m, d = value[:4], value[4:6], value[6:8]
    forms = {y + m + d, m + d + y, d + m + y, m + d + y[2:], d + m + y[2:], y[2:] + m + d}
    if 1 <= int(m) <= 12:
        forms.add(d + _MONTHS[int(m) - 1] + y)
        forms.add(d + _MONTHS[int(m) - 1] + y[2:])
    return forms


@dataclass(frozen=True)
class _Matcher:
    """Identifying values in canonical form, each with its kind, ready to match lines."""

    needles: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, phi: Mapping[str, str]) -> _Matcher:
        needles: dict[str, str] = {}
        for value, kind in phi.items():
            raw = value.strip(" \0")
            forms = {raw}
            if "^" in raw or kind in _NAME_KINDS:
                parts = [p for p in re.split(r"[\^=,\s]+", raw) if p]
                forms.add("".join(parts))
                if len(parts) >= 2:
                    forms.add(parts[1] + parts[0])
                    forms.update(parts)
            forms.update(_date_forms(raw))
            for form in forms:
                canon = _canonical(form)
                if len(canon) >= 3:
                    needles.setdefault(canon, kind)
        ordered = sorted(needles.items(), key=lambda item: -len(item[0]))
        return cls(tuple(ordered))

    def match(self, words: Sequence[str]) -> Reason | None:
        """The reason to cover a line of read words, or None when nothing matches."""
        canon_words = [_canonical(w) for w in words]
        line = "".join(canon_words)
        pairs = {a + b for a, b in itertools.pairwise(canon_words)}
        for needle, kind in self.needles:
            if len(needle) <= 4:
                if needle in canon_words or needle in pairs:
                    return f"PHI match: {kind}"
            elif _near_substring(needle, line, 1 if len(needle) <= 7 else 2):
                return f"PHI match: {kind}"
        raw = " ".join(words).upper()
        for text in (raw, _digits(raw)):
            for pattern in _patterns():
                if pattern.regex.search(text):
                    return f"pattern: {pattern.name}"
        return None


def _near_substring(needle: str, text: str, errors: int) -> bool:
    """Whether `text` holds `needle` with at most `errors` edits (Sellers' algorithm)."""
    if not text:
        return False
    if needle in text:
        return True
    previous = list(range(len(needle) + 1))
    for ch in text:
        current = [0]
        for i, nc in enumerate(needle, start=1):
            cost = 0 if nc == ch else 1
            current.append(min(previous[i] + 1, current[i - 1] + 1, previous[i - 1] + cost))
        if current[-1] <= errors:
            return True
        previous = current
    return False


# The whole-image engine: the first version, kept as a fallback. Tuning of its search.
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


def _whole_image(
    greys: Sequence[np.ndarray], policy: TextPolicy, matcher: _Matcher | None
) -> list[Region]:
    """The first version: Tesseract in sparse-text mode over whole images.

    Tesseract (psm 11) reads, side by side: the image, its inverse, a channel-max grey
    of a colour image (so coloured text shows), and two stroke images, where whatever is
    much brighter or darker than its neighbourhood is drawn black on white (so text over
    bright anatomy is not lost to Tesseract's global threshold). Images with a long side
    under 1000 px are enlarged 2-3x first. A reported word counts as text when it has a
    letter or digit, is shaped like letters and part of its box is ink. Bold strokes no
    word explains are then cut out and read as single lines, at five sizes that must
    agree, which finds the lone letters ("L", "R") sparse mode skips. Each word is
    covered by a padded box, grown over the glyphs that continue its line, except an
    exact, confident allow-list match that touches no cover. Under `phi-only`, only
    words on a line that matches PHI (and unreadable words) are covered.
    """
    height, width = greys[0].shape
    contrasts = [_contrast(grey) for grey in greys]
    strokes = _strokes(greys)
    passes = [greys[0], 255 - greys[0], *greys[1:]]
    passes += [np.where(mask, 0, 255).astype(np.uint8) for mask in strokes if mask.any()]
    words = _read_passes(passes, _ocr_scale(height, width))
    stroked = strokes[0] | strokes[1]
    inked = _ink(contrasts, *_FAINT) | stroked
    words = [word for word in words if _is_text(word, inked)]
    words += _read_glyphs(greys, contrasts, words, policy)
    if matcher is not None:
        words = _phi_words(words, matcher, policy)
    return _decide(words, _glyphs(stroked), policy, width, height)


def _phi_words(words: Sequence[Word], matcher: _Matcher, policy: TextPolicy) -> list[Word]:
    """The words of lines that match PHI, and every unreadable word (fail closed)."""
    out: list[Word] = []
    for line in _word_lines(words):
        ordered = sorted(line, key=lambda w: w.box.left)
        if matcher.match([w.text for w in ordered]) is not None:
            out.extend(ordered)
        else:
            out.extend(w for w in ordered if w.confidence < policy.min_confidence)
    return out


def _word_lines(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped into lines: sharing half their height, gaps under a line height."""
    lines: list[list[Word]] = []
    for word in sorted(words, key=lambda w: w.box.left):
        for line in lines:
            last = line[-1].box
            if min(last.bottom, word.box.bottom) - max(last.top, word.box.top) >= 0.5 * min(
                last.height, word.box.height
            ) and word.box.left - last.right <= 1.5 * max(last.height, word.box.height):
                line.append(word)
                break
        else:
            lines.append([word])
    return lines


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


def _contrast(grey: np.ndarray) -> np.ndarray:
    """Each pixel minus its blurred neighbourhood: large, either sign, on strokes."""
    background = Image.fromarray(grey).filter(ImageFilter.GaussianBlur(_BLUR))
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
    return detect.square_filter(values, reach, np.maximum)


def _opened(mask: np.ndarray, reach: int) -> np.ndarray:
    """The parts of `mask` a square of side 2 * reach + 1 fits inside."""
    eroded = detect.square_filter(mask, reach, np.minimum)
    return np.asarray(detect.square_filter(eroded, reach, np.maximum), dtype=bool)


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
        box = word.box.padded(_pad(word.box.height, policy), width, height)
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
            lines.append((said, confidence, bounding([word.box for word in read])))
    votes = Counter(said for said, _, _ in lines)
    if not votes:
        return []
    said, count = votes.most_common(1)[0]
    agreeing = [(confidence, box) for text, confidence, box in lines if text == said]
    confidence = sum(c for c, _ in agreeing) / count
    if count < _GLYPH_VOTES or confidence < policy.min_confidence or not _alnum(said):
        return []
    return [Word(agreeing[0][1].shifted(origin), said, confidence)]


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
    cells = np.asarray(grid.reshape(rows, _CELL, cols, _CELL).any(axis=(1, 3)))
    boxes: list[Box] = []
    for left, top, right, bottom in detect.label(cells).boxes.tolist():
        box = _ink_box(mask, top, bottom - 1, left, right - 1)
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
    boxes = [(box, None) for box in sorted(glyphs, key=lambda b: b.left)]
    return [box for box, _ in _merge_until_stable(boxes, _same_line, lambda _a, _b: None)]


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
            if glyph.height > 1.5 * word.height or box.union(glyph) == box:
                continue
            shared = min(glyph.bottom, word.bottom) - max(glyph.top, word.top)
            gap = max(box.left, glyph.left) - min(box.right, glyph.right)
            if shared >= 0.5 * min(glyph.height, word.height) and gap <= 0.5 * word.height:
                box = box.union(glyph)
                changed = True
    return box


def _pad(height: int, policy: TextPolicy) -> int:
    """Margin around text this tall: the policy's least, more for tall text (anti-aliasing)."""
    return max(policy.padding, math.ceil(0.25 * height))


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
            sightings.append((word.box.padded(_pad(word.box.height, policy), width, height), name))
        else:
            box = _grown(word.box, glyphs)
            covered.append((box.padded(_pad(word.box.height, policy), width, height), confident))
    covers, kept = _clear_markers(covered, sightings, True, _merge)
    regions = [
        Region(box, "redact", "text" if confident else "unreadable text")
        for box, confident in covers
    ]
    return _with_markers(regions, kept)


def _merge(boxes: Sequence[tuple[Box, bool]]) -> list[tuple[Box, bool]]:
    """Union overlapping boxes until none overlap; a group is confident if any member is."""
    return _merge_until_stable(boxes, Box.overlaps, lambda flag, other: flag or other)


def _merge_named(boxes: Sequence[tuple[Box, str]]) -> list[tuple[Box, str]]:
    """Join overlapping sightings of the same marker (one per OCR pass) into one box."""
    out: list[tuple[Box, str]] = []
    for box, name in boxes:
        for i, (other, other_name) in enumerate(out):
            if other_name == name and box.overlaps(other):
                out[i] = (box.union(other), name)
                break
        else:
            out.append((box, name))
    return out
