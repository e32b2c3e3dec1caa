"""Identity documents in photos: passports, identity cards, driving licences and insurance
cards are recognised, so that `deid share` refuses them (unless told to allow them).

A document gives itself away by what is printed on it, read once by the project's own
text detector and recogniser:

- a machine-readable zone (MRZ): two or three lines of 30, 36 or 44 characters of
  `A-Z`, `0-9` and `<` fillers at the foot of a passport page or the back of a card.
  A reader may drop a filler or read one as `K` or `C`, so a line counts when it is
  mostly capitals and digits with five fillers or a run of them; check digits that
  agree make it certain, but are not needed;
- document words (`deid/data/document_words.toml`): titles that name a document
  ("PASSPORT", "DRIVER LICENSE", "MEDICARE") and fields that documents print ("DATE OF
  BIRTH", "NATIONALITY", "MEMBER ID"). A title with anything else, or fields together,
  make a document; one field alone (the DOB of a radiograph's banner) never does;
- a portrait (the faces the caller found) and a card outline (a rectangle of the ID-1
  card's proportions, 85.6 x 54 mm) support the words.

What is read stays inside `recognise`: a `Document` says which kind and what gave it
away, never a word of what was read.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import cv2
import numpy as np

from deid.boxes import Box, bounding
from deid.text import detect, read, search

__all__ = ["Document", "recognise"]

_READ_SIDE = 1600  # px: images are read with their long side capped to this
_UPRIGHT = 2.5  # a line this many times higher than wide runs up or down the image
_PROBES = 3  # lines read both ways to tell which way a card on its side is turned
_MRZ_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
_MRZ_LEAST, _MRZ_MOST = 24, 50  # characters a read MRZ line may have (30/36/44 printed)
_MRZ_SHARE = 0.9  # share of a line that must be MRZ characters
_MISREAD = str.maketrans("«‹〈＜|", "<<<<I")  # fillers and an I as a reader may see them
_FILLER_RUN = re.compile(r"<{3,}|[<KC]{6,}")  # fillers, some read as K or C
_MRZ_START = re.compile(r"^[PIACV][A-Z<][A-Z0-9<]{3}")  # document code and issuing state
_CHECK_WEIGHTS = (7, 3, 1)
# (start, end, check digit) of the fields with a check digit, by line: the second line
# of a passport (TD3, 44 characters) or TD2 card (36); a TD1 card's (30) first line,
# which starts with its document code, and second line, which starts with the birth date.
_TD3_TD2_SECOND = ((0, 9, 9), (13, 19, 19), (21, 27, 27))
_TD1_FIRST = ((5, 14, 14),)
_TD1_SECOND = ((0, 6, 6), (8, 14, 14))
_CARD_RATIO = (1.45, 1.75)  # long over short side of an ID-1 card (1.586), as photographed
_CARD_AREA = (0.12, 0.95)  # share of the image a card outline may take
_CARD_FILL = 0.85  # a card's outline fills this much of its rotated rectangle
_CARD_SIDE = 512  # px: the outline is looked for at this long side


@dataclass(frozen=True)
class Document:
    """An identity document recognised in an image: its kind ("passport", "identity
    card", "driving licence", "insurance card", "visa", "identity document") and what
    gave it away ("machine-readable zone", "document words and a portrait"), never any
    text read from the image."""

    kind: str
    why: str


@dataclass(frozen=True)
class _Concept:
    """One title or field of a document, with its phrases as normalised words."""

    kind: str
    strong: bool
    phrases: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Line:
    box: Box
    height: float
    text: str


@dataclass(frozen=True)
class _Zone:
    kind: str
    checked: bool


def recognise(image: np.ndarray, faces: int = 0) -> Document | None:
    """The identity document `image` shows, or None.

    `image` is a uint8 grey (H, W) or RGB (H, W, 3) picture (an alpha channel is
    ignored); `faces` is how many faces the caller found in it (a portrait). The image
    is read once, its long side capped to 1600 px. Raises `DetectorUnavailableError`
    when the text model cannot be loaded and TypeError for anything but uint8 pixels.
    """
    picture = _for_reading(image)
    lines = _read_lines(picture)
    zone = _machine_readable_zone(lines)
    strong, weak = _concepts_found(line.text for line in lines)
    portrait = faces >= 1
    signals: list[str] = []
    if zone is not None:
        signals.append(
            "machine-readable zone with matching check digits"
            if zone.checked
            else "machine-readable zone"
        )
    if strong or weak:
        signals.append("document words")
    card = False
    if zone is None and not _decided_by_words(strong, weak, portrait, card=False):
        # the outline is looked for only where it could decide
        card = bool(strong or len(weak) >= 2) and _card_outline(picture)
        if not (card and _decided_by_words(strong, weak, portrait, card=True)):
            return None
    if portrait:
        signals.append("a portrait")
    if card:
        signals.append("a card outline")
    kind = zone.kind if zone is not None else _kind_of(strong, weak)
    return Document(kind, _and(signals))


def _decided_by_words(
    strong: Sequence[_Concept], weak: Sequence[_Concept], portrait: bool, card: bool
) -> bool:
    """Whether the words read, with a portrait or a card outline, make a document."""
    support = portrait or card
    if strong and (len(strong) + len(weak) >= 2 or support):
        return True
    return len(weak) >= 3 or (len(weak) >= 2 and support)


def _kind_of(strong: Sequence[_Concept], weak: Sequence[_Concept]) -> str:
    """The kind the words point to most (a title weighs twice a field)."""
    votes: Counter[str] = Counter()
    for concept in strong:
        votes[concept.kind] += 2
    for concept in weak:
        if concept.kind:
            votes[concept.kind] += 1
    votes.pop("", None)
    return votes.most_common(1)[0][0] if votes else "identity document"


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- Reading ---


def _for_reading(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 grey or RGB copy with its long side at most `_READ_SIDE`."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError(f"expected a uint8 (H, W) or (H, W, 3) image, not {image.dtype}")
    if image.ndim == 3:  # grey or colour, with or without alpha
        image = image[..., 0] if image.shape[2] < 3 else image[..., :3]
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    long_side = max(height, width)
    if long_side > _READ_SIDE:
        factor = _READ_SIDE / long_side
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _read_lines(image: np.ndarray) -> list[_Line]:
    """The text lines of the image as read: one detector pass, one read of each piece
    (and of its three longest lines twice more when the picture lies on its side)."""
    found = detect.find_lines(image)
    if not found:
        return []
    boxes = [line.box for line in found]
    if sum(_upright(box) for box in boxes) * 2 > len(boxes):
        image, boxes = _turned(image, boxes)
    readings = read.read_lines(image, boxes)
    pieces = [
        search.Piece(box, f.height, r) for box, f, r in zip(boxes, found, readings, strict=True)
    ]
    lines = []
    for group in search.group_lines(pieces):
        text = search.joined(group).text
        if text.strip():
            box = bounding(p.box for p in group)
            lines.append(_Line(box, max(p.height for p in group), text))
    lines.sort(key=lambda line: (line.box.top, line.box.left))
    return lines


def _upright(box: Box) -> bool:
    """Whether a line runs up or down the image: a card photographed on its side."""
    return box.height >= _UPRIGHT * box.width


def _turned(image: np.ndarray, boxes: Sequence[Box]) -> tuple[np.ndarray, list[Box]]:
    """The image turned a quarter so that its lines run across, and their boxes with it.

    Which way is tried on its longest lines: the way they are read with more confidence.
    """
    height, width = image.shape[:2]
    turns = {
        # np.rot90 by +1 turns anticlockwise: (row, col) goes to (width - 1 - col, row)
        1: [Box(b.top, width - b.right, b.bottom, width - b.left) for b in boxes],
        -1: [Box(height - b.bottom, b.left, height - b.top, b.right) for b in boxes],
    }
    longest = sorted(range(len(boxes)), key=lambda i: -boxes[i].height)[:_PROBES]
    tried: list[tuple[float, np.ndarray, list[Box]]] = []
    for k, turned in turns.items():
        picture = np.ascontiguousarray(np.rot90(image, k))
        probes = read.read_lines(picture, [turned[i] for i in longest])
        tried.append((sum(r.confidence * r.alnum for r in probes), picture, turned))
    _, picture, turned = max(tried, key=lambda t: t[0])
    return picture, turned


# --- The machine-readable zone ---


def _mrz_line(text: str) -> str | None:
    """The line as MRZ characters when it reads like an MRZ line, else None."""
    compact = re.sub(r"\s+", "", text)
    compact = compact.translate(_MISREAD)
    if not _MRZ_LEAST <= len(compact) <= _MRZ_MOST:
        return None
    if sum(ch in _MRZ_CHARS for ch in compact) < _MRZ_SHARE * len(compact):
        return None  # lower case or punctuation: ordinary text
    compact = compact.upper()
    if compact.count("<") >= 5 or _FILLER_RUN.search(compact):
        return compact
    return None


def _machine_readable_zone(lines: Sequence[_Line]) -> _Zone | None:
    """An MRZ among the lines: two or three MRZ lines, or one that is certainly one."""
    found = [(line, mrz) for line in lines if (mrz := _mrz_line(line.text)) is not None]
    if not found:
        return None
    texts = [mrz for _, mrz in found]
    checked = sum(_check_digits_agreeing(text) for text in texts)
    if len(found) == 1:
        single = texts[0]
        certain = checked >= 2 or (_MRZ_START.match(single) is not None and single.count("<") >= 8)
        if not certain:
            return None
    return _Zone(_zone_kind(texts), checked >= 2)


def _zone_kind(texts: Sequence[str]) -> str:
    """The document an MRZ belongs to: by its document code, else by its line length."""
    code = texts[0][0]
    if code == "P":
        return "passport"
    if code in "IAC" and _MRZ_START.match(texts[0]):
        return "identity card"
    if code == "V" and _MRZ_START.match(texts[0]):
        return "visa"
    length = sorted(len(t) for t in texts)[len(texts) // 2]
    return "passport" if length >= 40 else "identity card"


def _check_digits_agreeing(text: str) -> int:
    """How many of the line's check digits agree with their fields (ICAO 9303)."""
    agreeing = 0
    fields: tuple[tuple[int, int, int], ...] = ()
    if len(text) in (36, 44):
        fields = _TD3_TD2_SECOND
    elif len(text) == 30:
        fields = _TD1_SECOND if text[0].isdigit() else _TD1_FIRST
    for start, end, at in fields:
        field, digit = text[start:end], text[at]
        if digit.isdigit() and field.strip("<") and _check_digit(field) == int(digit):
            agreeing += 1
    return agreeing


def _check_digit(field: str) -> int:
    total = 0
    for i, ch in enumerate(field):
        value = int(ch) if ch.isdigit() else ord(ch) - 55 if "A" <= ch <= "Z" else 0
        total += value * _CHECK_WEIGHTS[i % 3]
    return total % 10


# --- Document words ---


def _words(text: str) -> tuple[str, ...]:
    """Upper-case words without accents or punctuation: how phrases are compared."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch)).upper()
    return tuple(re.findall(r"[A-Z0-9]+", plain))


@cache
def _concepts() -> tuple[_Concept, ...]:
    raw = (resources.files("deid") / "data" / "document_words.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    return tuple(
        _Concept(
            str(entry.get("kind", "")),
            bool(entry.get("strong", False)),
            tuple(words for phrase in entry["phrases"] if (words := _words(phrase))),
        )
        for entry in table["concept"]
    )


def _concepts_found(texts: Iterable[str]) -> tuple[list[_Concept], list[_Concept]]:
    """The strong and the other concepts whose phrases the lines hold."""
    lines = [words for text in texts if (words := _words(text))]
    strong: list[_Concept] = []
    weak: list[_Concept] = []
    for concept in _concepts():
        if any(_holds(words, phrase) for words in lines for phrase in concept.phrases):
            (strong if concept.strong else weak).append(concept)
    return strong, weak


def _tolerance(length: int) -> int:
    """Letters a phrase of `length` letters may differ by from what was read."""
    return 0 if length < 10 else 1 if length < 16 else 2


def _holds(words: Sequence[str], phrase: Sequence[str]) -> bool:
    """Whether whole words of a line spell the phrase (spacing aside), within tolerance."""
    target = "".join(phrase)
    tolerance = _tolerance(len(target))
    for start in range(len(words)):
        joined = ""
        for end in range(start, min(len(words), start + len(phrase) + 1)):
            joined += words[end]
            if len(joined) > len(target) + tolerance:
                break
            if abs(len(joined) - len(target)) <= tolerance and (
                joined == target or (tolerance and _distance(joined, target) <= tolerance)
            ):
                return True
    return False


def _distance(a: str, b: str) -> int:
    """Levenshtein distance between two short strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# --- A card's outline ---


def _card_outline(image: np.ndarray) -> bool:
    """Whether a rectangle of an ID-1 card's proportions stands out in the image."""
    height, width = image.shape[:2]
    factor = min(1.0, _CARD_SIDE / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # each colour on its own: a blue card edge on a brown table is one grey
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    edges = [
        np.asarray(cv2.Canny(cv2.GaussianBlur(np.ascontiguousarray(c), (5, 5), 0), 30, 90))
        for c in channels
    ]
    joined = np.asarray(np.max(edges, axis=0), dtype=np.uint8)
    grown = cv2.dilate(joined, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    whole = float(image.shape[0] * image.shape[1])
    for contour in contours:
        area = float(cv2.contourArea(contour))
        if not _CARD_AREA[0] * whole <= area <= _CARD_AREA[1] * whole:
            continue
        _, (side_a, side_b), _ = cv2.minAreaRect(contour)
        if min(side_a, side_b) < 1 or area < _CARD_FILL * side_a * side_b:
            continue
        if _CARD_RATIO[0] <= max(side_a, side_b) / min(side_a, side_b) <= _CARD_RATIO[1]:
            return True
    return False
